"""The round engine's contract, with in-process fakes for the vBS and the meter.

(The same engine over real sockets and a separate emulator process is in test_e2e.py.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from agents.base import Context, Decision
from agents.policy_space import PolicySpace
from agents.registry import make_agent
from drivers.protocols import PowerReading
from drivers.rtctl.messages import (
    CapCounters,
    CellKpis,
    KpiWindow,
    Thresholds,
    UserKpis,
    WindowReply,
)
from hil.base.errors import MeterError, ResumeError, VbsUnreachableError
from hil.engine import EngineParams, RoundEngine
from hil.journal import RoundRecorder
from hil.recorder import RunDirectory
from hil.reward import RewardParams

SPACE = PolicySpace(dl_gain_db=(0.0,), dl_max_mcs=(5, 27), dl_prb_ratio=(0.5, 1.0),
                    ul_max_mcs=(23,), ul_prb_ratio=(1.0,))
PARAMS = EngineParams(period_s=0.001, checkpoint_every=4, give_up_after_invalid=5,
                      reward=RewardParams(delta=1.0, power_min_w=9.0, power_max_w=16.0))
ZERO = CapCounters(dl_mcs=0, dl_prb=0, ul_mcs=0, ul_prb=0)


def cell(dl_bits: int = 20_000_000, backlog_bytes: int = 0) -> CellKpis:
    return CellKpis(
        dl_bits_acked=dl_bits, ul_bits_ok=10_000_000, dl_bits_arrived=32_000_000,
        ul_bits_arrived=23_000_000, dl_prb_tti=40_000, ul_prb_tti=30_000, dl_sched_tti=1000,
        ul_sched_tti=1000, dl_mcs_mean=20.0, ul_mcs_mean=15.0, dl_cqi_mean=12.0,
        ul_snr_mean=20.0, dl_backlog_bytes=backlog_bytes, ul_backlog_bytes=0, dl_bler=0.1,
        ul_bler=0.05, cap_hits=ZERO, violations=ZERO)


def user(qci: int | None = 9, **kpis: int) -> UserKpis:
    """One user's KPIs, as `cell` takes them, and the QCI of its default bearer."""
    return UserKpis(**dict(cell(**kpis)), qci=qci)


class FakeRan:
    """Answers like a vBS; can fail on chosen rounds or apply the wrong thresholds."""

    endpoint = "fake"

    def __init__(self, fail_get_on: set[int] = frozenset(), lie_on: set[int] = frozenset(),
                 fail_set_on: set[int] = frozenset(), detached_on: set[int] = frozenset(),
                 silent_on: set[int] = frozenset()):
        self.fail_get_on, self.lie_on, self.fail_set_on = fail_get_on, lie_on, fail_set_on
        self.detached_on, self.silent_on = detached_on, silent_on
        self.applied = Thresholds()
        self.sets: list[dict] = []
        self.resets = 0

    def _reply(self, nof_tti: int = 1000, backlog_bytes: int = 0) -> WindowReply:
        detached = len(self.sets) - 1 in self.detached_on
        silent = len(self.sets) - 1 in self.silent_on  # listed, but out of sync
        kpis = cell(backlog_bytes=backlog_bytes)
        if silent:
            kpis = kpis.model_copy(update={"dl_bits_acked": 0, "ul_bits_ok": 0,
                                           "dl_cqi_mean": 0.0})
        return WindowReply(v=1, sid="s", seq=1, ok=True, applied=self.applied, applied_tti=0,
                           window=KpiWindow(tti_start=0, tti_end=nof_tti, nof_tti=nof_tti,
                                            wall_s=0.001),
                           cell=kpis,
                           ue={} if detached else {70: user(backlog_bytes=backlog_bytes)})

    def set(self, thresholds):
        round_index = len(self.sets)
        self.sets.append(dict(thresholds))
        if round_index in self.fail_set_on:
            raise VbsUnreachableError("fake vBS did not take the thresholds")
        wanted = dict(thresholds)
        if round_index in self.lie_on:
            wanted["dl_max_mcs"] = 0
        self.applied = Thresholds(**wanted)
        return self._reply(nof_tti=3, backlog_bytes=1_000_000)

    def get(self):
        if len(self.sets) - 1 in self.fail_get_on:
            raise VbsUnreachableError("fake vBS did not answer")
        return self._reply()

    def reset(self):
        self.resets += 1
        self.applied = Thresholds()
        return self._reply()

    def ping(self):
        return None

    def close(self):
        pass


