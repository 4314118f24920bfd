"""Round probes: each adds its columns to the round's row and acts at the round's start."""

from __future__ import annotations

import pytest

from drivers.host.metrics import HostMetrics
from drivers.ssh import SshError
from drivers.traffic.iperf3 import TrafficError
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


def test_the_watchdog_restarts_before_the_round_and_counts_restarts():
    alive = {"enb": True}
    step = Step(Stage.ENB_UP, "enb", lambda: alive.update(enb=True), lambda: None,
                lambda: alive["enb"])
    probe = WatchdogProbe(Bringup([step]))
    probe.bringup.up()
    alive["enb"] = False
    probe.before_round(5)
    assert alive["enb"] and probe.after_round() == {"testbed_restarts": 1,
                                                    "testbed_stage": "eNB up"}


def test_every_probe_column_is_in_the_round_schema():
    names = set(ROUND_SCHEMA.names)
    assert {"traffic_dl_mbps", "traffic_ul_mbps", "host_cpu_pct", "enb_cpu_pct",
            "rapl_power_w", "testbed_restarts", "testbed_stage"} <= names
