"""Does the emulated vBS rank policies as a measured vBS does? Per condition of a dataset.

A learner is only as good as the reward landscape it meets, so the question that matters
for the emulator is not its error in watts but whether it orders the policies as the
measurements do, under each condition and for each reward weight. For every condition of
a `hil collect` dataset (one block: a load and a channel) and every delta:

- *measured* reward of each policy: `hil.reward` of the cell's measured DL/UL throughput,
  the condition's demand and the cell's power (a `tools.collect.reading.POWER_SOURCES`
  column); with several repetitions,
  their mean. Its standard error is the larger of two: the cells' round-to-round variances
  of power and throughput (first-order propagation through the reward), over their dwell
  rounds; and, where policies were measured more than once, the variance between cells.
- *emulated* reward: `expected_round` of the calibration for the same policy in the
  condition's environment: the condition's median measured demand, DL CQI (of the cells at
  full DL gain; the model lowers it by a policy's gain itself) and UL SNR (as the UL CQI
  the model takes).
- Spearman's rank correlation over the policies; the measured best policy's rank in the
  emulator; and whether the emulator's best policy is, measured, within two standard
  errors (or half a percent of the reward scale) of the measured best: the emulator need
  not break ties the measurement cannot.

A condition passes when rho >= 0.9 and the measured best is in the emulator's top 3 (or
its choice within the noise). Where the measured rewards of the policies differ by less
than their noise (`reliability` < 0.8: e.g. a load every policy carries), no ranking can be
asked of the emulator, since none was measured; it passes there when its own rewards are
as flat (spread at most twice the noise) and its choice within the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from agents.policy_space import PolicySpace
from hil.base.model import (
    Calibration,
    expected_round,
    make_caps,
    snr_to_cqi,
    ul_grant_snr_gain_db,
)
from hil.base.scenarios import Environment
from hil.base.thresholds import POLICY_FIELDS
from hil.reward import UTILITY_MAX, RewardParams, reward

MIN_SPEARMAN = 0.9
TOP = 3
MIN_RELIABILITY = 0.8
"""Below this share of the measured rewards' variance between policies being real (not
noise), the measurement cannot rank the policies, and no ranking is asked of the emulator
(`ConditionLandscape.resolvable`)."""
NOISE_SE = 2.0
"""A policy within this many standard errors of the measured best counts as tied with it,"""
TIE_REWARD = 0.005
"""and so does one within half a percent of the reward's [0, 1] scale: a difference the
measurement may resolve but no learner's choice should be judged on."""


@dataclass(frozen=True)
class ConditionLandscape:
    """One condition of a dataset under one reward weight."""

    condition: int
    label: str
    delta: float
    policy_index: np.ndarray
    """Index in the dataset's policy grid of each compared policy."""
    measured: np.ndarray
    measured_se: np.ndarray
    emulated: np.ndarray
    spearman: float

    @property
    def measured_best(self) -> int:
        return int(np.argmax(self.measured))

    @property
    def emulated_rank_of_measured_best(self) -> int:
        """1 = the emulator's best too."""
        order = np.argsort(-self.emulated, kind="stable")
        return int(np.flatnonzero(order == self.measured_best)[0]) + 1

    @property
    def emulated_best_within_noise(self) -> bool:
        """The emulator's choice, measured, is within NOISE_SE standard errors of the best."""
        best, choice = self.measured_best, int(np.argmax(self.emulated))
        se = np.hypot(self.measured_se[best], self.measured_se[choice])
        return bool(self.measured[best] - self.measured[choice] <= max(NOISE_SE * se,
                                                                        TIE_REWARD))

    @property
    def reliability(self) -> float:
        """The share of the measured rewards' variance across policies that is not
        measurement noise: 1 - mean(se^2) / var (clipped at 0). A rank correlation with the
        truth cannot exceed about its square root, whatever the emulator."""
        var = float(np.var(self.measured, ddof=1))
        return max(0.0, 1.0 - float(np.mean(self.measured_se ** 2)) / var) if var > 0 else 0.0

    @property
    def resolvable(self) -> bool:
        return self.reliability >= MIN_RELIABILITY

    @property
    def emulated_flat_as_measured(self) -> bool:
        """Where the measurement cannot rank the policies, the emulator does not pretend
        to: its rewards spread no more than twice the measurement noise."""
        return float(np.std(self.emulated)) <= 2.0 * float(np.sqrt(np.mean(
            self.measured_se ** 2)))

    @property
    def passes(self) -> bool:
        best = self.emulated_rank_of_measured_best <= TOP or self.emulated_best_within_noise
        if not self.resolvable:
            return self.emulated_flat_as_measured and best
        return self.spearman >= MIN_SPEARMAN and best


def condition_environment(cells: pd.DataFrame, cal: Calibration) -> Environment:
    """The environment the emulator compares a condition's cells in: medians of what was
    measured there (demand per TTI; DL CQI at full DL gain; the UL SNR as a CQI, over the
    full band where the calibration's UE sends at a fixed total power)."""
    def median(values: pd.Series | np.ndarray) -> float:
        return float(np.nanmedian(np.asarray(values, dtype=float)))

    full_gain = cells[cells["policy_dl_gain_db"].astype(float) == 0.0]
    # a UE reports the integer part of its CQI, so reports sit half a step below it on
    # average; the model takes the CQI itself and floors it as the UE does
    dl_cqi = min(median((full_gain if len(full_gain) else cells)["dl_cqi"]) + 0.5, 15.0)
    ul_snr = cells["ul_snr_db"].to_numpy(float) - ul_grant_snr_gain_db(
        cells["ul_prb"].to_numpy(float), cal.cell, cal.channel)
    return Environment(np.array([median(cells["dl_demand_mbps"])]),
                       np.array([median(cells["ul_demand_mbps"])]),
                       np.array([dl_cqi]),
                       np.array([float(snr_to_cqi(median(ul_snr), cal.channel))]))


