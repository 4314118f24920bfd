"""`hil serve`: the live view of runs, beside them and never inside their round loop.

    hil serve [PATH ...] [--host ADDR] [--port N] [--token T]

PATHs are run directories, folders of runs (`runs/`, where new runs are picked up as they
start) or `hil collect` outputs; default `runs/`. It serves

    /                                 a page: every run's reward, power and throughput
                                      over rounds, its invalid rounds by reason
    /metrics                          Prometheus text format (prometheus_client)
    /api/runs                         the followed runs: name, testbed, agent, status, rows
    /api/rounds?run=NAME&since=N      recorded rows N.. of a run as JSON (at most `limit`,
                                      default 1000), each exactly as recorded; `next` is the
                                      `since` of the following page
    /api/agent?run=NAME               the agent at its last checkpoint: its distribution as
                                      summary.png's heat map, gamma, MetBS's child shares

It binds 127.0.0.1 unless told otherwise; on any other address every request must carry the
token (``Authorization: Bearer T`` or ``?token=T``), which is generated and printed when not
given. A thread re-reads the followed directories (and looks for new runs in the folders)
every REFRESH_S; requests only read what it gathered.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hil.base.errors import HilError
from hil.base.network import is_loopback_host
from hil.live import FollowedRun, find_runs

log = logging.getLogger(__name__)

REFRESH_S = 0.5
PAGE = Path(__file__).with_name("live_page.html")
PAGE_LIMIT = 1000
MAX_LIMIT = 10_000


class ServeError(HilError):
    """`hil serve` cannot start: a bad address, a port in use, no such path."""


class Runs:
    """The followed runs, refreshed by a thread of their own."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._runs: dict[str, FollowedRun] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rescan()
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="hil-serve-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def all(self) -> list[FollowedRun]:
        with self._lock:
            return list(self._runs.values())

    def get(self, name: str) -> FollowedRun | None:
        with self._lock:
            return self._runs.get(name)

    def refresh(self) -> None:
        for run in self.all():
            run.refresh()

    def _rescan(self) -> None:
        """Add runs new in the followed folders. Two runs of one name (a lab's testbeds of
        one config name, started in the same second) are told apart by their folder."""
        for path in find_runs(self.paths):
            with self._lock:
                if any(run.path == path for run in self._runs.values()):
                    continue
                name = path.name if path.name not in self._runs \
                    else f"{path.parent.name}/{path.name}"
                self._runs[name] = FollowedRun(path, name)

    def _run(self) -> None:
        """Every REFRESH_S; a failure is logged and retried, never the end of the thread
        (a folder removed under it, a file half written)."""
        while not self._stop.wait(REFRESH_S):
            try:
                self._rescan()  # a new run in a followed folder shows within one refresh
                self.refresh()
            except Exception:  # noqa: BLE001 - see the docstring
                log.exception("hil serve: refreshing the followed runs failed; retrying")


