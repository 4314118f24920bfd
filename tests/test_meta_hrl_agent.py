"""Meta-HRL online: the agent `hil run --agent metahrl` drives, on its own and through the
emulated vBS that serves users in slices."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import pytest

import agents.meta_hrl.agent as agent_module
from agents.base import Context, UserReport
from agents.meta_hrl.agent import ONLINE_CONFIG, MetaHrlAgent, save_model
from agents.meta_hrl.hrl import HrlConfig, HrlLearner
from agents.policy_space import PAPER_SPACE, Policy
from agents.registry import make_agent
from hil.base.errors import ConfigError
from hil.base.slices import SLICE_QCI, du_profile, slice_of_qci

DU = {"n_ues": 6, "seed": 0}


def build(seed: int = 0, **params) -> MetaHrlAgent:
    return MetaHrlAgent(PAPER_SPACE.size, seed=seed, du=DU, policy_space=PAPER_SPACE, **params)


SLICE_OF_USER = du_profile(DU["n_ues"], DU["seed"]).user_slice


def context(round_index: int, rntis: Sequence[int] = range(70, 76),
            qcis: Sequence[int | None] | None = None) -> Context:
    """Six users whose reports change with the round; user i has RNTI rntis[i] and, unless
    given, the QCI of the DU's i-th user's slice."""
    rng = np.random.default_rng(round_index)
    qcis = [SLICE_QCI[k] for k in SLICE_OF_USER] if qcis is None else qcis
    return Context(users=tuple(
        UserReport(rntis[i], dl_demand_mbps=float(rng.uniform(0.5, 6)),
                   dl_rate_mbps=float(rng.uniform(0, 3)),
                   dl_backlog_bytes=int(rng.integers(0, 100_000)),
                   dl_cqi=float(rng.uniform(5, 15)), dl_mcs=float(rng.uniform(5, 28)),
                   dl_prb=float(rng.uniform(0, 10)), qci=qcis[i]) for i in range(len(rntis))))


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


def test_users_take_their_slice_s_places_by_the_qci_they_report_whatever_their_rntis():
    agent = build()
    rntis = [300, 120, 95, 4000, 71, 1200]  # srsENB numbers users as they attach
    caps = agent.select(context(0, rntis)).ue_dl_max_prb
    assert sorted(caps) == sorted(rntis) and sum(caps.values()) == 50
    assert [slice_of_qci(u.qci) for u in sorted(context(0, rntis).users, key=lambda u: u.rnti)
            ] == [SLICE_OF_USER[agent.live.rntis.index(r)] for r in sorted(rntis)]


def test_a_user_keeps_its_place_while_unreported_and_a_place_waits_idle_for_its_user():
    agent = build()
    agent.select(context(0))
    places = list(agent.live.rntis)
    later = agent.select(Context(users=context(1).users[2:]))  # users 70 and 71 not reported
    assert agent.live.rntis == places
    assert set(later.ue_dl_max_prb) == set(range(70, 76))


def test_a_user_without_a_slice_s_qci_or_a_free_place_is_left_uncapped_and_named():
    agent = build()
    qcis = [SLICE_QCI[k] for k in SLICE_OF_USER]
    qcis[0] = None  # srsENB before the E-RAB setup
    decision = agent.select(context(0, qcis=qcis))
    assert 70 not in decision.ue_dl_max_prb and decision.info["unplaced_rntis"] == [70]
    crowd = agent.select(context(1, rntis=range(80, 86)))  # six more, in the same slices:
    assert crowd.info["unplaced_rntis"] == [81, 82, 83, 84, 85]  # 80 took 70's free place
    assert set(crowd.ue_dl_max_prb) == {80, *range(71, 76)}


def test_it_learns_online_from_the_rounds_it_played():
    agent = build(batch_size=8)
    before = {k: v.detach().clone() for k, v in agent.params.items()}
    play(agent, 0, 30)
    assert agent.rollout.low_buffer.size == 29  # every round but the last, closed by the next
    assert any(not np.array_equal(v.detach().numpy(), before[k].numpy())
               for k, v in agent.params.items())


def test_online_updates_are_td3_s_the_actors_step_every_other_update():
    agent = build(batch_size=8, updates_per_round=3)
    play(agent, 0, 12)
    steps = {name: int(agent.optimizer.state[p]["step"]) for name, p in agent.params.items()}
    critic = {v for k, v in steps.items() if "critic" in k}
    actor = {v for k, v in steps.items() if "actor" in k}
    assert len(critic) == len(actor) == 1 and agent._updates == critic.pop()
    assert actor.pop() == (agent._updates + 1) // 2


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
    meta = HrlLearner(ONLINE_CONFIG, seed=7)
    save_model(meta, tmp_path / "meta.pt")
    agent = build(model=str(tmp_path / "meta.pt"))
    for key, value in meta.params().items():
        np.testing.assert_array_equal(agent.params[key].detach().numpy(), value.detach().numpy())
    with pytest.raises(ValueError, match="hil metahrl --save-model"):
        build(model=str(tmp_path / "missing.pt"))


def test_a_meta_model_with_a_power_head_is_refused_naming_it(tmp_path):
    save_model(HrlLearner(HrlConfig(power_head=True), seed=7), tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="(?s)without a power head.*--save-model"):
        build(model=str(tmp_path / "meta.pt"))


def test_online_the_low_level_sets_no_power():
    """The protocol has no per-user power: the learner has no power head and every action
    it takes carries full power, which the caps ignore anyway."""
    agent = build()
    assert agent.learner.config.power_head is False
    agent.select(context(0))
    action = agent._pending["action"]
    assert action.low.shape == (6, 1)
    np.testing.assert_array_equal(action.env_action[3 + 6:], np.ones(6))


def count_pretraining(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Trainers built and meta-iterations run by the agent's pretraining, from now on (and
    whether every simulated DU it trained on had power control)."""
    counts = {"trainers": 0, "steps": 0, "dus_with_power": 0}

    class CountingTrainer(agent_module.Trainer):
        def __init__(self, learner, envs, *args, **kwargs) -> None:
            counts["trainers"] += 1
            counts["dus_with_power"] += sum(env.power_control for env in envs)
            super().__init__(learner, envs, *args, **kwargs)

        def step(self):
            counts["steps"] += 1
            return super().step()

    monkeypatch.setattr(agent_module, "Trainer", CountingTrainer)
    return counts


