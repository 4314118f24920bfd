"""The emulated vBS that serves several users in slices: per-user caps over rtctl v1."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from test_emulated_vbs import CALIBRATION, FakeClock, ok

from drivers.emulated.sliced_vbs import FIRST_RNTI, SlicedVbs, grant_prbs
from drivers.rtctl.server import RtctlServer
from hil.base.slices import du_profile

WINDOW_TTI = 1000
N_UES = 6


class SlicedSession:
    def __init__(self, seed: int = 0) -> None:
        self.clock = FakeClock()
        self.backend = SlicedVbs(CALIBRATION, du_profile(N_UES, seed), seed=seed, clock=self.clock)
        self.server = RtctlServer("inproc://unused", self.backend)
        self.seq = 0

    def send(self, op: str, thresholds: dict[str, Any] | None = None) -> dict:
        self.seq += 1
        request: dict[str, Any] = {"v": 1, "sid": "s", "seq": self.seq, "op": op}
        if thresholds is not None:
            request["thresholds"] = thresholds
        return ok(self.server.handle(json.dumps(request).encode()))

    def window_under(self, thresholds: dict[str, Any]) -> dict:
        self.send("set", thresholds)
        self.clock.advance(WINDOW_TTI)
        return self.send("get")


def caps(*per_user: int | None) -> dict[str, Any]:
    return {"ue": {str(FIRST_RNTI + i): {"dl_max_prb": c}
                   for i, c in enumerate(per_user) if c is not None}}


def test_every_user_is_reported_under_its_rnti_and_the_cell_is_their_sum():
    window = SlicedSession().window_under({})
    users = window["ue"]
    assert sorted(int(r) for r in users) == list(range(FIRST_RNTI, FIRST_RNTI + N_UES))
    for key in ("dl_bits_acked", "dl_bits_arrived", "dl_prb_tti"):
        assert window["cell"][key] == sum(u[key] for u in users.values())
    assert window["cell"]["dl_bits_acked"] > 0


def test_a_per_user_cap_bounds_that_users_prbs_and_a_cap_of_zero_starves_it():
    users = SlicedSession().window_under(caps(5, 0, 20, 10, 10, 5))["ue"]
    assert users[str(FIRST_RNTI)]["dl_prb_tti"] <= 5 * WINDOW_TTI
    assert users[str(FIRST_RNTI + 1)]["dl_prb_tti"] == 0
    assert users[str(FIRST_RNTI + 1)]["dl_bits_acked"] == 0
    assert users[str(FIRST_RNTI + 1)]["dl_backlog_bytes"] > 0


def test_more_prbs_for_a_user_carry_more_of_its_traffic():
    few = SlicedSession(seed=2).window_under(caps(1, 1, 1, 1, 1, 1))["ue"]
    many = SlicedSession(seed=2).window_under(caps(40, 1, 1, 1, 1, 1))["ue"]
    first = str(FIRST_RNTI)
    assert many[first]["dl_bits_acked"] > few[first]["dl_bits_acked"]


def test_the_cell_never_grants_more_than_its_budget_and_counts_no_violation():
    window = SlicedSession().window_under({"dl_prb_ratio": 0.5, **caps(30, 30, None, None, 30, 30)})
    assert window["cell"]["dl_prb_tti"] <= 25 * WINDOW_TTI
    assert all(v == 0 for v in window["cell"]["violations"].values())


def test_grants_by_hand():
    assert grant_prbs([10, 0, None, None], 50).tolist() == [10, 0, 20, 20]
    assert grant_prbs([30, 30, None], 50).tolist() == [25, 25, 0]  # caps scaled to the budget
    assert grant_prbs([None, None, None], 50).tolist() == [17, 17, 16]
    assert grant_prbs([None], 0).tolist() == [0]


def test_a_lower_dl_gain_draws_less_power():
    def power(gain_db: float) -> float:
        session = SlicedSession(seed=1)
        session.window_under({"dl_gain_db": gain_db})
        return session.backend.read_power()[0]

    assert power(-10.0) < power(0.0)


@pytest.mark.parametrize("n_ues", [3, 30])
def test_the_du_is_the_one_a_scheduler_of_the_same_size_and_seed_expects(n_ues):
    from agents.meta_hrl.env import heldout_task

    assert du_profile(n_ues, 4) == heldout_task(n_ues, seed=4).profile
    assert np.array_equal(du_profile(n_ues, 4).user_slice, heldout_task(n_ues, 4).user_slice)
