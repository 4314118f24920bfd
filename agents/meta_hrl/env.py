"""The multi-DU O-RAN slicing environment (gymnasium API): one `DuSlicingEnv` per DU, and a
task distribution of DUs (`make_tasks`, `heldout_task`) for meta-learning across them.

A step is `step_tti` TTIs of one DU (`hil.base.slices`: the LTE TBS tables, the
calibration's power model). The action, in [-1, 1], is laid out as

    [slice scores (3), user PRB scores (n_ues), user power scores (n_ues)]

and mapped to resources here, at the boundary (`allocate_prbs`): the cell's PRB-TTIs are
split across slices by the slice scores, then inside each slice across its users by their
scores; a user's transmit power fraction is (score + 1) / 2.

Reward (the system objective): sum_s slice_weights[s] * qos[s] - power_weight * p, with
p = (P - P_idle) / (P_max - P_idle) the DU's power above idle over its range (P_max: full
airtime, top MCS, full gain); bounds [-power_weight, sum(slice_weights)]. Each slice's
low-level reward (`info["slice_reward"]`) is its QoS minus power_weight * p times the share
of the PRB-TTIs used that went to it.

Observations are in [0, 1]: per slice (N_SLICE_FEATURES) and per user (N_USER_FEATURES),
computed from the last step's KPIs by `observe`, which the online agent also uses on the
users' reports of a live vBS (`observe_reports`), so simulation and live runs see the
same features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from agents.base import UserReport
from hil.base import model
from hil.base.slices import (
    SLICES,
    TOP_MCS,
    DuProfile,
    SlicedCell,
    StepKpis,
    bits_per_prb_tti,
    default_calibration,
    sample_profiles,
    slice_qos,
)

N_SLICE_FEATURES = 7   # demand, throughput, QoS, queue, user share, CQI, PRB share
N_USER_FEATURES = 10   # queue, rate, demand, CQI, slice one-hot (3), PRB share, delay, arrivals
_QUEUE_SCALE_BITS = 1e3


def allocate_prbs(slice_scores: np.ndarray, user_scores: np.ndarray, user_slice: np.ndarray,
                  total_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores in [-1, 1] to whole units: (per slice (3,), per user (n,)), both summing to
    `total_units` (a slice without users keeps its units unused). Shares are (score + 1) / 2
    normalised, all zero meaning equal; a higher score never gets fewer units."""
    per_slice = _largest_remainder((np.clip(slice_scores, -1, 1) + 1) / 2, total_units)
    per_user = np.zeros(len(user_slice), dtype=np.int64)
    weights = (np.clip(user_scores, -1, 1) + 1) / 2
    for k in range(len(SLICES)):
        members = np.flatnonzero(user_slice == k)
        if len(members):
            per_user[members] = _largest_remainder(weights[members], int(per_slice[k]))
    return per_slice, per_user


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    raw = w * total
    units = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - units), kind="stable")
    units[order[: total - int(units.sum())]] += 1
    return units