class FakeMeter:
    """Reads NAN in the rounds listed (rounds counted by its start calls); like the real
    meters, it cannot stop a window it never started."""

    def __init__(self, nan_on: set[int] = frozenset()):
        self.nan_on, self.round, self.started = nan_on, -1, False

    def start(self):
        self.round += 1
        self.started = True

    def stop(self) -> PowerReading:
        if not self.started:
            raise RuntimeError("stop() without start()")
        self.started = False
        if self.round in self.nan_on:
            raise MeterError("meter reading NAN")
        return PowerReading(power_w=12.5, energy_j=12.5, duration_s=1.0, samples=1)

    def close(self):
        pass


class CountingAgent:
    """Wraps a real agent and counts what it learned from."""

    def __init__(self, inner):
        self.inner, self.updates, self.measured, self.seen = inner, [], [], []
        self.name, self.n_actions = inner.name, inner.n_actions

    def select(self, context=None) -> Decision:
        self.seen.append(context)
        return self.inner.select(context)

    def update(self, decision, reward, measured=None):
        self.updates.append((decision.action, reward))
        self.measured.append(measured)
        self.inner.update(decision, reward, measured)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def make_engine(tmp_path, ran, meter, agent=None):
    run_dir = RunDirectory.create(tmp_path, "run")
    agent = agent or CountingAgent(make_agent("bsvbs", SPACE.size, seed=3, horizon=100))
    recorder = RoundRecorder(run_dir)
    engine = RoundEngine(space=SPACE, agent=agent, ran=ran, meter=meter, run_dir=run_dir,
                         recorder=recorder, params=PARAMS)
    return engine, run_dir, recorder, agent


