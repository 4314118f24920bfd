"""A DU on a live vBS, seen through the slicing environment: what every scheduler that caps
users online shares (`metahrl`, `fixed-slicing`), so that they differ only in how they
choose an action.

The round engine hands an agent the users' last reports (`Context.users`) and takes back
one decision: a cell-level policy and a DL PRB cap per user. `LiveDu` turns the reports
into the observation the schedulers were built on (`DuSlicingEnv.observe_reports`, so a
simulated and a live DU look alike to them) and an environment action into per-user caps
that share the cell's PRBs per TTI. The cell-level policy is the policy space's least
restrictive one, so the users' caps alone shape the cell.

The environment is built with `power_control=False`: the protocol caps each user's PRBs
but has no per-user power (the DL gain is one cell-wide threshold, and neither the emulator
nor the srsENB patch has a per-user one), so an action's power part has no live
counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

import numpy as np

from agents.base import Context, Decision, UserReport
from agents.meta_hrl.env import DuSlicingEnv, allocate_prbs
from agents.policy_space import Policy, PolicySpace
from drivers.emulated.sliced_vbs import user_rntis
from hil.base.slices import SLICES, DuProfile, du_profile


class LiveDu:
    """The DU `du` (`{n_ues, seed}`, the emulator's `vbs.emulator.du`) a live scheduler caps."""

    def __init__(self, agent: str, du: Mapping[str, int] | None, n_actions: int,
                 policy_space: PolicySpace | None) -> None:
        if du is None or "n_ues" not in du:
            raise ValueError(f"{agent} schedules the users of a DU: give `du: {{n_ues: N, "
                             "seed: S}` (the emulator's `vbs.emulator.du` is passed on by "
                             "default)")
        self.du = {"n_ues": int(du["n_ues"]), "seed": int(du.get("seed", 0))}
        self.profile: DuProfile = du_profile(self.du["n_ues"], self.du["seed"])
        self.env = DuSlicingEnv(self.profile, power_control=False)  # features and PRB mapping
        self.rntis = user_rntis(self.profile)
        self.n_actions = n_actions
        self.policy = least_restrictive(policy_space, n_actions)

    def observe(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """The environment's observation of the users' last round (idle users before the
        first report) and each slice's QoS in it."""
        reports = {u.rnti: u for u in context.users}
        return self.env.observe_reports([reports.get(r) for r in self.rntis])

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
        and user scores split the cell's PRBs (its power part is ignored)."""
        n = len(self.rntis)
        _, per_user = allocate_prbs(env_action[:3], env_action[3:3 + n], self.env.user_slice,
                                    self.env.cal.cell.nof_prb)
        return {r: int(c) for r, c in zip(self.rntis, per_user)}

    def decision(self, env_action: np.ndarray) -> Decision:
        """The engine's decision for an environment action: the least restrictive cell
        policy, for sure, and the users' caps."""
        caps = self.caps(env_action)
        return Decision(action=self.policy, prob=1.0, ue_dl_max_prb=caps,
                        info={"prb_split": slice_split(caps, self.env.user_slice)})

    def probabilities(self) -> np.ndarray:
        """Certainty on the cell policy: the choice a scheduler makes is in the caps."""
        p = np.zeros(self.n_actions)
        p[self.policy] = 1.0
        return p


def least_restrictive(space: PolicySpace | None, n_actions: int) -> int:
    """The index of the policy with every cell cap at its loosest (the users' caps rule)."""
    if space is None:
        return n_actions - 1
    return space.index(Policy(*(max(getattr(space, f.name)) for f in fields(space))))


def slice_split(caps: Mapping[int, int], user_slice: np.ndarray) -> list[int]:
    """PRBs per TTI of each slice under per-user caps (in the order of the DU's users)."""
    per_slice = np.bincount(user_slice, np.fromiter(caps.values(), float), minlength=len(SLICES))
    return per_slice.astype(int).tolist()
