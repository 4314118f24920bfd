"""The round's traffic demand as iperf3 UDP flows through the LTE link, one per direction.

Why every flow runs with ``-R`` (the server sends, the client receives):
iperf3 cannot change the rate of a running flow, so each new demand ends the flows and
starts new ones. Ending a client early (SIGTERM) makes it write its JSON report at once,
but only with its *own* figures: a sending client reports 0 bytes received, and the
server's report of an interrupted test overstates the rate (iperf3 3.12: 13.1 Mb/s for a
10 Mb/s flow). The figures a round needs are the receiver's (what arrived, loss, jitter),
so the client is put at the receiving end of each direction:

- downlink: server on the core host, bound to `core_address` (the SGi side, srsEPC's
  ``srs_spgw_sgi``, 172.16.0.1 by default), sends; client in the UE namespace receives;
- uplink: server in the UE namespace, bound to `ue_address` (the UE's IP, 172.16.0.2 by
  default), sends; client on the core host receives.

Downlink uses `port`, uplink `port + 1` (both servers may sit on one host). Binding the
servers to those addresses keeps them off the management network. Each client writes its
report to a file of its own (``--logfile``) that is read and removed when its flow ends.
Every client also ends by itself after `flow_limit_s`, so a controller that dies leaves no
flood behind. A demand of 0 Mb/s runs no flow (``-b 0`` would mean "unlimited").

Flows whose rates the new round does not change keep running; otherwise all of them end
and the new ones start together. Each start sets up iperf3's control connection through
the LTE link, in both directions, and a flow already running keeps its direction full:
with the demand above what the caps let through, PDCP discards most of that queue, and a
handshake behind it takes seconds or fails (measured on the ZMQ testbed: whichever flow
started second never connected). So the clients of one host run as one process, started
in one go (hosts in parallel), and both handshakes are done before either flow fills the
link. A constant demand (scenario A) runs its flows until they near `flow_limit_s`; a
demand that changes every round (scenarios B, C) restarts them every round, a short gap
without traffic each time. Starting together is not enough on its own (measured: 200
rounds of scenario A on the ZMQ testbed, one direction never connected), because a restart
meets what the ended flows left queued (hundreds of kB in the UE's UL buffer under a tight
UL cap). Where core and UE share a host, `hil.testbeds.srsran_processes.ControlPath`
therefore carries the TCP control connections over a veth pair beside the LTE link, and
only the UDP flows cross it
(then both directions carried demand in 57-60 of 60 rounds). Without it, a direction that
fails to connect is logged and retried at the next restart; hence the long default
`flow_limit_s`.
The eNB's KPI stream measures what each round delivered; these reports say what arrived
end to end over a flow's life.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from shlex import quote
from typing import Any

from drivers.protocols import ProcessHost
from hil.base.errors import HilError
from hil.base.liveness import ALIVE_CHECK_S, AliveChecker

DEFAULT_PORT = 5201
_SERVER_READY = "Server listening on"
_SERVER_START_TIMEOUT_S = 5.0
_POLL_S = 0.05
_CONNECT_TIMEOUT_MS = 5000
_LOG_TAIL_LINES = 5
RENEW_BEFORE_LIMIT_S = 2.0
"""A kept flow is replaced this long before its `flow_limit_s`, so it never ends mid-round."""


class TrafficError(HilError):
    """An iperf3 flow failed or left no usable report; names the flow, host and what to do."""


@dataclass(frozen=True)
class Iperf3Result:
    """What the receiving end of one UDP flow saw (iperf3's ``end.sum_received``)."""

    target_rate_mbps: float
    rate_mbps: float
    received_bytes: int
    duration_s: float
    packets: int
    lost_packets: int
    loss_pct: float
    jitter_ms: float
    reverse: bool
    interrupted: bool  # ended by a signal (the normal end of a round's flow), not by -t


@dataclass(frozen=True)
class TrafficReading:
    """The flows of one demand; None for a direction that had no flow (0 Mb/s)."""

    dl: Iperf3Result | None
    ul: Iperf3Result | None


def parse_iperf3_json(text: str) -> Iperf3Result:
    """The receiver's figures from one iperf3 client's JSON report (``-J``) of a UDP test.

    A report cut short (the client killed before it wrote it all), an iperf3 error, a TCP
    test, or an interrupted sending client (whose report lacks the receiver's figures)
    raise TrafficError.
    """
    if not text.strip():
        raise TrafficError("iperf3 wrote no report: it failed before its test began "
                           "(its log says why)")
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrafficError(f"iperf3 report is not complete JSON ({exc.msg} at character "
                           f"{exc.pos}): {text.strip()[:120]!r}; run iperf3 with -J and "
                           "let it exit before reading its report") from None
    if not isinstance(report, dict):
        raise TrafficError(f"iperf3 report is not a JSON object: {text.strip()[:120]!r}")
    error = report.get("error")
    interrupted = isinstance(error, str) and error.startswith("interrupt")
    if error and not interrupted:
        raise TrafficError(f"iperf3 failed: {error}")
    protocol = _field(report, "start.test_start.protocol")
    if protocol != "UDP":
        raise TrafficError(f"iperf3 report is of a {protocol} test; flows here are UDP (-u)")
    reverse = bool(_number(report, "start.test_start.reverse"))
    if interrupted and not reverse:
        raise TrafficError("iperf3 client was sending (no -R) and was interrupted, so its "
                           "report has no receiver figures; run interrupted flows with -R")
    received_bytes = int(_number(report, "end.sum_received.bytes"))
    duration_s = _number(report, "end.sum_received.seconds")
    packets = int(_number(report, "end.sum_received.packets"))
    lost_packets = int(_number(report, "end.sum_received.lost_packets"))
    return Iperf3Result(
        target_rate_mbps=_number(report, "start.test_start.target_bitrate") / 1e6,
        rate_mbps=received_bytes * 8 / duration_s / 1e6 if duration_s > 0 else 0.0,
        received_bytes=received_bytes,
        duration_s=duration_s,
        packets=packets,
        lost_packets=lost_packets,
        loss_pct=100.0 * lost_packets / packets if packets else 0.0,
        jitter_ms=_number(report, "end.sum_received.jitter_ms"),
        reverse=reverse,
        interrupted=interrupted,
    )


def _field(report: dict[str, Any], path: str) -> Any:
    node: Any = report
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise TrafficError(f"iperf3 report has no {path}: the test did not get going "
                               "(see the client's log) or the report is not iperf3's")
        node = node[key]
    return node


def _number(report: dict[str, Any], path: str) -> float:
    value = _field(report, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrafficError(f"iperf3 report field {path} is {value!r}, not a number")
    return float(value)


@dataclass(frozen=True)
class _Direction:
    """One direction: a sending server and a receiving client (run with the other
    direction's client if they share a host)."""

    name: str  # "dl" or "ul"
    sender: ProcessHost
    sender_netns: str | None
    sender_address: str
    receiver: ProcessHost
    receiver_netns: str | None
    port: int
    report_path: str

    @property
    def server_name(self) -> str:
        return f"iperf3-{self.port}-{self.name}-server"

    def server_command(self) -> str:
        # Text output, flushed, so the log says when the server listens.
        return f"iperf3 -s -B {quote(self.sender_address)} -p {self.port} --forceflush"

    def client_command(self, rate_bps: int, flow_limit_s: int) -> str:
        """The receiving client, in its namespace (clients share one shell: see `start`)."""
        netns = (f"ip netns exec {quote(self.receiver_netns)} "
                 if self.receiver_netns is not None else "")
        return (f"{netns}iperf3 -c {quote(self.sender_address)} -p {self.port} -u -R "
                f"-b {rate_bps} -t {flow_limit_s} -i 0 --connect-timeout "
                f"{_CONNECT_TIMEOUT_MS} -J --logfile {quote(self.report_path)}")


class Iperf3Traffic:
    """Per-round UDP demand through the LTE link (see the module docstring for the layout).

    `start` brings the two servers up; `set_demand` at the start of each round keeps the
    flows if their rates hold, else ends them and starts flows at the new rates, returning
    the ended flows' figures; `stop` ends the flows and returns theirs; `close` also stops
    the servers.
    """

    def __init__(self, core_host: ProcessHost, ue_host: ProcessHost, *, core_address: str,
                 ue_address: str, port: int = DEFAULT_PORT, ue_netns: str | None = None,
                 report_dir: str = "/tmp", flow_limit_s: int = 60,
                 clock: Callable[[], float] = time.monotonic,
                 alive_check_s: float = ALIVE_CHECK_S) -> None:
        if flow_limit_s < 1:
            raise ValueError(f"flow_limit_s must be >= 1 s, got {flow_limit_s}")
        self.flow_limit_s = flow_limit_s
        self.port = port
        self._clock = clock
        reports = f"{report_dir.rstrip('/')}/vbs-hil-iperf3-{port}"
        self._dl = _Direction("dl", sender=core_host, sender_netns=None,
                              sender_address=core_address, receiver=ue_host,
                              receiver_netns=ue_netns, port=port,
                              report_path=f"{reports}-dl.json")
        self._ul = _Direction("ul", sender=ue_host, sender_netns=ue_netns,
                              sender_address=ue_address, receiver=core_host,
                              receiver_netns=None, port=port + 1,
                              report_path=f"{reports}-ul.json")
        self._rates_bps: dict[str, int] = {}  # of the running flows, by direction
        self._started_s = 0.0
        self._alive_check_s = alive_check_s
        self._flows_alive: AliveChecker | None = None  # from the first flows on

    def start(self) -> None:
        """Start both servers (replacing any left over) and wait until they listen."""
        for host in self._client_hosts((self._dl, self._ul)):
            host.stop(self._clients_name)
        for direction in (self._dl, self._ul):
            direction.receiver.run(f"rm -f {quote(direction.report_path)}")
            direction.sender.stop(direction.server_name)
            direction.sender.start(direction.server_name, direction.server_command(),
                                   netns=direction.sender_netns)
        for direction in (self._dl, self._ul):
            _wait_until_listening(direction)

    def set_demand(self, dl_mbps: float, ul_mbps: float) -> TrafficReading | None:
        """Run flows at these rates from now on; return the figures of the flows they end.

        The running flows are kept if their rates hold, they all still run and they are not
        within `RENEW_BEFORE_LIMIT_S` of `flow_limit_s`; else all of them end and the new
        ones start together (see the module docstring). None if no flow ended. The new
        flows start even when the ended ones left no usable report; that failure is raised
        afterwards as TrafficError.
        """
        rates_bps = {"dl": _rate_bps("dl_mbps", dl_mbps), "ul": _rate_bps("ul_mbps", ul_mbps)}
        wanted = {name: rate for name, rate in rates_bps.items() if rate > 0}
        now_s = self._clock()
        if (wanted == self._rates_bps
                and now_s - self._started_s < self.flow_limit_s - RENEW_BEFORE_LIMIT_S
                and self.flows_running()):
            return None
        reports = self._end_flows()
        flows = [(direction, wanted[direction.name]) for direction in (self._dl, self._ul)
                 if direction.name in wanted]
        self._start_together(flows)
        self._rates_bps, self._started_s = wanted, now_s
        return self._reading(reports)

    def stop(self) -> TrafficReading | None:
        """End the flows and return their figures (None if none was running)."""
        return self._reading(self._end_flows())

    def flows_running(self) -> bool:
        """Whether the flows still ran when last asked: a thread asks every `alive_check_s`
        (two SSH exchanges, ~150 ms on a BBU busy with srsRAN, measured, which a round
        need not wait for), so a flow that died is started again at the first demand after
        that."""
        return self._flows_alive is None or self._flows_alive()

    def close(self) -> None:
        """End the flows (their figures are dropped) and stop the servers."""
        if self._flows_alive is not None:
            self._flows_alive.close()
            self._flows_alive = None
        self._end_flows()
        for direction in (self._dl, self._ul):
            direction.sender.stop(direction.server_name)

    @property
    def _clients_name(self) -> str:
        return f"iperf3-{self.port}-clients"

    def _flowing(self) -> list[_Direction]:
        return [d for d in (self._dl, self._ul) if d.name in self._rates_bps]

    @staticmethod
    def _client_hosts(directions: Sequence[_Direction]) -> list[ProcessHost]:
        """The hosts the clients of these directions run on, each once."""
        return list({id(d.receiver): d.receiver for d in directions}.values())

    def _all_running(self) -> bool:
        """Every client still runs: its host's process lives and it wrote no report yet (a
        client writes its report when it ends)."""
        flowing = self._flowing()
        for host in self._client_hosts(flowing):
            reports = [quote(d.report_path) for d in flowing if d.receiver is host]
            no_report = " && ".join(f"[ ! -s {path} ]" for path in reports)
            if (not host.is_running(self._clients_name)
                    or host.run(no_report, check=False).exit_code != 0):
                return False
        return True

    def _start_together(self, flows: list[tuple[_Direction, int]]) -> None:
        """One process per receiving host runs its clients, so their control connections
        are set up before either flow fills the link; hosts are started in parallel."""
        hosts = self._client_hosts([direction for direction, _ in flows])
        if not hosts:
            return

        def start_on(host: ProcessHost) -> None:
            commands = [direction.client_command(rate_bps, self.flow_limit_s)
                        for direction, rate_bps in flows if direction.receiver is host]
            host.start(self._clients_name, " & ".join(commands) + " & wait")

        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            for done in [pool.submit(start_on, host) for host in hosts]:
                done.result()
        if self._flows_alive is None:
            self._flows_alive = AliveChecker(self._all_running, self._alive_check_s,
                                             name="iperf3-alive")
        else:
            self._flows_alive.reset()

    def _end_flows(self) -> dict[str, tuple[_Direction, str]]:
        """Stop the running clients; each direction's report text."""
        flowing = self._flowing()
        for host in self._client_hosts(flowing):
            host.stop(self._clients_name)
        reports = {}
        for direction in flowing:
            path = quote(direction.report_path)
            text = direction.receiver.run(f"cat {path} && rm -f {path}", check=False).stdout
            reports[direction.name] = (direction, text)
        self._rates_bps = {}
        return reports

    def _reading(self, reports: dict[str, tuple[_Direction, str]]) -> TrafficReading | None:
        if not reports:
            return None
        results: dict[str, Iperf3Result] = {}
        failures = []
        for name, (direction, text) in reports.items():
            try:
                results[name] = parse_iperf3_json(text)
            except TrafficError as exc:
                log_tail = direction.receiver.tail(self._clients_name, _LOG_TAIL_LINES)
                failures.append(
                    f"{name} flow (iperf3 client on {direction.receiver.name}, "
                    f"to {direction.sender_address}:{direction.port}): {exc}; client log: "
                    f"{_one_line(log_tail)}")
        if failures:
            raise TrafficError(" | ".join(failures))
        return TrafficReading(dl=results.get("dl"), ul=results.get("ul"))


def _rate_bps(key: str, rate_mbps: float) -> int:
    """iperf3's -b value; at least 1 b/s for any positive demand (0 means unlimited)."""
    if not math.isfinite(rate_mbps) or rate_mbps < 0:
        raise ValueError(f"{key} must be a finite rate >= 0 Mb/s, got {rate_mbps}")
    return max(1, round(rate_mbps * 1e6)) if rate_mbps > 0 else 0


def _one_line(log_text: str) -> str:
    """A log tail as one line of an error message."""
    return " / ".join(line.strip() for line in log_text.splitlines() if line.strip()) \
        or "(empty)"


def _wait_until_listening(direction: _Direction) -> None:
    """Clients connecting before their server listens would fail: wait for its banner."""
    host = direction.sender
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while True:
        running = host.is_running(direction.server_name)  # before the tail: then it is whole
        log_tail = host.tail(direction.server_name, 20)
        if _SERVER_READY in log_tail:
            return
        if not running or time.monotonic() > deadline:
            raise TrafficError(
                f"iperf3 server {direction.server_name} on {host.name} is not listening on "
                f"{direction.sender_address}:{direction.port}: {_one_line(log_tail)}; check "
                "that iperf3 is installed there, that the address is up (UE attached) and "
                "that the port is free")
        time.sleep(_POLL_S)
