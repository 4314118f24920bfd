"""`fixed-slicing`: the schedulers that need no learning, run online as agents through the
same reports-in, caps-out path as `metahrl`."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
from test_meta_hrl_agent import DU, context

import agents.meta_hrl.fixed_agent as fixed_agent
from agents.meta_hrl.env import DuSlicingEnv
from agents.meta_hrl.fixed import SliceSplit, run_scheduler, split_grid
from agents.meta_hrl.fixed_agent import FixedSlicingAgent, best_shares
from agents.policy_space import PAPER_SPACE, Policy
from agents.registry import agent_params, make_agent
from hil.base.errors import ConfigError
from hil.base.slices import du_profile

CELL_PRB = 50  # the calibration's cell: PRBs per TTI


def build(**params) -> FixedSlicingAgent:
    return FixedSlicingAgent(PAPER_SPACE.size, seed=0, du=DU, policy_space=PAPER_SPACE, **params)


def play(agent: FixedSlicingAgent, first: int, rounds: int) -> list[dict[int, int]]:
    caps = []
    for k in range(first, first + rounds):
        decision = agent.select(context(k))
        agent.update(decision, 0.5)
        caps.append(dict(decision.ue_dl_max_prb))
    return caps


def per_slice(agent: FixedSlicingAgent, caps: dict[int, int]) -> np.ndarray:
    user_slice = agent.live.env.user_slice
    return np.bincount(user_slice, [caps[r] for r in agent.live.rntis], minlength=3)


def test_the_equal_rule_gives_every_slice_and_every_user_of_a_slice_the_same_prbs():
    agent = build(rule="equal")
    decision = agent.select(context(0))
    caps = decision.ue_dl_max_prb
    assert sorted(caps) == list(range(70, 76)) and sum(caps.values()) == CELL_PRB
    slices = per_slice(agent, caps)
    assert slices.max() - slices.min() <= 1  # 17, 17, 16: whole PRBs
    assert decision.info["prb_split"] == slices.tolist()
    for k in range(3):
        members = [caps[r] for r, s in zip(agent.live.rntis, agent.live.env.user_slice) if s == k]
        assert max(members) - min(members) <= 1
    loosest = Policy(*(max(values) for values in (PAPER_SPACE.dl_gain_db, PAPER_SPACE.dl_max_mcs,
                                                  PAPER_SPACE.dl_prb_ratio, PAPER_SPACE.ul_max_mcs,
                                                  PAPER_SPACE.ul_prb_ratio)))
    assert decision.action == PAPER_SPACE.index(loosest) and decision.prob == 1.0
    assert agent.probabilities()[decision.action] == 1.0
    assert play(agent, 1, 5) == [dict(caps)] * 5  # it does not learn


def test_a_constant_rule_splits_the_cell_by_its_shares():
    agent = build(rule="constant", shares=[5, 3, 2])  # normalised: 0.5, 0.3, 0.2
    assert per_slice(agent, agent.select(context(0)).ue_dl_max_prb).tolist() == [25, 15, 10]


def test_users_by_queue_give_an_idle_user_nothing():
    agent = build(rule="constant", shares=[0.5, 0.3, 0.2], users="queue")
    reports = list(context(0).users)
    idle = reports[0]
    reports[0] = replace(idle, dl_rate_mbps=0.0, dl_backlog_bytes=0, dl_prb=0.0)
    caps = agent.select(type(context(0))(users=tuple(reports))).ue_dl_max_prb
    assert caps[idle.rnti] == 0 and sum(caps.values()) == CELL_PRB


def test_load_proportional_gives_a_busier_user_more():
    agent = build(rule="load-proportional")
    ctx = context(3)
    caps = agent.select(ctx).ue_dl_max_prb
    load = {u.rnti: u.dl_demand_mbps + u.dl_backlog_bytes for u in ctx.users}
    user_slice = dict(zip(agent.live.rntis, agent.live.env.user_slice))
    for a in caps:
        for b in caps:
            if user_slice[a] == user_slice[b] and load[a] > load[b] * 1.5:
                assert caps[a] >= caps[b]
    assert sum(caps.values()) == CELL_PRB


def test_best_constant_searches_once_before_the_first_decision_and_a_resume_keeps_it(
        monkeypatch):
    searches = []

    def search(envs, **kwargs):
        searches.append(kwargs)
        return SliceSplit((0.6, 0.3, 0.1)), 0.0

    monkeypatch.setattr(fixed_agent, "search_split", search)
    best_shares.cache_clear()
    try:
        agent = build(rule="best-constant")
        assert searches == []  # not in the constructor: a resume builds the agent again
        caps = play(agent, 0, 3)
        assert len(searches) == 1 and per_slice(agent, caps[0]).tolist() == [30, 15, 5]
        best_shares.cache_clear()
        restored = build(rule="best-constant")
        restored.load_state_dict(pickle.loads(pickle.dumps(agent.state_dict())))
        restored.prepare()  # nothing left to prepare
        assert play(restored, 3, 3) == play(agent, 3, 3)
        assert len(searches) == 1  # the split came from the state
    finally:
        best_shares.cache_clear()


def test_the_best_constant_split_is_the_best_of_the_grid_on_the_simulated_du():
    shares = best_shares(DU["n_ues"], DU["seed"])
    grid = {tuple(round(s, 6) for s in split) for split in split_grid()}
    assert shares in grid and sum(shares) == pytest.approx(1.0)
    env = DuSlicingEnv(du_profile(DU["n_ues"], DU["seed"]), power_control=False)

    def reward(split: tuple[float, float, float] | None) -> float:
        return run_scheduler(SliceSplit(split), env, steps=fixed_agent.SEARCH_STEPS,
                             seed=fixed_agent.SEARCH_SEED)

    assert reward(shares) >= reward(None)  # at least as good as the equal split
    assert reward(shares) >= reward((0.2, 0.4, 0.4))
    assert best_shares(DU["n_ues"], DU["seed"]) is shares  # searched once per process


def test_proportional_fair_resumes_decision_for_decision():
    agent = build(rule="proportional-fair")
    play(agent, 0, 20)
    restored = build(rule="proportional-fair")
    restored.load_state_dict(pickle.loads(pickle.dumps(agent.state_dict())))
    expected = play(agent, 20, 15)
    assert play(restored, 20, 15) == expected
    assert len({tuple(c.values()) for c in expected}) > 1  # its averages move the caps
    assert play(build(rule="proportional-fair"), 20, 15) != expected  # they are the state


def test_a_state_saved_with_another_rule_is_refused():
    with pytest.raises(ValueError, match="saved with"):
        build(rule="equal").load_state_dict(build(rule="load-proportional").state_dict())


@pytest.mark.parametrize("reward", [-0.1, 1.5, float("nan")])
def test_rewards_outside_0_1_are_refused(reward):
    agent = build()
    with pytest.raises(ValueError, match="reward"):
        agent.update(agent.select(context(0)), reward)


@pytest.mark.parametrize(("params", "named"), [
    ({"rule": "best"}, "rule 'best' is not one of equal, constant, best-constant"),
    ({"rule": "constant"}, "rule constant needs it"),
    ({"rule": "equal", "shares": [1, 1, 1]}, "shares goes with rule constant"),
    ({"rule": "constant", "shares": [1, 1]}, "shares must be 3 non-negative numbers"),
    ({"rule": "constant", "shares": [0, 0, 0]}, "not all zero"),
    ({"rule": "proportional-fair", "users": "queue"}, "weights them itself"),
    ({"users": "random"}, "users 'random' is not one of equal, queue"),
])
def test_a_wrong_rule_is_a_config_error_that_says_what_to_give(params, named):
    with pytest.raises(ConfigError, match=named):
        make_agent("fixed-slicing", PAPER_SPACE.size, seed=0, horizon=None, du=DU, **params)


def test_it_is_registered_and_needs_the_du_it_schedules():
    assert {"du", "policy_space", "rule", "shares", "users"} <= set(agent_params("fixed-slicing"))
    with pytest.raises(ConfigError, match="fixed-slicing schedules the users of a DU"):
        make_agent("fixed-slicing", PAPER_SPACE.size, seed=0, horizon=None)
