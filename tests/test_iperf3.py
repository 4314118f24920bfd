"""iperf3 traffic: the JSON parser on reports of the real iperf3, and the driver on loopback.

All traffic stays on 127.0.0.1. The ProcessHost here is a minimal local one (subprocesses);
the driver only ever talks to the protocol, so the SSH host behaves the same for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen
from typing import Any

import psutil
import pytest
from prerequisites import missing
from waiting import wait_until

from drivers.protocols import CommandResult
from drivers.traffic.iperf3 import (
    RENEW_BEFORE_LIMIT_S,
    Iperf3Traffic,
    TrafficError,
    parse_iperf3_json,
)
from hil.base.errors import HilError

if shutil.which("iperf3") is None:
    missing("iperf3 not installed (Debian: apt-get install iperf3)", module=True)

LOOPBACK = "127.0.0.1"


class LocalHost:
    """The ProcessHost methods the traffic driver uses, on this machine (no namespaces)."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self._log_dir = log_dir
        self._procs: dict[str, Popen[bytes]] = {}

    def run(self, command: str, *, timeout_s: float = 30.0, check: bool = True
            ) -> CommandResult:
        done = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=timeout_s)
        if check and done.returncode != 0:
            raise HilError(f"`{command}` failed on {self.name}: {done.stderr}")
        return CommandResult(command, done.returncode, done.stdout, done.stderr)

    def start(self, name: str, command: str, *, netns: str | None = None,
              env: dict[str, str] | None = None) -> int:
        assert netns is None, "the tests run without network namespaces"
        with open(self._log_dir / f"{self.name}-{name}.log", "w") as log:
            # its own process group, which `stop` signals (SshHost does the same)
            proc = Popen(command, shell=True, stdout=log, stderr=STDOUT, start_new_session=True)
        self._procs[name] = proc
        return proc.pid

    def pid_of(self, suffix: str) -> int:
        """PID of the running process whose name ends with `suffix` (for the tests)."""
        (name,) = [name for name in self.running() if name.endswith(suffix)]
        return self._procs[name].pid

    def running(self) -> list[str]:
        """Names of the processes still running (for the tests, not in the protocol)."""
        return [name for name in self._procs if self.is_running(name)]

    def is_running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def stop(self, name: str, *, timeout_s: float = 10.0) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # as SshHost's stop: returns once the whole group has exited (a shell's children
        # may write on after the shell ended)
        os.killpg(proc.pid, signal.SIGTERM)
        deadline_s = time.monotonic() + timeout_s
        while group_runs(proc.pid) and time.monotonic() < deadline_s:
            time.sleep(0.02)
        if group_runs(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def tail(self, name: str, lines: int = 50) -> str:
        log = self._log_dir / f"{self.name}-{name}.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""

    def close(self) -> None:
        for name in list(self._procs):
            self.stop(name)


def group_runs(group: int) -> bool:
    """Whether a process of this process group has not exited yet (a zombie has)."""
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((LOOPBACK, 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@contextlib.contextmanager
def one_off_server(port: int) -> Iterator[Callable[[], None]]:
    """`iperf3 -s -1` on loopback, returned once it listens, reporting every 0.1 s; yields a
    call that returns once data has flowed (the server's first report of an interval)."""
    server = Popen(["iperf3", "-s", "-1", "-B", LOOPBACK, "-p", str(port), "-i", "0.1",
                    "--forceflush"], stdout=PIPE, stderr=STDOUT, text=True)
    assert server.stdout is not None
    lines = server.stdout

    def wait_for_data() -> None:
        for line in lines:
            if (report := INTERVAL.search(line)) and not report.group(1).startswith("0.00 "):
                return
        raise AssertionError("the iperf3 server ended before it reported any data")

    try:
        for line in lines:
            if "Server listening" in line:
                break
        yield wait_for_data
    finally:
        server.kill()
        server.wait()


INTERVAL = re.compile(r"\d+\.\d+-\d+\.\d+\s+sec\s+(\d+(?:\.\d+)? \w?Bytes)")
"""An iperf3 interval report (`[  5]   0.00-0.10   sec  48.1 KBytes ...`): its transfer."""


def flows_begun(traffic: Iperf3Traffic, *hosts: LocalHost) -> int:
    """How many flows have begun their test so far: the servers log each data connection."""
    names = [f"iperf3-{traffic.port}-dl-server", f"iperf3-{traffic.port + 1}-ul-server"]
    return sum(host.tail(name, 100_000).count(" connected to ") for host in set(hosts)
               for name in names)


def wait_for_flows(traffic: Iperf3Traffic, hosts: tuple[LocalHost, ...], count: int) -> None:
    """Return once `count` flows have begun in all (a client stopped before its test began
    leaves no report)."""
    wait_until(lambda: flows_begun(traffic, *hosts) >= count, f"{count} iperf3 flows begun")


def client_report(port: int, *args: str) -> str:
    done = subprocess.run(["iperf3", "-c", LOOPBACK, "-p", str(port), "-J", *args],
                          capture_output=True, text=True, timeout=20)
    return done.stdout


@pytest.fixture(scope="module")
def udp_report() -> str:
    """The report of a complete 1 s, 10 Mb/s UDP test, as the installed iperf3 writes it."""
    port = free_port_pair()
    with one_off_server(port):
        return client_report(port, "-u", "-b", "10M", "-t", "1")


# -- parse_iperf3_json -------------------------------------------------------------------

def test_a_complete_udp_report_gives_the_receiver_figures(udp_report: str) -> None:
    received = json.loads(udp_report)["end"]["sum_received"]

    result = parse_iperf3_json(udp_report)

    assert result.target_rate_mbps == pytest.approx(10.0)
    assert result.rate_mbps == pytest.approx(received["bits_per_second"] / 1e6, rel=1e-3)
    assert 5.0 < result.rate_mbps < 20.0
    assert result.received_bytes == received["bytes"] > 0
    assert result.packets == received["packets"] > 0
    assert result.lost_packets == received["lost_packets"]
    assert result.jitter_ms == pytest.approx(received["jitter_ms"])
    assert result.duration_s == pytest.approx(1.0, abs=0.2)
    assert not result.reverse and not result.interrupted


@pytest.mark.parametrize("cut", ["half", "empty", "garbage", "array"])
def test_a_cut_short_or_foreign_report_is_a_clear_error(udp_report: str, cut: str) -> None:
    text = {"half": udp_report[: len(udp_report) // 2], "empty": "",
            "garbage": "iperf3: error - unable to open log file", "array": "[1, 2]"}[cut]

    with pytest.raises(TrafficError, match="report"):
        parse_iperf3_json(text)


def test_a_report_missing_the_receiver_sums_names_the_missing_field(udp_report: str) -> None:
    report = json.loads(udp_report)
    del report["end"]["sum_received"]

    with pytest.raises(TrafficError, match="end.sum_received"):
        parse_iperf3_json(json.dumps(report))


def test_a_tcp_report_is_refused(udp_report: str) -> None:
    report = json.loads(udp_report)
    report["start"]["test_start"]["protocol"] = "TCP"

    with pytest.raises(TrafficError, match="TCP"):
        parse_iperf3_json(json.dumps(report))


def test_an_iperf3_error_is_reported_with_its_message() -> None:
    port = free_port_pair()  # nobody listens there

    with pytest.raises(TrafficError, match="unable to connect"):
        parse_iperf3_json(client_report(port, "-u", "-b", "1M", "-t", "1"))


def interrupted_report(port: int, data_flowed: Callable[[], None], *args: str) -> str:
    """The report of a client SIGTERMed while its UDP flow ran (as a round's flow ends)."""
    client = Popen(["iperf3", "-c", LOOPBACK, "-p", str(port), "-u", "-b", "4M", "-t", "30",
                    "-J", *args], stdout=PIPE, text=True)
    data_flowed()
    client.send_signal(signal.SIGTERM)
    stdout, _ = client.communicate(timeout=10)
    return stdout


def test_an_interrupted_receiving_client_still_reports_what_arrived() -> None:
    port = free_port_pair()
    with one_off_server(port) as data_flowed:
        result = parse_iperf3_json(interrupted_report(port, data_flowed, "-R"))

    assert result.interrupted and result.reverse
    assert result.target_rate_mbps == pytest.approx(4.0)
    assert result.received_bytes > 0 and result.packets > 0


def test_an_interrupted_sending_client_is_refused_since_its_receiver_figures_are_void(
        ) -> None:
    port = free_port_pair()
    with one_off_server(port) as data_flowed:
        text = interrupted_report(port, data_flowed)

    assert json.loads(text)["end"]["sum_received"]["bytes"] == 0  # what iperf3 does
    with pytest.raises(TrafficError, match="-R"):
        parse_iperf3_json(text)


# -- Iperf3Traffic -----------------------------------------------------------------------

@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[LocalHost, LocalHost]]:
    core, ue = LocalHost("core", tmp_path), LocalHost("ue", tmp_path)
    yield core, ue
    core.close()
    ue.close()


@pytest.fixture
def shared_host(tmp_path: Path) -> Iterator[LocalHost]:
    """One host for the core and the UE side (stopped even when the test fails)."""
    host = LocalHost("bbu", tmp_path)
    yield host
    host.close()


def traffic_between(hosts: tuple[LocalHost, LocalHost], report_dir: Path, *,
                    core_address: str = LOOPBACK, **options: Any) -> Iperf3Traffic:
    core, ue = hosts
    return Iperf3Traffic(core, ue, core_address=core_address,  # type: ignore[arg-type]
                         ue_address=LOOPBACK, port=free_port_pair(),
                         report_dir=str(report_dir), **{"alive_check_s": 0.05, **options})


@pytest.fixture
def traffic(hosts: tuple[LocalHost, LocalHost], tmp_path: Path) -> Iterator[Iperf3Traffic]:
    """Traffic between a core and a UE host, its servers listening; closed after the test."""
    started = traffic_between(hosts, tmp_path)
    started.start()
    yield started
    started.close()


@pytest.fixture
def shared_traffic(shared_host: LocalHost, tmp_path: Path) -> Iterator[Iperf3Traffic]:
    """Traffic whose core and UE sides share one host (as on a ZMQ testbed)."""
    started = traffic_between((shared_host, shared_host), tmp_path)
    started.start()
    yield started
    started.close()


def test_each_demand_runs_flows_at_its_rates_and_the_next_one_returns_their_figures(
        hosts: tuple[LocalHost, LocalHost], traffic: Iperf3Traffic, tmp_path: Path) -> None:
    assert traffic.set_demand(8.0, 2.0) is None
    wait_for_flows(traffic, hosts, 2)
    time.sleep(0.5)  # half a second of traffic: the rate measured is over a span this long
    first = traffic.set_demand(3.0, 0.0)
    wait_for_flows(traffic, hosts, 3)
    second = traffic.stop()

    assert first is not None and first.dl is not None and first.ul is not None
    assert (first.dl.target_rate_mbps, first.ul.target_rate_mbps) == (8.0, 2.0)
    assert first.dl.interrupted and first.dl.reverse and first.ul.reverse
    assert 4.0 < first.dl.rate_mbps < 16.0
    assert first.ul.received_bytes > 0
    assert first.dl.received_bytes > first.ul.received_bytes
    assert second is not None and second.dl is not None and second.ul is None
    assert second.dl.target_rate_mbps == 3.0 and second.dl.received_bytes > 0
    assert traffic.stop() is None
    assert not list(tmp_path.glob("*.json")), "reports are removed once read"


def test_clients_sharing_a_host_start_as_one_process_so_neither_waits_behind_the_other(
        shared_host: LocalHost, shared_traffic: Iperf3Traffic) -> None:
    host, traffic = shared_host, shared_traffic
    traffic.set_demand(2.0, 1.0)
    wait_for_flows(traffic, (host,), 2)

    clients = [name for name in host.running() if name.endswith("-clients")]
    assert clients == [f"iperf3-{traffic.port}-clients"]
    both = traffic.stop()
    assert both is not None and both.dl is not None and both.ul is not None
    assert both.dl.received_bytes > 0 and both.ul.received_bytes > 0


def test_a_demand_that_does_not_change_keeps_its_flow_running(
        hosts: tuple[LocalHost, LocalHost], traffic: Iperf3Traffic) -> None:
    _, ue = hosts
    traffic.set_demand(2.0, 0.0)
    pid = ue.pid_of("-clients")

    assert traffic.set_demand(2.0, 0.0) is None  # nothing ended
    assert ue.pid_of("-clients") == pid
    wait_for_flows(traffic, hosts, 1)
    changed = traffic.set_demand(2.5, 0.0)
    assert changed is not None and changed.dl is not None
    assert changed.dl.target_rate_mbps == 2.0
    assert ue.pid_of("-clients") != pid


def test_a_flow_that_died_is_started_again_at_the_next_demand(
        hosts: tuple[LocalHost, LocalHost], traffic: Iperf3Traffic) -> None:
    _, ue = hosts
    traffic.set_demand(2.0, 0.0)
    wait_for_flows(traffic, hosts, 1)
    dead = ue.pid_of("-clients")
    os.killpg(dead, signal.SIGTERM)
    wait_until(lambda: not any(n.endswith("-clients") for n in ue.running()),
               "the killed client's exit")
    wait_until(lambda: not traffic.flows_running(), "the check that finds the flow gone")

    ended = traffic.set_demand(2.0, 0.0)

    assert ended is not None and ended.dl is not None and ended.dl.interrupted
    assert ue.pid_of("-clients") != dead


def test_a_flow_that_died_beside_a_living_one_restarts_both(
        shared_host: LocalHost, shared_traffic: Iperf3Traffic) -> None:
    host, traffic = shared_host, shared_traffic
    traffic.set_demand(2.0, 1.0)
    wait_for_flows(traffic, (host,), 2)
    ul_client = f"^iperf3 -c {LOOPBACK} -p {traffic.port + 1} -u"  # not the shell around it
    subprocess.run(["pkill", "-TERM", "-f", ul_client], check=True)
    wait_until(lambda: subprocess.run(["pgrep", "-f", ul_client]).returncode != 0,
               "the killed UL client's exit")
    wait_until(lambda: not traffic.flows_running(), "the check that finds the flow gone")

    ended = traffic.set_demand(2.0, 1.0)

    assert ended is not None and ended.ul is not None and ended.dl is not None
    assert traffic.set_demand(2.0, 1.0) is None  # both run again


def test_a_kept_flow_is_renewed_before_its_time_limit(
        hosts: tuple[LocalHost, LocalHost], tmp_path: Path) -> None:
    now_s = [100.0]
    traffic = traffic_between(hosts, tmp_path, flow_limit_s=10, clock=lambda: now_s[0])
    traffic.start()
    traffic.set_demand(1.0, 0.0)
    wait_for_flows(traffic, hosts, 1)

    now_s[0] += 10 - RENEW_BEFORE_LIMIT_S - 0.1
    assert traffic.set_demand(1.0, 0.0) is None
    now_s[0] += 0.1
    renewed = traffic.set_demand(1.0, 0.0)
    assert renewed is not None and renewed.dl is not None and renewed.dl.interrupted
    traffic.close()


def test_close_stops_the_flows_and_the_servers(hosts: tuple[LocalHost, LocalHost],
                                               tmp_path: Path) -> None:
    core, ue = hosts
    traffic = traffic_between(hosts, tmp_path)
    traffic.start()
    traffic.set_demand(1.0, 1.0)
    assert len(core.running() + ue.running()) == 4  # a server and a client per direction

    traffic.close()

    assert core.running() == ue.running() == []


def test_a_flow_that_left_no_report_is_named_in_the_error(
        hosts: tuple[LocalHost, LocalHost], tmp_path: Path) -> None:
    traffic = traffic_between(hosts, tmp_path / "no-such-dir")  # iperf3 cannot write there
    traffic.start()
    traffic.set_demand(1.0, 0.0)

    with pytest.raises(TrafficError, match=r"dl flow \(iperf3 client on ue"):
        traffic.stop()


def test_a_server_that_cannot_listen_is_reported_with_its_log(
        hosts: tuple[LocalHost, LocalHost], tmp_path: Path) -> None:
    traffic = traffic_between(hosts, tmp_path, core_address="192.0.2.1")  # TEST-NET-1

    with pytest.raises(TrafficError, match="not listening on 192.0.2.1"):
        traffic.start()


def test_addresses_reach_iperf3_as_one_argument_never_as_shell_code(
        hosts: tuple[LocalHost, LocalHost], tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    traffic = traffic_between(hosts, tmp_path, core_address=f"127.0.0.1$(touch {marker})")

    with pytest.raises(TrafficError):
        traffic.start()
    assert not marker.exists()


@pytest.mark.parametrize("dl_mbps, ul_mbps", [(-1.0, 1.0), (1.0, float("nan"))])
def test_a_negative_or_undefined_demand_is_refused(
        hosts: tuple[LocalHost, LocalHost], tmp_path: Path, dl_mbps: float,
        ul_mbps: float) -> None:
    traffic = traffic_between(hosts, tmp_path)

    with pytest.raises(ValueError):
        traffic.set_demand(dl_mbps, ul_mbps)