def test_pretraining_runs_once_before_the_first_decision_and_never_again_on_resume(
        monkeypatch):
    counts = count_pretraining(monkeypatch)
    agent = build(seed=1, batch_size=8, pretrain_iterations=2)
    assert counts["steps"] == 0  # not in the constructor: a resume builds the agent again
    agent.prepare()  # what a fresh run calls before its testbed starts
    assert counts == {"trainers": 1, "steps": 2, "dus_with_power": 0}
    play(agent, 0, 30)
    assert counts["trainers"] == 1 and counts["steps"] == 2

    restored = build(seed=1, batch_size=8, pretrain_iterations=2)
    restored.load_state_dict(pickle.loads(pickle.dumps(agent.state_dict())))
    assert play(restored, 30, 20) == play(agent, 30, 20)
    assert counts["trainers"] == 1 and counts["steps"] == 2


def test_a_state_saved_before_the_first_decision_still_pretrains_when_resumed(monkeypatch):
    counts = count_pretraining(monkeypatch)
    agent = build(seed=1, batch_size=8, pretrain_iterations=1)
    saved = pickle.loads(pickle.dumps(agent.state_dict()))  # a run stopped before round 0
    restored = build(seed=2, batch_size=8, pretrain_iterations=1)  # the seed is in the state
    restored.load_state_dict(saved)
    assert play(restored, 0, 15) == play(agent, 0, 15)
    assert counts["steps"] == 2  # once each


class _Prepared(Exception):
    pass


class _Recorder:
    """An agent that only notes which of prepare and load_state_dict the run called; both
    stop the run there."""

    name, n_actions = "recorder", 1

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prepare(self) -> None:
        self.calls.append("prepare")
        raise _Prepared

    def load_state_dict(self, state) -> None:
        self.calls.append("load_state_dict")
        raise _Prepared


def test_a_fresh_run_prepares_its_agent_before_the_testbed_and_a_resumed_one_does_not(
        tmp_path):
    from testbed_yaml import write_config

    from hil.config import load_config
    from hil.recorder import RunDirectory
    from hil.run import execute

    cfg = load_config(write_config(tmp_path))
    fresh, agent = RunDirectory.create(tmp_path, "fresh"), _Recorder()
    with pytest.raises(_Prepared):
        execute(cfg, fresh, resume=False, agent=agent)
    assert agent.calls == ["prepare"]

    resumed, agent = RunDirectory.create(tmp_path, "resumed"), _Recorder()
    resumed.write_meta({})
    resumed.save_checkpoint({"round": 10, "agent": {}, "context": Context()})
    with pytest.raises(_Prepared):
        execute(cfg, resumed, resume=True, agent=agent)
    assert agent.calls == ["load_state_dict"]


@pytest.mark.e2e
def test_a_sigkilled_metahrl_run_resumes_decision_for_decision(tmp_path):
    """Through the CLI, a separate sliced emulator and real sockets: the resumed agent must
    choose again exactly the user caps recorded since its checkpoint (the engine checks)."""
    import signal

    from test_e2e import hil_subprocess, wait_for_rounds
    from testbed_yaml import write_config

    from hil.recorder import read_rounds
    from tools.cli import main

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
    first = np.asarray(caps.iloc[0], dtype=float)  # no caps (NaN) before the users' first
    assert len(first) == 6 and np.isnan(first).all()  # report: the agent knows none yet
    assert all(len(c) == 6 and sum(c) == 50 for c in caps.iloc[1:])
    assert rounds["ue_rnti"].iloc[0].tolist() == list(range(70, 76))
