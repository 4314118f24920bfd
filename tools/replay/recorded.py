"""Recorded run directories as a replay source, and what bandit feedback allows from them.

A run recorded only the reward of the policy its agent played each round, so other
agents cannot be evaluated on the run's *rewards*. Two things can be done honestly:

1. Replay the run's measured environment through the model: each valid round's demand
   (DL, UL) and channel (DL CQI; UL CQI from the UL SNR) becomes one round of a scenario,
   and the link and power model gives every policy's reward there (`RecordedSource`).
   Any agent can then be compared on that trace; the rewards are the model's, not the
   testbed's, and `OffPolicy.model_gap` says how far the model is from what was measured
   for the policies that were played.
2. Estimate, from the logged probabilities, what each *fixed* policy would have earned
   on the real testbed: inverse propensity scoring, V(x) = 1/T sum_t 1[x_t = x] f_t / p_t
   (unbiased when p_t > 0 for every policy, as Exp3's exploration floor guarantees), and
   its self-normalised variant. With K policies each is played about T/K times, so these
   estimates are noisy, and the maximum over K of them is biased upward: the estimated
   regret of the logged run against the best fixed policy is an upper-leaning figure.
   Learning agents other than the logged one cannot be evaluated this way (their
   probabilities depend on rewards that were never observed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hil.base import lte
from hil.base.model import load_calibration
from hil.base.scenarios import Environment
from hil.config import HilConfig, config_from_dict
from hil.recorder import RunDirectory, read_rounds
from hil.reward import RewardParams
from tools.replay.environments import (
    ArrayScenario,
    ModelEnvironment,
    describe_params,
    describe_space,
)
from tools.replay.runner import ReplayError


@dataclass(frozen=True)
class RecordedRun:
    """A run directory's config and its valid rounds."""

    path: Path
    config: HilConfig
    rounds: pd.DataFrame

    @classmethod
    def load(cls, path: Path) -> RecordedRun:
        path = Path(path)
        run_dir = RunDirectory(path)
        meta = run_dir.read_meta()
        if "config" not in meta:
            raise ReplayError(f"{run_dir.meta_path} has no config; is {path} a run directory?")
        config = config_from_dict(meta["config"], str(run_dir.meta_path))
        rows = read_rounds(path)
        valid = rows[rows["valid"]].reset_index(drop=True)
        if valid.empty:
            raise ReplayError(f"{path} holds no valid round to replay")
        return cls(path, config, valid)

    @property
    def params(self) -> RewardParams:
        r = self.config.reward
        return RewardParams(r.delta, r.power_min_w, r.power_max_w)

    def environment(self) -> Environment:
        """The measured demand and channel of every valid round."""
        cal = load_calibration(self.config.vbs.calibration)
        ul_cqi = lte.snr_db_to_cqi(self.rounds["ul_snr_db"].to_numpy()
                                   - cal.channel.ul_snr_offset_db)
        return Environment(self.rounds["dl_demand_mbps"].to_numpy(float),
                           self.rounds["ul_demand_mbps"].to_numpy(float),
                           self.rounds["dl_cqi"].to_numpy(float), np.asarray(ul_cqi, float))

    def model(self) -> ModelEnvironment:
        cfg = self.config
        return ModelEnvironment(
            ArrayScenario(f"run {self.path.name}", self.environment()), cfg.policy_space,
            load_calibration(cfg.vbs.calibration), self.params,
            rounds_available=len(self.rounds),
            description=f"the measured demand and channel of run {self.path} "
                        f"({len(self.rounds)} valid rounds) through the link and power model")


@dataclass(frozen=True)
class RecordedSource:
    """Replay source: a run's measured trace through the model (the same for every seed)."""

    run_dir: Path

    def describe(self) -> dict[str, Any]:
        run = RecordedRun.load(self.run_dir)
        return {"kind": "recorded", "run": str(self.run_dir), "valid_rounds": len(run.rounds),
                "policy_space": describe_space(run.config.policy_space),
                "reward": describe_params(run.params)}

    def build(self, seed: int) -> ModelEnvironment:
        return RecordedRun.load(self.run_dir).model()


@dataclass(frozen=True)
class OffPolicy:
    """What the logged decisions tell about fixed policies on the real testbed."""

    rounds: int
    logged_mean_reward: float
    ips: np.ndarray
    """(K,) IPS estimate of each policy's mean reward."""
    snips: np.ndarray
    """(K,) self-normalised IPS (NaN for policies never played)."""
    plays: np.ndarray
    """(K,) how often each policy was played."""
    model_gap: float
    """Mean |model reward - measured reward| of the played policies."""

    @property
    def best(self) -> int:
        return int(np.argmax(self.ips))

    @property
    def estimated_regret_per_round(self) -> float:
        return float(self.ips[self.best] - self.logged_mean_reward)


def off_policy(run: RecordedRun) -> OffPolicy:
    rows = run.rounds
    actions = rows["policy_index"].to_numpy(np.int64)
    rewards = rows["reward"].to_numpy(float)
    weights = 1.0 / rows["policy_prob"].to_numpy(float)
    k = run.config.policy_space.size
    plays = np.bincount(actions, minlength=k)
    weighted = np.bincount(actions, weights=rewards * weights, minlength=k)
    total_weight = np.bincount(actions, weights=weights, minlength=k)
    model = run.model()
    gaps = []
    for start in range(0, len(rows), 1024):
        block = model.block(start, min(start + 1024, len(rows)))
        played = block.reward[np.arange(len(block)), actions[start:start + len(block)]]
        gaps.append(np.abs(played - rewards[start:start + len(block)]))
    snips = np.divide(weighted, total_weight, out=np.full(k, np.nan), where=total_weight > 0)
    return OffPolicy(len(rows), float(rewards.mean()), weighted / len(rows), snips, plays,
                     float(np.concatenate(gaps).mean()))
