"""A slice scheduler that needs no learning, run as an agent (`hil run --agent
fixed-slicing`): the floor `metahrl` must clear online, through the same engine, drivers and
reward.

It wraps the schedulers of `agents.meta_hrl.fixed` and sees the live DU exactly as `metahrl`
does (`agents.meta_hrl.online.LiveDu`: the users' reports become the slicing environment's
observation, an action becomes per-user DL PRB caps under the least restrictive cell
policy). `rule` chooses the scheduler:

- `equal`: every slice the same PRBs, every user of a slice the same;
- `constant`: the slice shares `shares` (eMBB, URLLC, mMTC; normalised);
- `best-constant`: the constant split with the highest reward on a simulated DU of the same
  profile, searched once (grid of 0.1, one episode of the fixed seed `SEARCH_SEED`), so every
  run and every seed deploys the same split, as an operator would;
- `load-proportional`: users by demand plus queue, slices by the sum;
- `proportional-fair`: backlogged users by CQI efficiency over their average rate.

`users: queue` weights a slice's users by their queues instead of equally (the split
rules only). The search is not done in the constructor but by `prepare()`, which a fresh run
calls before its testbed starts (else at the first decision), and the split it found is part
of the state: a resumed run neither searches again nor can drift to another split if the
search changes. The state also holds proportional fair's per-user
averages, so a resumed run continues decision for decision.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, cast, get_args

import numpy as np

from agents.base import Context, Decision, check_feedback, check_state
from agents.meta_hrl.env import DuSlicingEnv
from agents.meta_hrl.fixed import (
    LoadProportional,
    ProportionalFair,
    Scheduler,
    SliceSplit,
    UserRule,
    search_split,
)
from agents.meta_hrl.online import LiveDu
from agents.policy_space import PolicySpace
from hil.base.slices import SLICES, du_profile

RULES = ("equal", "constant", "best-constant", "load-proportional", "proportional-fair")
SPLIT_RULES = ("equal", "constant", "best-constant")
SEARCH_SEED = 0
"""The simulated episodes the best constant split is searched on (the training seed)."""
SEARCH_STEPS = 200
"""One simulated episode (2 s of traffic in steps of 10 TTIs), as long as training's."""


class FixedSlicingAgent:
    name = "fixed-slicing"

    def __init__(
        self,
        n_actions: int,
        *,
        seed: int,
        du: Mapping[str, int] | None = None,
        policy_space: PolicySpace | None = None,
        rule: str = "equal",
        shares: Sequence[float] | None = None,
        users: UserRule = "equal",
    ) -> None:
        """`seed` is the protocol's: a fixed rule draws nothing."""
        self.live = LiveDu(self.name, du, n_actions, policy_space)
        self.n_actions = n_actions
        _check_rule(rule, shares, users)
        self._config = {"du": dict(du or {}), "rule": rule,
                        "shares": None if shares is None else [float(s) for s in shares],
                        "users": users}
        self.scheduler: Scheduler | None = (
            None if rule == "best-constant" else _scheduler(rule, self._config["shares"], users))

    # ------------------------------------------------------------------ the Agent protocol
    def prepare(self) -> None:
        """Search the best constant split if the rule wants it and it is not known yet."""
        if self.scheduler is None:
            users = self._config["users"]
            self.scheduler = SliceSplit(
                best_shares(self.live.du["n_ues"], self.live.du["seed"], users), users)

    def select(self, context: Context | None = None) -> Decision:
        self.prepare()
        assert self.scheduler is not None
        obs, _ = self.live.observe(context or Context())
        return self.live.decision(self.scheduler.action(self.live.env, obs))

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        check_feedback(decision, reward, self.n_actions)

    def probabilities(self) -> np.ndarray:
        return self.live.probabilities()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The scheduler's fields (the searched split, PF's averages), deep-copied."""
        scheduler = None if self.scheduler is None else asdict(cast(Any, self.scheduler))
        return {"agent": self.name, "config": self._config, "scheduler": scheduler,
                "live": self.live.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config)
        if "live" in state:  # states saved before users were placed from their reports
            self.live.load_state_dict(state["live"])
        saved = state["scheduler"]
        if saved is None:
            self.scheduler = None
            return
        fields = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in saved.items()}
        self.scheduler = _scheduler_class(self._config["rule"])(**fields)


def _check_rule(rule: str, shares: Sequence[float] | None, users: UserRule) -> None:
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    if (shares is not None) != (rule == "constant"):
        raise ValueError("shares goes with rule constant, and rule constant needs it: e.g. "
                         "`rule: constant, shares: [0.5, 0.3, 0.2]` (eMBB, URLLC, mMTC)")
    if shares is not None:
        values = np.asarray(shares, dtype=float)
        if values.shape != (len(SLICES),) or (values < 0).any() or values.sum() <= 0:
            raise ValueError(f"shares must be {len(SLICES)} non-negative numbers, one per "
                             f"slice ({', '.join(SLICES)}), not all zero; got {list(shares)}")
    if users not in get_args(UserRule):
        raise ValueError(f"users {users!r} is not one of {', '.join(get_args(UserRule))}")
    if users != "equal" and rule not in SPLIT_RULES:
        raise ValueError(f"users: {users} weights users inside a slice split; rule {rule} "
                         f"weights them itself (use it with {', '.join(SPLIT_RULES)})")


def _scheduler_class(rule: str) -> type:
    return {"load-proportional": LoadProportional,
            "proportional-fair": ProportionalFair}.get(rule, SliceSplit)


def _scheduler(rule: str, shares: list[float] | None, users: UserRule) -> Scheduler:
    if rule in SPLIT_RULES:
        return SliceSplit(None if shares is None else (shares[0], shares[1], shares[2]), users)
    return _scheduler_class(rule)()


@functools.cache
def best_shares(n_ues: int, du_seed: int, users: UserRule = "equal") -> tuple[float, float, float]:
    """The best constant split of the simulated DU (n_ues, du_seed), on the grid's values
    (0.30000000000000004 is 0.3); deterministic, so cached for every agent of the process
    (a paired comparison builds one per seed)."""
    env = DuSlicingEnv(du_profile(n_ues, du_seed), power_control=False)
    best, _ = search_split([env], users=users, steps=SEARCH_STEPS, seed=SEARCH_SEED)
    assert best.shares is not None
    a, b, c = (round(s, 6) for s in best.shares)
    return a, b, c
