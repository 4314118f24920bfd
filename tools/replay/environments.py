"""Reward environments for offline replays: every round, the reward of *every* policy.

An agent only ever sees the reward of the policy it played (bandit feedback), but an
evaluation needs all of them: regret is measured against the best fixed policy in
hindsight, and energy against that benchmark's power. An environment therefore yields,
in blocks of rounds, for each round

- the context seen before deciding (the previous round's CQI and demand; NaN = unknown),
- the context the round itself had, which the controller learns once it is over (what
  an agent that models rewards by context learns from),
- the reward f in [0, 1] of every policy (`hil.reward`, the one reward function),
- the power of every policy (W).

`ModelEnvironment` computes these from the project's link and power model
(`drivers.emulated.model.expected_round`) for any scenario. The model is separable: the DL
outcome depends only on the DL thresholds, the UL outcome only on the UL ones, so the caps
are laid out on their own axes (shape (g, m_d, b_d, 1, 1) and (1, 1, 1, m_u, b_u)) and the
model evaluates 30 + 36 threshold combinations instead of 1080 per round; only power and
reward are formed on the full grid. The result is identical to evaluating every policy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.base import Context
from agents.policy_space import PolicySpace
from drivers.emulated.model import Calibration, expected_round, load_calibration, make_caps
from drivers.emulated.scenarios import Environment, Scenario, make_scenario
from hil.reward import RewardParams, reward

CONTEXT_FIELDS = ("dl_cqi", "ul_cqi", "dl_demand_mbps", "ul_demand_mbps")
"""Columns of `RewardBlock.context`, named as `agents.base.Context` names them."""


@dataclass(frozen=True)
class RewardBlock:
    """Rounds `start .. start + n - 1` of an environment."""

    start: int
    context: np.ndarray
    """(n, 4) in CONTEXT_FIELDS order: what the controller saw before deciding; NaN unknown."""
    measured: np.ndarray
    """(n, 4) in CONTEXT_FIELDS order: each round's own context."""
    reward: np.ndarray
    """(n, K) reward f in [0, 1] of every policy."""
    power_w: np.ndarray
    """(n, K) power of BBU + radio under every policy."""

    def __len__(self) -> int:
        return len(self.reward)

    def contexts(self) -> list[Context]:
        """One `Context` per round, seen before deciding; None where a value is unknown."""
        return _as_contexts(self.context)

    def measured_contexts(self) -> list[Context]:
        """One `Context` per round: its own, known once it is over."""
        return _as_contexts(self.measured)


def _as_contexts(rows: np.ndarray) -> list[Context]:
    return [Context(*(None if np.isnan(v) else float(v) for v in row)) for row in rows]


class RewardEnvironment(Protocol):
    """What the runner and the report need from a source of rounds."""

    description: str
    """One line for the report: where the rounds come from."""
    n_actions: int
    rounds_available: int | None
    """How many rounds the source has (None: as many as asked)."""

    def block(self, start: int, stop: int) -> RewardBlock:
        """Rounds start .. stop - 1; the same rounds whatever range they are asked in."""
        ...


def round_contexts(scenario: Scenario, start: int, stop: int) -> tuple[
        Environment, np.ndarray, np.ndarray]:
    """Rounds start .. stop - 1 of `scenario`: their environment, the context seen before
    deciding each (the previous round's; round 0 sees nothing), and each one's own."""
    env = scenario.epochs(max(start - 1, 0), stop)
    values = np.stack([env.dl_cqi, env.ul_cqi, env.dl_demand_mbps, env.ul_demand_mbps], axis=1)
    if start > 0:
        return env.map(lambda a: a[1:]), values[:-1], values[1:]
    unknown = np.full((1, len(CONTEXT_FIELDS)), np.nan)
    return env, np.concatenate([unknown, values[:-1]]), values


def separable_caps(space: PolicySpace, cal: Calibration):
    """The caps of every policy of `space`, one array axis per policy dimension."""
    names = [f.name for f in fields(space)]
    axes = {}
    for i, name in enumerate(names):
        shape = [1] * len(names)
        shape[i] = -1
        axes[name] = np.asarray(getattr(space, name)).reshape(shape)
    return make_caps(cal.cell, **axes)


class ModelEnvironment:
    """A scenario seen through the link and power model: expected outcomes of whole rounds."""

    def __init__(self, scenario: Scenario, space: PolicySpace, cal: Calibration,
                 params: RewardParams, *, rounds_available: int | None = None,
                 description: str | None = None) -> None:
        self.scenario, self.space, self.cal, self.params = scenario, space, cal, params
        self.n_actions = space.size
        self.rounds_available = rounds_available
        self.description = description or (
            f"scenario {scenario.name} through the link and power model ({cal.name})")
        self._caps = separable_caps(space, cal)

    def block(self, start: int, stop: int) -> RewardBlock:
        env, context, measured = round_contexts(self.scenario, start, stop)
        n = len(env)
        per_round = (n,) + (1,) * len(self.space.shape)
        out = expected_round(self._caps, env.map(lambda a: a.reshape(per_round)), self.cal)
        _, _, f = reward(out.dl_rate_mbps, out.dl_demand_mbps, out.ul_rate_mbps,
                         out.ul_demand_mbps, out.power_w, self.params)
        return RewardBlock(start, context, measured, f.reshape(n, -1),
                           out.power_w.reshape(n, -1))


class ArrayScenario:
    """A finite recorded environment (one value per round), e.g. a run's measured trace."""

    def __init__(self, name: str, env: Environment) -> None:
        self.name, self._env = name, env

    def __len__(self) -> int:
        return len(self._env)

    def epochs(self, start: int, stop: int) -> Environment:
        if stop > len(self._env):
            raise IndexError(f"{self.name} has {len(self._env)} rounds, asked up to {stop}")
        return self._env.map(lambda a: a[start:stop])


def describe_space(space: PolicySpace) -> dict[str, list[float]]:
    """The policy space as JSON: its five value lists."""
    return {f.name: list(getattr(space, f.name)) for f in fields(space)}


def describe_params(params: RewardParams) -> dict[str, float]:
    return {"delta": params.delta, "power_min_w": params.power_min_w,
            "power_max_w": params.power_max_w}


def describe_scenario_source(kind: str, scenario: str, switch_epoch: int, space: PolicySpace,
                             params: RewardParams, **extra: Any) -> dict[str, Any]:
    """The JSON identity of a source driven by a named scenario (model or dataset)."""
    return {"kind": kind, "scenario": scenario, **extra, "switch_epoch": switch_epoch,
            "policy_space": describe_space(space), "reward": describe_params(params)}


@dataclass(frozen=True)
class ModelSource:
    """Scenario `scenario` (A, B, C, mixed) seeded per replay seed, through the model."""

    scenario: str
    space: PolicySpace
    calibration: Path
    params: RewardParams
    switch_epoch: int = 5000

    def describe(self) -> dict[str, Any]:
        return describe_scenario_source("model", self.scenario, self.switch_epoch, self.space,
                                        self.params, calibration=str(self.calibration))

    def build(self, seed: int) -> ModelEnvironment:
        scenario = make_scenario(self.scenario, seed, switch_epoch=self.switch_epoch)
        return ModelEnvironment(scenario, self.space, load_calibration(self.calibration),
                                self.params)
