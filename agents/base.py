"""The contract between the round engine and every learner.

An agent sees (optionally) what the controller measured in the previous round, picks an
action (an index into the policy space) and later learns from that action's reward. Agents
are pure: no I/O and no clock, and all their randomness comes from one
`numpy.random.Generator` they own, so that a run can be checkpointed, resumed and replayed
decision for decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class UserReport:
    """One user's downlink in the previous round, as the vBS reported it per RNTI; what a
    scheduler that caps users (Meta-HRL) observes."""

    rnti: int
    dl_demand_mbps: float
    dl_rate_mbps: float
    dl_backlog_bytes: int
    dl_cqi: float
    dl_mcs: float
    dl_prb: float  # mean PRBs per TTI
    qci: int | None = None  # of the user's default bearer: its slice (None: not reported)


@dataclass(frozen=True)
class Context:
    """What the controller saw before deciding (the previous round); every field may be unknown."""

    dl_cqi: float | None = None
    ul_cqi: float | None = None
    dl_demand_mbps: float | None = None
    ul_demand_mbps: float | None = None
    users: tuple[UserReport, ...] = ()


@dataclass(frozen=True)
class Decision:
    """One chosen action and the probability with which it was chosen.

    The probability is kept so that bandits can weight their feedback by it and so that a
    recorded run can be evaluated off-policy later.
    """

    action: int
    prob: float
    info: Mapping[str, Any] = field(default_factory=dict)
    ue_dl_max_prb: Mapping[int, int] = field(default_factory=dict)
    """Per-user DL PRB caps (RNTI -> PRBs per TTI) to apply with the policy; bandits leave
    it empty, a scheduler over users fills it."""


@runtime_checkable
class Agent(Protocol):
    """A learner over `n_actions` discrete actions.

    Contract: after `b.load_state_dict(a.state_dict())`, agent `b` (built with the same
    parameters) makes exactly the same future decisions as `a` given the same rewards.
    """

    name: str
    n_actions: int

    def select(self, context: Context | None = None) -> Decision:
        """Pick the action for the coming round."""
        ...

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Learn from the reward in [0, 1] of `decision`; ValueError outside that range.

        `measured` is the context the round itself had (its CQI and demand, known only once
        it is over); a learner that models rewards by context learns from it, the others
        ignore it. The context `select` saw is the previous round's."""
        ...

    def probabilities(self) -> np.ndarray:
        """The full distribution over actions that `select` would sample now (O(K))."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, RNG included: plain Python and numpy arrays."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; ValueError if it belongs to another setup."""
        ...


def check_bandit(n_actions: int, horizon: int | None = None) -> None:
    """Refuse a bandit without a choice to make, or a horizon of no round."""
    if n_actions < 2:
        raise ValueError(f"a bandit needs at least 2 actions, got n_actions={n_actions}")
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be at least 1 round, got {horizon}")


def check_feedback(decision: Decision, reward: float, n_actions: int) -> None:
    """Reject feedback that no agent should learn from: a reward outside [0, 1] or NaN,
    or an action that is not in the agent's action space."""
    if not 0.0 <= reward <= 1.0:  # also rejects NaN
        raise ValueError(f"reward must be in [0, 1] (normalise it first), got {reward!r}")
    if not 0 <= decision.action < n_actions:
        raise ValueError(f"decision.action {decision.action} is not in 0..{n_actions - 1}")


def check_state(state: Mapping[str, Any], agent: str, config: Mapping[str, Any]) -> None:
    """Refuse a saved state that was made by another agent or with other parameters, since
    loading it would silently break the same-future-decisions contract."""
    if state.get("agent") != agent:
        raise ValueError(f"state was saved by agent {state.get('agent')!r}, not {agent!r}")
    if state.get("config") != dict(config):
        raise ValueError(
            f"state of {agent!r} was saved with {state.get('config')!r}, this agent has "
            f"{dict(config)!r}; build the agent with the parameters of the saved run"
        )


def uniform_index(u: float, n: int) -> int:
    """Map a uniform draw u in [0, 1) to an index in 0..n-1 (clamped against rounding up)."""
    return min(math.floor(u * n), n - 1)