class DuSlicingEnv(gym.Env):
    """One DU: its users in three slices, scheduled one step of `step_tti` TTIs at a time."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, profile: DuProfile, cal: model.Calibration | None = None, *,
                 step_tti: int = 10, episode_steps: int = 200, power_weight: float = 0.2,
                 slice_weights: Sequence[float] = (0.4, 0.4, 0.2),
                 power_control: bool = True) -> None:
        if step_tti < 1 or episode_steps < 1 or power_weight < 0 or len(slice_weights) != 3:
            raise ValueError("step_tti and episode_steps must be >= 1, power_weight >= 0, and "
                             "slice_weights has one weight per slice (3)")
        self.profile, self.cal = profile, cal or default_calibration()
        self.step_tti, self.episode_steps = step_tti, episode_steps
        self.power_weight, self.slice_weights = power_weight, np.asarray(slice_weights, float)
        self.power_control = power_control
        self.cell = SlicedCell(profile, self.cal, seed=0)
        self.user_slice = profile.user_slice
        n, nof_prb = profile.n_ues, self.cal.cell.nof_prb
        self.total_units = nof_prb * step_tti
        self.capacity_mbps = float(bits_per_prb_tti(TOP_MCS, nof_prb) * nof_prb * 1e3 / 1e6)
        self.observation_space = gym.spaces.Box(
            0.0, 1.0, (len(SLICES) * N_SLICE_FEATURES + n * N_USER_FEATURES,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(SLICES) + 2 * n,), np.float32)
        self._onehot = np.eye(len(SLICES))[self.user_slice]
        self._users_share = np.bincount(self.user_slice, minlength=3) / n
        self._t = 0

    # ---- gymnasium
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.cell.reset(int(self.np_random.integers(2**62)))
        self._t = 0
        return self.observe(self._idle_kpis()), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=float)
        n = self.profile.n_ues
        prb_split, user_prb = allocate_prbs(a[:3], a[3:3 + n], self.user_slice, self.total_units)
        power = (np.clip(a[3 + n:], -1, 1) + 1) / 2 if self.power_control else np.ones(n)
        kpis = self.cell.step(user_prb, power, self.step_tti)
        qos = slice_qos(kpis, self.profile)
        power_share = (kpis.power_w - self.cell.idle_w) / (self.cell.max_w - self.cell.idle_w)
        used = np.bincount(self.user_slice, kpis.prb_tti_used, minlength=3)
        used_share = used / used.sum() if used.sum() else np.zeros(3)
        utility = float(self.slice_weights @ qos)
        reward = utility - self.power_weight * power_share
        self._t += 1
        seconds = self.step_tti * model.TTI_S
        info = {
            "slice_qos": qos, "slice_reward": qos - self.power_weight * power_share * used_share,
            "power_w": kpis.power_w, "prb_split": prb_split, "user_prb": user_prb,
            "throughput_mbps": np.bincount(self.user_slice, kpis.delivered_bits, minlength=3)
            / seconds / 1e6,
            "reward_parts": {"utility": utility, "power": power_share},
        }
        return (self.observe(kpis), float(reward), False, self._t >= self.episode_steps, info)

    # ---- observations
    def observe(self, kpis: StepKpis) -> np.ndarray:
        """The observation after a step (or round) with these KPIs."""
        seconds = kpis.n_tti * model.TTI_S
        arrived_mbps = kpis.arrived_bits / seconds / 1e6
        rate_mbps = kpis.delivered_bits / seconds / 1e6
        demand = self.cell.demand_mbps
        queue = np.log1p(kpis.queue_bits / _QUEUE_SCALE_BITS) / np.log1p(
            self.cell.queue_limit_bits / _QUEUE_SCALE_BITS)
        used = kpis.prb_tti_used
        slice_used = np.bincount(self.user_slice, used, minlength=3)
        per_slice = np.stack([
            np.bincount(self.user_slice, arrived_mbps, minlength=3) / self.capacity_mbps,
            np.bincount(self.user_slice, rate_mbps, minlength=3) / self.capacity_mbps,
            slice_qos(kpis, self.profile),
            np.bincount(self.user_slice, queue, minlength=3) / np.maximum(
                np.bincount(self.user_slice, minlength=3), 1),
            self._users_share,
            np.bincount(self.user_slice, kpis.cqi, minlength=3) / np.maximum(
                np.bincount(self.user_slice, minlength=3), 1) / 15.0,
            slice_used / max(kpis.n_tti * self.cal.cell.nof_prb, 1),
        ], axis=1)
        per_user = np.column_stack([
            queue,
            np.minimum(rate_mbps / np.maximum(demand, 1e-9), 2.0) / 2.0,
            np.minimum(0.5 * demand * self.profile.n_ues / self.capacity_mbps, 1.0),
            kpis.cqi / 15.0,
            self._onehot,
            used / np.maximum(slice_used[self.user_slice], 1.0),
            kpis.delay_ms / (kpis.delay_ms + 10.0),
            np.minimum(arrived_mbps / np.maximum(demand, 1e-9), 2.0) / 2.0,
        ])
        obs = np.concatenate([per_slice.ravel(), per_user.ravel()])
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    def observe_reports(self, reports: Sequence[UserReport | None],
                        ) -> tuple[np.ndarray, np.ndarray]:
        """The observation and slice QoS of a live round, from the users' reports (in the
        order of the DU's users; None for a user not reported, seen as idle)."""
        n_tti = 1000  # rates per second: a report's window is seen as one second of TTIs
        seconds = n_tti * model.TTI_S
        idle = self._idle_kpis()
        value = {
            "arrived_bits": [r.dl_demand_mbps * 1e6 * seconds if r else 0.0 for r in reports],
            "delivered_bits": [r.dl_rate_mbps * 1e6 * seconds if r else 0.0 for r in reports],
            "queue_bits": [r.dl_backlog_bytes * 8.0 if r else 0.0 for r in reports],
            "cqi": [r.dl_cqi if r else c for r, c in zip(reports, idle.cqi)],
            "mcs": [r.dl_mcs if r else 0.0 for r in reports],
            "prb_tti_used": [r.dl_prb * n_tti if r else 0.0 for r in reports],
        }
        arrays = {k: np.asarray(v, dtype=float) for k, v in value.items()}
        service_per_ms = arrays["delivered_bits"] / n_tti
        delay = np.where(arrays["queue_bits"] <= 0, 0.0, np.minimum(
            1000.0, arrays["queue_bits"] / np.maximum(service_per_ms, 1e-9)))
        kpis = StepKpis(**arrays, delay_ms=delay, power_w=0.0, n_tti=n_tti)
        return self.observe(kpis), slice_qos(kpis, self.profile)

    def split_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slices (..., 3, N_SLICE_FEATURES), users (..., n_ues, N_USER_FEATURES))."""
        obs = np.asarray(obs)
        head = len(SLICES) * N_SLICE_FEATURES
        lead = obs.shape[:-1]
        return (obs[..., :head].reshape(*lead, len(SLICES), N_SLICE_FEATURES),
                obs[..., head:].reshape(*lead, self.profile.n_ues, N_USER_FEATURES))

    def _idle_kpis(self) -> StepKpis:
        """A step in which nothing was scheduled: the observation before the first step."""
        n = self.profile.n_ues
        cqi = model.reported_cqi(model.lte.cqi_to_snr_db(self.cell.mean_cqi)).astype(float)
        zero = np.zeros(n)
        return StepKpis(zero, zero, zero, zero, cqi, zero, zero, self.cell.idle_w, self.step_tti)


class Episodes:
    """A DU's episodes, each reset with the next seed drawn from one `seed`: every scheduler
    run with the same seed on the same DU meets the same traffic and channels."""

    def __init__(self, env: DuSlicingEnv, seed: int) -> None:
        self.env = env
        self._seeds = np.random.SeedSequence(seed)

    def reset(self) -> np.ndarray:
        """The first observation of the next episode."""
        (child,) = self._seeds.spawn(1)
        return self.env.reset(seed=int(child.generate_state(1)[0]))[0]


Family = Literal["visible", "hidden"]
FAMILIES: tuple[str, ...] = ("visible", "hidden")


def make_tasks(n_dus: int = 7, n_ues: int = 30, seed: int = 0, family: Family = "visible",
               **env_kwargs: Any) -> list[DuSlicingEnv]:
    """`n_dus` DUs of `n_ues` users drawn from a task family (deterministic per seed).

    - `visible`: DUs differ in slice mix, load and channel, all of which the observation
      shows; every DU weighs its slices alike (0.4, 0.4, 0.2). One policy can tell the DUs
      apart from what it sees, so there is little for meta-learning to add.
    - `hidden`: the same DUs, each with its own slice weights (its operator's priorities,
      Dirichlet(1, 1, 1)) that the observation does not show: only the rewards reveal them,
      so a DU's best split can only be found by adapting on it. Where meta-learning should
      beat multi-task learning, if it beats it anywhere.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    profiles = sample_profiles(n_dus, n_ues, seed)
    if family == "visible":
        return [DuSlicingEnv(p, **env_kwargs) for p in profiles]
    weights = np.random.default_rng([seed, 1]).dirichlet(np.ones(len(SLICES)), n_dus)
    return [DuSlicingEnv(p, slice_weights=w, **env_kwargs) for p, w in zip(profiles, weights)]


def heldout_task(n_ues: int = 30, seed: int = 1000, **env_kwargs: Any) -> DuSlicingEnv:
    """A DU of the same distribution that no training set of another seed contains."""
    return DuSlicingEnv(sample_profiles(1, n_ues, seed)[0], **env_kwargs)
