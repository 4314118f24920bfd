"""A DU on a live vBS, seen through the slicing environment: what every scheduler that caps
users online shares (`metahrl`, `fixed-slicing`), so that they differ only in how they
choose an action.

The round engine hands an agent the users' last reports (`Context.users`) and takes back
one decision: a cell-level policy and a DL PRB cap per user. `LiveDu` turns the reports
into the observation the schedulers were built on (`DuSlicingEnv.observe_reports`, so a
simulated and a live DU look alike to them) and an environment action into per-user caps
that share the cell's PRBs per TTI. The cell-level policy is the policy space's least
restrictive one, so the users' caps alone shape the cell. Which user is in which slice
comes from the reports (each user's QCI), not from the emulator's numbering, so the same
agent schedules the users of a patched srsENB.

The environment is built with `power_control=False`: the protocol caps each user's PRBs
but has no per-user power (the DL gain is one cell-wide threshold, and neither the emulator
nor the srsENB patch has a per-user one), so an action's power part has no live
counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from agents.base import Context, Decision, UserReport
from agents.meta_hrl.env import DuSlicingEnv, allocate_prbs
from agents.policy_space import Policy, PolicySpace
from hil.base.slices import SLICES, DuProfile, du_profile, slice_of_qci


class LiveDu:
    """The DU `du` (`{n_ues, seed}`: its slices' sizes and targets, the emulator's
    `vbs.emulator.du`) a live scheduler caps, and which reported user fills which of its
    users' places.

    The scheduler's networks see a fixed number of users per slice, in slice order. A user
    takes the first free place of its slice when it is first reported, its slice told by
    the QCI of its default bearer (`hil.base.slices.SLICE_QCI`), which the vBS reports per
    user (rtctl v1, section 6.4); users are taken in RNTI order within a round. A place
    keeps its user for the run. A user reported without a QCI, with another slice's QCI or
    when its slice has no free place is left uncapped and named in the decision's
    `unplaced_rntis`; a place with no user yet is seen as idle.
    """

    def __init__(self, agent: str, du: Mapping[str, int] | None, n_actions: int,
                 policy_space: PolicySpace | None) -> None:
        if du is None or "n_ues" not in du:
            raise ValueError(f"{agent} schedules the users of a DU: give `du: {{n_ues: N, "
                             "seed: S}` (the emulator's `vbs.emulator.du` is passed on by "
                             "default)")
        self.du = {"n_ues": int(du["n_ues"]), "seed": int(du.get("seed", 0))}
        self.profile: DuProfile = du_profile(self.du["n_ues"], self.du["seed"])
        self.env = DuSlicingEnv(self.profile, power_control=False)  # features and PRB mapping
        self.rntis: list[int | None] = [None] * self.profile.n_ues
        """The RNTI in each of the DU's places (in slice order), None while free."""
        self.unplaced: list[int] = []
        self.n_actions = n_actions
        self.policy = least_restrictive(policy_space, n_actions)

    def observe(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """Place new users, then the environment's observation of the users' last round
        (idle places before their user's first report) and each slice's QoS in it."""
        reports = {u.rnti: u for u in context.users}
        self._place(sorted(reports.values(), key=lambda u: u.rnti))
        return self.env.observe_reports([reports.get(r) if r else None for r in self.rntis])

    def _place(self, users: list[UserReport]) -> None:
        placed = set(self.rntis)
        self.unplaced = []
        for user in users:
            if user.rnti in placed:
                continue
            k = slice_of_qci(user.qci)
            free = [i for i, r in enumerate(self.rntis)
                    if r is None and self.env.user_slice[i] == k]
            if free:
                self.rntis[free[0]] = user.rnti
            else:
                self.unplaced.append(user.rnti)

    def slice_rewards(self, slice_qos: np.ndarray, context: Context | None) -> np.ndarray:
        """Each slice's QoS minus the power weight times its share of the PRBs used (airtime
        is what costs power), as the environment rewards a slice."""
        users: dict[int, UserReport] = {u.rnti: u for u in (context.users if context else ())}
        prb = np.array([users[r].dl_prb if r in users else 0.0 for r in self.rntis])
        share = np.bincount(self.env.user_slice, prb, minlength=len(SLICES)) / max(
            prb.sum(), 1e-9)
        return slice_qos - self.env.power_weight * share

    def caps(self, env_action: np.ndarray) -> dict[int, int]:
        """Per-user DL PRB caps (RNTI -> PRBs per TTI) of an environment action: its slice
        and user scores split the cell's PRBs over the places (its power part is ignored);
        a free place's share stays unused until its user comes."""
        n = len(self.rntis)
        _, per_user = allocate_prbs(env_action[:3], env_action[3:3 + n], self.env.user_slice,
                                    self.env.cal.cell.nof_prb)
        return {r: int(c) for r, c in zip(self.rntis, per_user) if r is not None}

    def decision(self, env_action: np.ndarray) -> Decision:
        """The engine's decision for an environment action: the least restrictive cell
        policy, for sure, and the placed users' caps."""
        caps = self.caps(env_action)
        return Decision(action=self.policy, prob=1.0, ue_dl_max_prb=caps,
                        info={"prb_split": slice_split(caps, self.rntis, self.env.user_slice),
                              "unplaced_rntis": list(self.unplaced)})

    def probabilities(self) -> np.ndarray:
        """Certainty on the cell policy: the choice a scheduler makes is in the caps."""
        p = np.zeros(self.n_actions)
        p[self.policy] = 1.0
        return p

    def state_dict(self) -> dict[str, Any]:
        """Who is in which place, so a resumed run keeps each user where it learned it."""
        return {"rntis": list(self.rntis)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["rntis"]) != len(self.rntis):
            raise ValueError(f"the saved DU has {len(state['rntis'])} users' places, this one "
                             f"{len(self.rntis)}")
        self.rntis = list(state["rntis"])


def least_restrictive(space: PolicySpace | None, n_actions: int) -> int:
    """The index of the policy with every cell cap at its loosest (the users' caps rule)."""
    if space is None:
        return n_actions - 1
    return space.index(Policy(*(max(getattr(space, f.name)) for f in fields(space))))


def slice_split(caps: Mapping[int, int], rntis: list[int | None],
                user_slice: np.ndarray) -> list[int]:
    """PRBs per TTI of each slice under per-user caps (the DU's places hold `rntis`)."""
    prb = [float(caps.get(r, 0)) if r is not None else 0.0 for r in rntis]
    per_slice = np.bincount(user_slice, prb, minlength=len(SLICES))
    return per_slice.astype(int).tolist()
