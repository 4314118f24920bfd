"""Meta-HRL online: the agent `hil run --agent metahrl` drives, on its own and through the
emulated vBS that serves users in slices."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from agents.base import Context, UserReport
from agents.meta_hrl.agent import MetaHrlAgent, save_model
from agents.meta_hrl.hrl import HrlLearner
from agents.policy_space import PAPER_SPACE, Policy
from agents.registry import make_agent
from hil.errors import ConfigError

DU = {"n_ues": 6, "seed": 0}


def build(seed: int = 0, **params) -> MetaHrlAgent:
    return MetaHrlAgent(PAPER_SPACE.size, seed=seed, du=DU, policy_space=PAPER_SPACE, **params)


def context(round_index: int) -> Context:
    """Six users whose reports change with the round."""
    rng = np.random.default_rng(round_index)
    return Context(users=tuple(
        UserReport(70 + i, dl_demand_mbps=float(rng.uniform(0.5, 6)),
                   dl_rate_mbps=float(rng.uniform(0, 3)),
                   dl_backlog_bytes=int(rng.integers(0, 100_000)),
                   dl_cqi=float(rng.uniform(5, 15)), dl_mcs=float(rng.uniform(5, 28)),
                   dl_prb=float(rng.uniform(0, 10))) for i in range(6)))


def play(agent: MetaHrlAgent, first: int, rounds: int) -> list[dict[int, int]]:
    caps = []
    for k in range(first, first + rounds):
        decision = agent.select(context(k))
        agent.update(decision, 0.3 + 0.4 * (k % 3) / 2)
        caps.append(dict(decision.ue_dl_max_prb))
    return caps


def test_each_round_caps_every_user_and_the_caps_share_the_cell():
    agent = build()
    decision = agent.select(context(0))
    assert sorted(decision.ue_dl_max_prb) == list(range(70, 76))
    assert sum(decision.ue_dl_max_prb.values()) == 50  # the cell's PRBs per TTI
    loosest = Policy(*(max(values) for values in (PAPER_SPACE.dl_gain_db, PAPER_SPACE.dl_max_mcs,
                                                  PAPER_SPACE.dl_prb_ratio, PAPER_SPACE.ul_max_mcs,
                                                  PAPER_SPACE.ul_prb_ratio)))
    assert decision.action == PAPER_SPACE.index(loosest) and decision.prob == 1.0
    assert agent.probabilities()[decision.action] == 1.0


def test_it_learns_online_from_the_rounds_it_played():
    agent = build(batch_size=8)
    before = {k: v.detach().clone() for k, v in agent.params.items()}
    play(agent, 0, 30)
    assert agent.rollout.low_buffer.size == 29  # every round but the last, closed by the next
    assert any(not np.array_equal(v.detach().numpy(), before[k].numpy())
               for k, v in agent.params.items())


def test_a_restored_agent_makes_exactly_the_same_next_decisions():
    agent = build(seed=1, batch_size=8)
    play(agent, 0, 40)
    restored = build(seed=2, batch_size=8)  # everything must come from the state
    restored.load_state_dict(pickle.loads(pickle.dumps(agent.state_dict())))
    assert play(restored, 40, 20) == play(agent, 40, 20)


def test_a_state_saved_with_other_parameters_is_refused():
    with pytest.raises(ValueError, match="saved with"):
        build(batch_size=8).load_state_dict(build(batch_size=16).state_dict())


@pytest.mark.parametrize("reward", [-0.1, 1.5, float("nan")])
def test_rewards_outside_0_1_are_refused(reward):
    agent = build()
    with pytest.raises(ValueError, match="reward"):
        agent.update(agent.select(context(0)), reward)


def test_it_needs_the_du_it_schedules():
    with pytest.raises(ConfigError, match="du"):
        make_agent("metahrl", PAPER_SPACE.size, seed=0, horizon=None)


def test_it_starts_from_a_saved_meta_model(tmp_path):
    meta = HrlLearner(seed=7)
    save_model(meta, tmp_path / "meta.pt")
    agent = build(model=str(tmp_path / "meta.pt"))
    for key, value in meta.params().items():
        np.testing.assert_array_equal(agent.params[key].detach().numpy(), value.detach().numpy())
    with pytest.raises(ValueError, match="hil metahrl --save-model"):
        build(model=str(tmp_path / "missing.pt"))


@pytest.mark.e2e
def test_a_sigkilled_metahrl_run_resumes_decision_for_decision(tmp_path):
    """Through the CLI, a separate sliced emulator and real sockets: the resumed agent must
    choose again exactly the user caps recorded since its checkpoint (the engine checks)."""
    import signal

    from hil.cli import main
    from hil.recorder import read_rounds
    from test_e2e import hil_subprocess, wait_for_rounds
    from testbed_yaml import write_config

    config = write_config(tmp_path, rounds=60, **{
        "clock.speedup": 50.0, "recording.checkpoint_every": 20,
        "vbs.emulator.du": {"n_ues": 6, "seed": 0},
        "agent": {"name": "metahrl", "params": {"batch_size": 8}}})
    proc = hil_subprocess(config)
    run_dir = wait_for_rounds(tmp_path / "runs", 30, timeout_s=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    assert main(["run", "--resume", str(run_dir)]) == 0
    rounds = read_rounds(run_dir)
    assert rounds["round"].tolist() == list(range(60)) and rounds["valid"].all()
    caps = rounds["ue_dl_max_prb"]
    assert all(len(c) == 6 and sum(c) == 50 for c in caps)
    assert rounds["ue_rnti"].iloc[0].tolist() == list(range(70, 76))
