"""Schedulers that need no learning: the floor every learned scheduler of a DU must clear.

Each maps a DU's observation (`agents.meta_hrl.env`) to the environment's action, at full
power (the cell's power grows with airtime and MCS, far less with the transmit power, so
full power is the obvious choice; a learner may find better):

- `SliceSplit()`: every slice the same PRBs, every user of a slice the same (equal split);
  `SliceSplit(shares)`: constant slice shares; `users="queue"` weights a slice's users by
  their queues instead (a user with nothing queued gets nothing).
- `LoadProportional`: each user weighted by its mean demand plus its queue, each slice by
  the sum over its users (both as the observation scales them).
- `ProportionalFair`: each backlogged user weighted by the spectral efficiency of its CQI
  over its own average rate (an exponential average kept per episode); slices by the sum.

`run_scheduler` evaluates one on a DU exactly as `agents.meta_hrl.training.evaluate` does a
learner (the same episode seeds, so the same traffic), and `search_split` finds the best
constant split over a grid of slice shares.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from agents.meta_hrl.env import DuSlicingEnv, Episodes
from hil.base.lte import CQI_EFFICIENCY
from hil.base.slices import SLICES

UserRule = Literal["equal", "queue"]
# the per-user observation features the rules read (agents.meta_hrl.env.observe)
_QUEUE, _RATE, _DEMAND, _CQI = 0, 1, 2, 3


class Scheduler(Protocol):
    name: str

    def reset(self) -> None:
        """Forget what the last episode taught (a new episode starts)."""

    def action(self, env: DuSlicingEnv, obs: np.ndarray) -> np.ndarray:
        """The environment's action for this observation."""


def action_from_weights(env: DuSlicingEnv, slice_weights: np.ndarray,
                        user_weights: np.ndarray) -> np.ndarray:
    """An action giving slices and users PRBs in proportion to non-negative weights (all
    zero: equal), at full power."""
    def scores(weights: np.ndarray) -> np.ndarray:
        w = np.maximum(np.asarray(weights, dtype=float), 0.0)
        return 2.0 * w / w.max() - 1.0 if w.max() > 0 else np.zeros(len(w))

    n = env.profile.n_ues
    return np.concatenate([scores(slice_weights), scores(user_weights),
                           np.ones(n)]).astype(np.float32)


@dataclass
class SliceSplit:
    """Constant slice shares (None: equal); users equal or by queue."""

    shares: tuple[float, float, float] | None = None
    users: UserRule = "equal"

    @property
    def name(self) -> str:
        split = "equal split" if self.shares is None else "split " + "/".join(
            f"{s:.1f}" for s in self.shares)
        return split + (", users by queue" if self.users == "queue" else "")

    def reset(self) -> None:
        pass

    def action(self, env: DuSlicingEnv, obs: np.ndarray) -> np.ndarray:
        _, users = env.split_observation(obs)
        user_w = users[:, _QUEUE] if self.users == "queue" else np.ones(env.profile.n_ues)
        slice_w = np.ones(len(SLICES)) if self.shares is None else np.asarray(self.shares)
        return action_from_weights(env, slice_w, user_w)


@dataclass
class LoadProportional:
    name: str = "load-proportional"

    def reset(self) -> None:
        pass

    def action(self, env: DuSlicingEnv, obs: np.ndarray) -> np.ndarray:
        _, users = env.split_observation(obs)
        user_w = users[:, _DEMAND] + users[:, _QUEUE]
        return action_from_weights(env, _per_slice(env, user_w), user_w)


@dataclass
class ProportionalFair:
    """Weights efficiency(CQI) / average rate, the average updated every step.

    A step's allocation is not work-conserving: PRB-TTIs a user cannot fill are lost, not
    passed to the next user as a TTI scheduler would. So a rule that ignores how much each
    user has queued wastes them, and PF, which favours users that got little (often
    because they asked for little), suffers most of all the rules here."""

    smoothing: float = 0.1
    name: str = "proportional fair"
    _average: np.ndarray | None = field(default=None, repr=False)

    def reset(self) -> None:
        self._average = None

    def action(self, env: DuSlicingEnv, obs: np.ndarray) -> np.ndarray:
        _, users = env.split_observation(obs)
        # the rate feature is rate / demand (halved, capped at 2): times the demand
        # feature it is the rate up to one scale shared by all users, which PF ignores
        rate = 2.0 * users[:, _RATE] * users[:, _DEMAND]
        if self._average is None:
            self._average = np.full(len(rate), 1e-3)
        self._average = (1 - self.smoothing) * self._average + self.smoothing * rate
        cqi = np.clip(np.rint(users[:, _CQI] * 15.0), 0, 15).astype(int)
        backlogged = users[:, _QUEUE] > 0  # as PF schedules: only users with data waiting
        user_w = np.where(backlogged, CQI_EFFICIENCY[cqi] / np.maximum(self._average, 1e-3), 0.0)
        return action_from_weights(env, _per_slice(env, user_w), user_w)


def _per_slice(env: DuSlicingEnv, user_weights: np.ndarray) -> np.ndarray:
    return np.bincount(env.user_slice, user_weights, minlength=len(SLICES))


def run_scheduler(scheduler: Scheduler, env: DuSlicingEnv, *, steps: int, seed: int) -> float:
    """Mean reward of `scheduler` over `steps` steps of the DU's episodes drawn from `seed`
    (a copy of `env`: the DU itself is left as it was)."""
    env = copy.deepcopy(env)
    episodes = Episodes(env, seed)
    obs = episodes.reset()
    scheduler.reset()
    rewards = []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(scheduler.action(env, obs))
        rewards.append(reward)
        if terminated or truncated:
            obs = episodes.reset()
            scheduler.reset()
    return float(np.mean(rewards))


def split_grid(step: float = 0.1) -> list[tuple[float, float, float]]:
    """Every slice split on the simplex whose shares are multiples of `step`."""
    units = int(round(1.0 / step))
    return [(a * step, b * step, (units - a - b) * step)
            for a, b in itertools.product(range(units + 1), repeat=2) if a + b <= units]


def search_split(envs: Sequence[DuSlicingEnv], *, users: UserRule = "equal", steps: int,
                 seed: int, step: float = 0.1) -> tuple[SliceSplit, float]:
    """The constant split with the highest mean reward over `envs` (one DU: that DU's own
    best constant split), and that mean reward."""
    best: tuple[SliceSplit, float] | None = None
    for shares in split_grid(step):
        rule = SliceSplit(shares, users)
        mean = float(np.mean([run_scheduler(rule, env, steps=steps, seed=seed) for env in envs]))
        if best is None or mean > best[1]:
            best = (rule, mean)
    assert best is not None
    return best