def test_every_round_is_recorded_with_its_policy_measurements_and_reward(tmp_path):
    ran = FakeRan()
    engine, run_dir, recorder, agent = make_engine(tmp_path, ran, FakeMeter())
    outcome = engine.run(0, 10, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    assert outcome.status == "completed" and [r["round"] for r in rows] == list(range(10))
    first = rows[0]
    policy = SPACE.policy(first["policy_index"])
    assert ran.sets[0] == policy.to_thresholds()
    assert first["applied_dl_max_mcs"] == policy.dl_max_mcs
    assert first["dl_rate_mbps"] == pytest.approx(20.0)  # 20 Mbit over 1000 TTIs
    # demand = backlog at the window start (1 MB) + arrivals (32 Mbit) over 1 s
    assert first["dl_demand_mbps"] == pytest.approx(40.0)
    assert first["power_w"] == 12.5 and 0 <= first["reward"] <= 1 and first["valid"]
    assert len(agent.updates) == 10


def test_an_agent_learns_from_the_context_its_round_measured_and_decides_on_the_last(tmp_path):
    """The round's own CQI and demand reach `update` (`measured`); the next `select` sees
    that same context, the first an empty one."""
    engine, run_dir, recorder, agent = make_engine(tmp_path, FakeRan(), FakeMeter())
    engine.run(0, 3, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    for row, measured in zip(rows, agent.measured):
        assert measured.dl_cqi == row["dl_cqi"]
        assert measured.dl_demand_mbps == pytest.approx(row["dl_demand_mbps"])
    assert agent.seen[0] == Context() and agent.seen[1:] == agent.measured[:2]


def test_a_round_in_which_no_user_was_attached_is_invalid_and_not_learned(tmp_path):
    """A detached UE (a real one loses a poor link, then attaches again), or one still listed
    but out of sync, measures nothing of the policy: the round is recorded invalid."""
    engine, run_dir, recorder, agent = make_engine(
        tmp_path, FakeRan(detached_on={1, 2}, silent_on={4}), FakeMeter())
    engine.run(0, 6, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    assert [r["valid"] for r in rows] == [True, False, False, True, False, True]
    assert "no user in the KPI window" in rows[1]["invalid_reason"]
    assert "carried nothing and no CQI was reported" in rows[4]["invalid_reason"]
    assert len(agent.updates) == 3


def test_a_round_whose_measurement_fails_is_recorded_invalid_and_not_learned(tmp_path):
    ran = FakeRan(fail_get_on={2})
    engine, run_dir, recorder, agent = make_engine(tmp_path, ran, FakeMeter(nan_on={5}))
    engine.run(0, 8, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    invalid = {r["round"]: r["invalid_reason"] for r in rows if not r["valid"]}
    assert set(invalid) == {2, 5}
    assert "did not answer" in invalid[2] and "NAN" in invalid[5]
    assert len(agent.updates) == 6
    assert rows[2]["reward"] is None


def test_a_round_whose_thresholds_were_not_taken_is_recorded_invalid_without_reading_power(
        tmp_path):
    meter = FakeMeter()
    engine, run_dir, recorder, agent = make_engine(tmp_path, FakeRan(fail_set_on={1}), meter)
    outcome = engine.run(0, 3, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    assert outcome.status == "completed" and [r["valid"] for r in rows] == [True, False, True]
    assert "did not take the thresholds" in rows[1]["invalid_reason"]
    assert meter.round == 1  # windows of rounds 0 and 2 only
    assert len(agent.updates) == 2


def test_thresholds_other_than_requested_make_the_round_invalid(tmp_path):
    engine, run_dir, recorder, _ = make_engine(tmp_path, FakeRan(lie_on={1}), FakeMeter())
    engine.run(0, 3, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    assert [r["valid"] for r in rows] == [True, False, True]
    assert "other thresholds" in rows[1]["invalid_reason"]


class UserCapsAgent:
    """Always the first policy, with per-user DL caps; remembers the contexts it saw."""

    name, n_actions = "user-caps", SPACE.size

    def __init__(self, caps: dict[int, int]):
        self.caps, self.contexts = caps, []

    def select(self, context=None) -> Decision:
        self.contexts.append(context)
        return Decision(action=0, prob=1.0, ue_dl_max_prb=self.caps)

    def update(self, decision, reward, measured=None):
        pass

    def state_dict(self):
        return {}


class TwoUserRan(FakeRan):
    """Reports users 70 and 71; with `cap_offset` it applies other per-user caps than asked."""

    def __init__(self, cap_offset: int = 0):
        super().__init__()
        self.cap_offset = cap_offset

    def set(self, thresholds):
        self.sets.append(dict(thresholds))
        ue = {r: {"dl_max_prb": c["dl_max_prb"] + self.cap_offset}
              for r, c in thresholds.get("ue", {}).items()}
        self.applied = Thresholds(**{**thresholds, "ue": ue})
        return self._reply(nof_tti=3, backlog_bytes=1_000_000)

    def _reply(self, nof_tti: int = 1000, backlog_bytes: int = 0) -> WindowReply:
        reply = super()._reply(nof_tti, backlog_bytes)
        users = {70: user(dl_bits=15_000_000),
                 71: user(qci=7, dl_bits=5_000_000, backlog_bytes=125)}
        return reply.model_copy(update={"ue": users})


def test_per_user_caps_are_applied_recorded_and_seen_by_the_next_decision(tmp_path):
    ran = TwoUserRan()
    agent = UserCapsAgent({70: 10, 71: 0})
    engine, run_dir, recorder, _ = make_engine(tmp_path, ran, FakeMeter(), agent)
    engine.run(0, 2, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    assert ran.sets[0]["ue"] == {70: {"dl_max_prb": 10}, 71: {"dl_max_prb": 0}}
    assert rows[0]["valid"] and rows[0]["ue_rnti"] == [70, 71]
    assert rows[0]["ue_dl_max_prb"] == [10, 0]
    assert rows[0]["ue_dl_rate_mbps"] == pytest.approx([15.0, 5.0])  # bits over 1000 TTIs
    assert rows[0]["ue_dl_backlog_bytes"] == [0, 125]
    assert rows[0]["ue_qci"] == [9, 7]
    seen = agent.contexts[1].users
    assert [u.rnti for u in seen] == [70, 71] and seen[1].dl_rate_mbps == pytest.approx(5.0)
    assert [u.qci for u in seen] == [9, 7]
    assert seen[0].dl_prb == pytest.approx(40.0)  # 40 000 PRB-TTIs over 1000 TTIs


def test_per_user_caps_other_than_requested_make_the_round_invalid(tmp_path):
    engine, run_dir, recorder, _ = make_engine(tmp_path, TwoUserRan(cap_offset=1), FakeMeter(),
                                               UserCapsAgent({70: 10}))
    engine.run(0, 1, threading.Event())
    recorder.close()
    row = run_dir.read_rounds().to_pylist()[0]
    assert not row["valid"] and "other thresholds" in row["invalid_reason"]


def test_a_set_stop_flag_ends_the_run_at_a_round_boundary(tmp_path):
    engine, run_dir, recorder, _ = make_engine(tmp_path, FakeRan(), FakeMeter())
    stop = threading.Event()
    engine.on_round = lambda row: stop.set() if row["round"] == 4 else None
    outcome = engine.run(0, 100, stop)
    recorder.close()
    assert outcome.status == "interrupted" and outcome.next_round == 5
    assert run_dir.read_rounds().num_rows == 5


def test_checkpoints_are_written_every_n_rounds(tmp_path):
    engine, run_dir, recorder, _ = make_engine(tmp_path, FakeRan(), FakeMeter())
    engine.run(0, 10, threading.Event())
    recorder.close()
    assert run_dir.load_checkpoint()["round"] == 8  # every 4 rounds: 4, 8


def test_replay_from_a_checkpoint_restores_the_agent_exactly(tmp_path):
    engine, run_dir, recorder, agent = make_engine(tmp_path, FakeRan(fail_get_on={5}), FakeMeter())
    engine.run(0, 10, threading.Event())
    recorder.close()
    checkpoint = run_dir.load_checkpoint()  # taken after round 8
    rows = [r for r in run_dir.read_rounds().to_pylist() if r["round"] >= checkpoint["round"]]

    restored = make_agent("bsvbs", SPACE.size, seed=3, horizon=100)
    restored.load_state_dict(checkpoint["agent"])
    engine2, *_ = make_engine(tmp_path, FakeRan(), FakeMeter(), agent=restored)
    engine2.replay(rows)
    assert engine2.next_round == 10
    assert restored.probabilities() == pytest.approx(agent.probabilities())
    assert restored.select().action == agent.select().action


def test_replay_refuses_a_recording_that_does_not_match_the_checkpoint(tmp_path):
    engine, run_dir, recorder, _ = make_engine(tmp_path, FakeRan(), FakeMeter())
    engine.run(0, 4, threading.Event())
    recorder.close()
    rows = run_dir.read_rounds().to_pylist()
    fresh = make_agent("bsvbs", SPACE.size, seed=3, horizon=100)
    first_choice = fresh.select().action
    tampered = [dict(rows[0], policy_index=(first_choice + 1) % SPACE.size)]
    engine2, *_ = make_engine(tmp_path, FakeRan(), FakeMeter(),
                              agent=make_agent("bsvbs", SPACE.size, seed=3, horizon=100))
    with pytest.raises(ResumeError, match="do not belong together"):
        engine2.replay(tampered)


def test_a_testbed_that_keeps_failing_ends_the_run_with_the_reason(tmp_path):
    ran = FakeRan(fail_get_on=set(range(3, 100)))
    engine, run_dir, recorder, _ = make_engine(tmp_path, ran, FakeMeter())
    outcome = engine.run(0, 100, threading.Event())
    recorder.close()
    assert outcome.status == "failed" and outcome.next_round == 8  # rounds 3..7 invalid
    assert "5 invalid rounds in a row" in outcome.reason and "did not answer" in outcome.reason
    assert run_dir.read_rounds().num_rows == 8


class SlowMeter(FakeMeter):
    """Takes `stop_s` to close a window, as a meter waiting for its edge reading would."""

    def __init__(self, stop_s: float):
        super().__init__()
        self.stop_s = stop_s

    def stop(self) -> PowerReading:
        time.sleep(self.stop_s)
        return super().stop()


def test_the_time_a_round_works_is_counted_by_stage_and_its_wait_is_not(tmp_path):
    engine, _, recorder, _ = make_engine(tmp_path, FakeRan(), SlowMeter(stop_s=0.005))
    engine.run(0, 5, threading.Event())
    recorder.close()
    times = engine.times
    assert len(times.overhead_ms) == 5
    assert min(times.overhead_ms) >= 5.0  # the meter's 5 ms are the controller's own time
    breakdown = times.breakdown_ms()
    assert set(breakdown) == {"agent", "control", "meter", "record", "probes", "other"}
    assert breakdown["meter"] >= 5.0
    assert sum(breakdown.values()) == pytest.approx(sum(times.overhead_ms) / 5)


def test_the_wait_for_a_rounds_deadline_is_not_the_controllers_time(tmp_path):
    engine, _, recorder, _ = make_engine(tmp_path, FakeRan(), FakeMeter())
    engine.params = replace(PARAMS, period_s=0.1)
    engine.run(0, 3, threading.Event())
    recorder.close()
    assert max(engine.times.overhead_ms) < 50.0  # each round waited ~100 ms