def compare(cells: pd.DataFrame, space: PolicySpace, cal: Calibration,
            params: list[RewardParams], power: str = "power_w") -> list[ConditionLandscape]:
    """Every condition of `cells` under every reward weight of `params`; `power` names the
    column of measured watts (`tools.collect.reading.POWER_SOURCES`)."""
    usable = cells[~cells["failed"].astype(bool)]
    out = []
    for condition, group in usable.groupby("condition", sort=True):
        env = condition_environment(group, cal)
        by_policy = group.groupby("policy_index", sort=True)
        index = np.array(list(by_policy.groups), dtype=np.int64)
        mean = by_policy[["dl_rate_mbps", "ul_rate_mbps", power]].mean()
        caps = make_caps(cal.cell, **{name: np.array([space.policy(int(i))[k]
                                                       for i in index])
                                      for k, name in enumerate(POLICY_FIELDS)})
        outcome = expected_round(caps, env.map(lambda a: a[:, None]), cal)
        label = _label(group.iloc[0], env)
        for p in params:
            emulated = _reward(env, p, outcome.dl_rate_mbps[0], outcome.ul_rate_mbps[0],
                               outcome.power_w[0])
            measured = _reward(env, p, mean["dl_rate_mbps"], mean["ul_rate_mbps"], mean[power])
            se = np.maximum(_reward_se(by_policy, env, p, power),
                            _replicate_se(group, env, p, power))
            rho = spearmanr(measured, emulated).statistic if len(index) > 2 else float("nan")
            out.append(ConditionLandscape(int(condition), label, p.delta, index, measured, se,
                                          emulated, float(rho)))
    return out


def _reward(env: Environment, p: RewardParams, dl_rate_mbps: object, ul_rate_mbps: object,
            power_w: object) -> np.ndarray:
    """The scaled reward f of rates and watts under the condition's demand."""
    _, _, f = reward(np.asarray(dl_rate_mbps, float), env.dl_demand_mbps[0],
                     np.asarray(ul_rate_mbps, float), env.ul_demand_mbps[0],
                     np.asarray(power_w, float), p)
    return np.asarray(f, float)


def _reward_se(by_policy: pd.core.groupby.DataFrameGroupBy, env: Environment,
               p: RewardParams, power: str) -> np.ndarray:
    """Standard error of each policy's measured reward. f is linear in f~ = U - delta p(P),
    with p linear in P inside the declared bounds, and dU/dR = 1 / (d + R); so the cells'
    round-to-round variances of the rates and the power propagate to first order."""
    means = by_policy.mean(numeric_only=True)
    n = by_policy["n_samples"].sum().to_numpy(float).clip(min=1)
    d_d, d_u = env.dl_demand_mbps[0], env.ul_demand_mbps[0]
    per_raw = 1.0 / (UTILITY_MAX + p.delta)  # df / df~ (scaled_reward)
    per_watt = 1.0 / (p.power_max_w - p.power_min_w)  # dp / dP (normalised_power)
    power_var = means[f"{power}_var"]
    var = (means["dl_rate_mbps_var"] / (d_d + means["dl_rate_mbps"]) ** 2
           + means["ul_rate_mbps_var"] / (d_u + means["ul_rate_mbps"]) ** 2
           + (p.delta * per_watt) ** 2 * power_var)
    return per_raw * np.sqrt(np.nan_to_num(var.to_numpy(float)) / n)


def _replicate_se(group: pd.DataFrame, env: Environment, p: RewardParams,
                  power: str) -> np.ndarray:
    """Standard error of each policy's mean reward from repeated cells (repetitions, or
    several datasets of one plan): the variance between a policy's cells, pooled over the
    policies measured more than once, over the policy's number of cells. Zeros when no
    policy was measured twice. This catches what a cell's own rounds cannot: drift
    between cells measured minutes apart."""
    per_cell = _reward(env, p, group["dl_rate_mbps"], group["ul_rate_mbps"], group[power])
    rewards = pd.Series(per_cell, index=group.index).groupby(group["policy_index"])
    counts = rewards.count().sort_index()
    repeated = rewards.var(ddof=1).dropna()
    if repeated.empty:
        return np.zeros(len(counts))
    return np.sqrt(float(repeated.mean()) / counts.to_numpy(float))


def _label(row: pd.Series, env: Environment) -> str:
    snr = []
    for name, column in (("DL SNR", "cond_dl_snr_db"), ("UL noise", "cond_ul_snr_db")):
        if column in row and pd.notna(row[column]):
            snr.append(f"{name} {row[column]:g} dB")
    return (f"load {row['cond_dl_load_mbps']:g}/{row['cond_ul_load_mbps']:g} Mb/s"
            + (", " + ", ".join(snr) if snr else "")
            + f" (CQI {env.dl_cqi[0]:.1f}/{env.ul_cqi[0]:.1f})")
