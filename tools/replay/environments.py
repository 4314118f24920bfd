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
(`hil.base.model.expected_round`) for any scenario. The model is separable: the DL
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
from hil.base.model import Calibration, expected_round, load_calibration, make_caps
from hil.base.scenarios import Environment, KindsOfC, Scenario, make_scenario
from hil.reward import RewardParams, reward

CONTEXT_FIELDS = ("dl_cqi", "ul_cqi", "dl_demand_mbps", "ul_demand_mbps")
ADAPTIVE_SCENARIO = "C-adaptive"
"""A replay-only scenario: its rounds depend on the learner (`worst_kind_for_leader`)."""
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

    def context_at(self, i: int) -> Context:
        """Round i's context seen before deciding; None where a value is unknown."""
        return as_context(self.context[i])

    def measured_at(self, i: int) -> Context:
        """Round i's own context, known once it is over."""
        return as_context(self.measured[i])


def as_context(row: np.ndarray) -> Context:
    return Context(*(None if np.isnan(v) else float(v) for v in row))


@dataclass(frozen=True, kw_only=True)
class KindBlock(RewardBlock):
    """Rounds whose kind an adaptive adversary picks while the learner plays: every round
    holds each kind's outcome, and `realize` fills the `RewardBlock` arrays with the one
    picked (so a realized block is an ordinary one for the benchmark and the report)."""

    by_kind_measured: np.ndarray
    """(n, kinds, 4)."""
    by_kind_reward: np.ndarray
    """(n, kinds, K)."""
    by_kind_power_w: np.ndarray
    """(n, kinds, K)."""
    kinds: np.ndarray
    """(n,) the kind picked per round (-1: not yet)."""

    def realize(self, i: int, kind: int, previous_measured: np.ndarray) -> None:
        """Round i is of `kind`; it sees `previous_measured` (the last round's) before."""
        self.kinds[i] = kind
        self.context[i] = previous_measured
        self.measured[i] = self.by_kind_measured[i, kind]
        self.reward[i] = self.by_kind_reward[i, kind]
        self.power_w[i] = self.by_kind_power_w[i, kind]


def worst_kind_for_leader(probabilities: np.ndarray, reward_by_kind: np.ndarray) -> int:
    """The adaptive adversary of scenario C-adaptive: it sees the learner's probabilities
    (not its draw) and picks the kind of round in which the current leader (the most
    probable policy) falls furthest behind that round's best policy; ties go to kind 0.
    `reward_by_kind` is (kinds, K)."""
    leader = int(np.argmax(probabilities))
    shortfall = reward_by_kind.max(axis=1) - reward_by_kind[:, leader]
    return int(np.argmax(shortfall))


class RewardEnvironment(Protocol):
    """What the runner and the report need from a source of rounds."""

    description: str
    """One line for the report: where the rounds come from."""
    idle_power_w: float
    """Power with nothing scheduled, subtracted in the energy comparison (paper Fig. 6b)."""
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
        self.idle_power_w = cal.power.idle_w + cal.power.radio_fixed_w
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


class AdaptiveModelEnvironment(ModelEnvironment):
    """Scenario C with an adaptive adversary, through the model: each round holds both of
    C's kinds (`hil.base.scenarios.KindsOfC`); the runner realizes one per round
    with `worst_kind_for_leader`."""

    adaptive = True

    def block(self, start: int, stop: int) -> KindBlock:
        both = self.scenario.epochs(start, stop)  # arrays (n, 2): good, poor
        n, kinds = both.dl_cqi.shape
        outcomes = []
        for kind in range(kinds):
            env = both.map(lambda a, k=kind: a[:, k].reshape((n,) + (1,) * len(self.space.shape)))
            out = expected_round(self._caps, env, self.cal)
            _, _, f = reward(out.dl_rate_mbps, out.dl_demand_mbps, out.ul_rate_mbps,
                             out.ul_demand_mbps, out.power_w, self.params)
            outcomes.append((f.reshape(n, -1), out.power_w.reshape(n, -1)))
        measured = np.stack([both.dl_cqi, both.ul_cqi, both.dl_demand_mbps,
                             both.ul_demand_mbps], axis=2)
        unknown = np.full((n, len(CONTEXT_FIELDS)), np.nan)
        return KindBlock(start, unknown, unknown.copy(), np.empty((n, self.n_actions)),
                         np.empty((n, self.n_actions)), by_kind_measured=measured,
                         by_kind_reward=np.stack([f for f, _ in outcomes], axis=1),
                         by_kind_power_w=np.stack([p for _, p in outcomes], axis=1),
                         kinds=np.full(n, -1))


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
        cal = load_calibration(self.calibration)
        if self.scenario == ADAPTIVE_SCENARIO:
            return AdaptiveModelEnvironment(KindsOfC(seed), self.space, cal, self.params,
                                            description="scenario C-adaptive (C's kinds of "
                                            "round, each picked against the learner's leader) "
                                            f"through the link and power model ({cal.name})")
        scenario = make_scenario(self.scenario, seed, switch_epoch=self.switch_epoch)
        return ModelEnvironment(scenario, self.space, cal, self.params)
