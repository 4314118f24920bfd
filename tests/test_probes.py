"""Round probes: each adds its columns to the round's row and acts at the round's start."""

from __future__ import annotations

import threading

import pytest
from waiting import wait_until

from drivers.host.metrics import HostMetrics
from drivers.ssh import SshError
from drivers.traffic.iperf3 import TrafficError
from hil.base.liveness import AliveChecker
from hil.base.scenarios import make_scenario
from hil.bringup import Bringup, Stage, Step
from hil.probes import HostMetricsProbe, TrafficProbe, WatchdogProbe
from hil.schema import ROUND_SCHEMA


class RecordingTraffic:
    def __init__(self, error: Exception | None = None) -> None:
        self.demands: list[tuple[float, float]] = []
        self.error = error

    def set_demand(self, dl_mbps: float, ul_mbps: float) -> None:
        self.demands.append((dl_mbps, ul_mbps))
        if self.error is not None:
            raise self.error


def test_traffic_offers_each_round_the_scenarios_demand_for_that_round():
    traffic, scenario = RecordingTraffic(), make_scenario("B", seed=4)
    probe = TrafficProbe(traffic, scenario)
    rows = []
    for k in (0, 1, 7):
        probe.before_round(k)
        rows.append(probe.after_round())
    for k, (dl, ul), row in zip((0, 1, 7), traffic.demands, rows):
        env = scenario.epochs(k, k + 1)
        assert (dl, ul) == (env.dl_demand_mbps[0], env.ul_demand_mbps[0])
        assert row == {"traffic_dl_mbps": dl, "traffic_ul_mbps": ul}
    assert 29 <= traffic.demands[0][0] <= 32  # scenario B: d_d ~ U(29, 32)


def test_a_lost_traffic_report_is_logged_and_the_round_goes_on(caplog):
    lost = TrafficError("dl flow (iperf3-5201-dl-client on bbu): iperf3 wrote no report")
    probe = TrafficProbe(RecordingTraffic(error=lost), make_scenario("A", seed=0))

    probe.before_round(3)

    assert probe.after_round()["traffic_dl_mbps"] > 0
    assert "round 3" in caplog.text and "iperf3 wrote no report" in caplog.text


def test_flows_that_cannot_start_fail_the_round():
    unreachable = SshError("lost the connection to bbu")
    probe = TrafficProbe(RecordingTraffic(error=unreachable), make_scenario("A", seed=0))

    with pytest.raises(SshError):
        probe.before_round(0)
    assert probe.after_round() == {}


def test_host_metrics_fill_their_columns_and_skip_a_round_that_never_started():
    probe = HostMetricsProbe(HostMetrics("no-such-process"))
    assert probe.after_round() == {}
    probe.before_round(0)
    sum(range(200_000))  # some CPU time in the window
    row = probe.after_round()
    assert set(row) == {"host_cpu_pct", "enb_cpu_pct", "ue_cpu_pct", "rapl_power_w"}
    assert row["enb_cpu_pct"] is None  # no such process: not measured as idle


def watched_enb() -> tuple[dict, list[str], WatchdogProbe]:
    """A one-step chain whose eNB's liveness is a flag; who asked, by thread name."""
    alive, askers = {"enb": True}, []

    def is_alive() -> bool:
        askers.append(threading.current_thread().name)
        return alive["enb"]
    step = Step(Stage.ENB_UP, "enb", lambda: alive.update(enb=True), lambda: None, is_alive)
    bringup = Bringup([step])
    bringup.up()
    return alive, askers, WatchdogProbe(bringup, every_s=0.01)


def test_the_watchdog_restarts_a_dead_process_before_the_round_and_counts_restarts():
    alive, _, probe = watched_enb()
    try:
        alive["enb"] = False
        wait_until(lambda: not probe._alive(), "the watching thread's notice")
        probe.before_round(5)
        assert alive["enb"] and probe.after_round() == {"testbed_restarts": 1,
                                                        "testbed_stage": "eNB up"}
        probe.before_round(6)  # the answer from before the restart is not taken again
        assert probe.bringup.restarts == 1
    finally:
        probe.close()


def test_a_round_asks_the_hosts_nothing_while_every_process_runs():
    _, askers, probe = watched_enb()
    try:
        wait_until(lambda: len(askers) >= 3, "three checks")
        for k in range(20):
            probe.before_round(k)
        assert "srsran-alive" in askers and threading.current_thread().name not in askers
    finally:
        probe.close()


def test_a_check_that_began_before_a_restart_is_not_taken_for_the_new_process():
    began, answer, later = threading.Event(), threading.Event(), threading.Event()
    calls = []

    def dead() -> bool:  # the first check answers when told, the later ones at the end
        calls.append(1)
        if len(calls) == 1:
            began.set()
            answer.wait()
        else:
            later.wait()
        return False
    checker = AliveChecker(dead, every_s=0.001)
    try:
        wait_until(began.is_set, "the first check")
        checker.reset()  # the processes were restarted while the check was on its way
        answer.set()
        wait_until(lambda: len(calls) == 2, "the first check's answer")
        assert checker()
    finally:
        answer.set()
        later.set()
        checker.close()


def test_a_host_that_cannot_be_asked_sends_the_round_to_look_for_itself():
    def unreachable() -> bool:
        raise SshError("ssh: no route to host bbu")
    checker = AliveChecker(unreachable, every_s=0.001)
    try:
        wait_until(lambda: not checker(), "the failed check's answer")
    finally:
        checker.close()


def test_every_probe_column_is_in_the_round_schema():
    names = set(ROUND_SCHEMA.names)
    assert {"traffic_dl_mbps", "traffic_ul_mbps", "host_cpu_pct", "enb_cpu_pct",
            "rapl_power_w", "testbed_restarts", "testbed_stage"} <= names