class RunsCollector(Collector):
    """The Prometheus view of the followed runs, computed at each scrape from what the
    refresh thread gathered (counters only ever grow with the rows, unless a run rewinds)."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        labels = ["run", "testbed", "agent"]
        counters = {
            "rounds": ("rounds recorded", lambda t: t.rows),
            "cap_violations": ("TTIs in which a grant exceeded a cap", lambda t: t.violations),
            "testbed_restarts": ("crashed processes restarted", lambda t: t.restarts),
            "energy_joules": ("energy of BBU + radio over the recorded rounds",
                              lambda t: t.energy_j),
            "dl_bits": ("DL bits acknowledged", lambda t: t.dl_bits),
            "ul_bits": ("UL bits received OK", lambda t: t.ul_bits),
        }
        gauges = {
            "reward": ("the last round's reward in [0, 1]", "reward"),
            "power_watts": ("the last round's mean power", "power_w"),
            "dl_rate_mbps": ("the last round's DL throughput", "dl_rate_mbps"),
            "ul_rate_mbps": ("the last round's UL throughput", "ul_rate_mbps"),
            "policy_index": ("the last round's policy", "policy_index"),
            "meter_coverage": ("share of the last round the meter covered", "meter_coverage"),
        }
        families: dict[str, Metric] = {
            **{n: CounterMetricFamily(f"hil_{n}", doc, labels=labels)
               for n, (doc, _) in counters.items()},
            **{n: GaugeMetricFamily(f"hil_{n}", doc, labels=labels)
               for n, (doc, _) in gauges.items()},
        }
        invalid = CounterMetricFamily("hil_invalid_rounds", "invalid rounds by reason",
                                      labels=[*labels, "reason"])
        gamma = GaugeMetricFamily("hil_exploration_gamma", "the agent's exploration rate",
                                  labels=labels)
        entropy = GaugeMetricFamily("hil_policy_entropy_bits", "entropy of the agent's "
                                    "distribution over policies (last checkpoint)", labels=labels)
        top = GaugeMetricFamily("hil_policy_probability", "the agent's most likely policies "
                                "(last checkpoint)", labels=[*labels, "rank", "policy"])
        for run in self.runs.all():
            info = run.describe()
            values = [run.name, str(info["testbed"] or ""), str(info["agent"] or "")]
            with run.lock:
                totals = run.totals
                for name, (_, value) in counters.items():
                    families[name].add_metric(values, float(value(totals)))
                for name, (_, column) in gauges.items():
                    last = totals.last.get(column)
                    if last is not None:
                        families[name].add_metric(values, float(last))
                for reason, count in sorted(totals.invalid.items()):
                    invalid.add_metric([*values, reason], float(count))
            view = run.agent_view()
            if view is not None:
                entropy.add_metric(values, view.entropy_bits)
                if view.gamma is not None:
                    gamma.add_metric(values, float(view.gamma))
                for rank, (policy, probability) in enumerate(view.top, start=1):
                    top.add_metric([*values, str(rank), str(policy)], probability)
        yield from families.values()
        yield from (invalid, gamma, entropy, top)


def make_handler(runs: Runs, registry: CollectorRegistry,
                 token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hil-serve"

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if token is not None and not self._authorised(query):
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "a token is required: "
                           "Authorization: Bearer TOKEN or ?token=TOKEN (printed by hil serve)"})
                return
            try:
                if url.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
                elif url.path == "/metrics":
                    self._send(HTTPStatus.OK, generate_latest(registry),
                               "text/plain; version=0.0.4; charset=utf-8")
                elif url.path == "/api/runs":
                    self._json(HTTPStatus.OK, {"runs": [r.describe() for r in runs.all()]})
                elif url.path == "/api/rounds":
                    self._rounds(query)
                elif url.path == "/api/agent":
                    view = self._run(query).agent_view()
                    self._json(HTTPStatus.OK, {"agent": None if view is None else view.as_json()})
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path!r}; "
                               "try /metrics, /api/runs or /api/rounds?run=NAME&since=0"})
            except _BadRequest as exc:
                self._json(exc.status, {"error": str(exc)})

        def _authorised(self, query: dict[str, list[str]]) -> bool:
            given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or (query.get("token") or [""])[0]
            return secrets.compare_digest(given, token or "")

        def _run(self, query: dict[str, list[str]]) -> FollowedRun:
            name = (query.get("run") or [""])[0]
            run = runs.get(name)
            if run is None:
                known = ", ".join(r.name for r in runs.all()) or "none"
                raise _BadRequest(HTTPStatus.NOT_FOUND, f"unknown run {name!r}; followed: {known}")
            return run

        def _rounds(self, query: dict[str, list[str]]) -> None:
            run = self._run(query)
            name = run.name
            since = _int_arg(query, "since", 0)
            limit = min(_int_arg(query, "limit", PAGE_LIMIT), MAX_LIMIT)
            rows = run.rows(since, limit)
            self._json(HTTPStatus.OK, {"run": name, "since": since, "next": since + len(rows),
                                       "total": run.totals.rows, "rewinds": run.follower.rewinds,
                                       "rows": rows})

        def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body, allow_nan=False).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the API's name
            """Quiet: a scrape every few seconds is not news."""

    return Handler


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _int_arg(query: dict[str, list[str]], name: str, default: int) -> int:
    text = (query.get(name) or [str(default)])[0]
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise _BadRequest(HTTPStatus.BAD_REQUEST,
                          f"{name} must be a whole number >= 0, got {text!r}")
    return value


class LiveServer:
    """The HTTP server and the refresh thread, started together, stopped together."""

    def __init__(self, paths: list[Path], host: str = "127.0.0.1", port: int = 8765,
                 token: str | None = None) -> None:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ServeError(f"no such path: {', '.join(missing)}; give run directories or "
                             "the folder that holds them (runs/)")
        if not is_loopback_host(host) and token is None:
            token = secrets.token_urlsafe(16)
        self.token = token
        self.runs = Runs(paths)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(RunsCollector(self.runs))
        try:
            self.httpd = ThreadingHTTPServer((host, port), make_handler(self.runs, registry,
                                                                         token))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                             "another --port") from exc
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hil-serve",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        suffix = f"/?token={self.token}" if self.token else "/"
        return f"http://{host}:{port}{suffix}"

    def start(self) -> LiveServer:
        self.runs.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.runs.stop()


def spawn(paths: list[Path], address: str, wait_s: float = 10.0) -> tuple[subprocess.Popen, str]:
    """`hil serve PATHS` in a process of its own (never in the caller's round loop), on
    `address` ("HOST:PORT"); returns it and its URL once it answers. ServeError if it
    cannot start (the port taken, say), with what it said."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ServeError(f"--serve {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    token = None if is_loopback_host(host) else secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "tools.cli", "serve", *map(str, paths), "--host", host,
               "--port", port, *(["--token", token] if token else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    url = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    probe = urllib.request.Request(f"http://{host}:{port}/api/runs")
    if token:
        probe.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = (process.stderr.read() if process.stderr else "").strip()
            raise ServeError(f"hil serve on {address} exited at start: {said or 'no message'}")
        try:
            with urllib.request.urlopen(probe, timeout=1.0):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise ServeError(f"hil serve on {address} did not answer within {wait_s:.0f} s")
