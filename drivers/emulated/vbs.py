"""The emulated vBS: a separate process that speaks rtctl v1 like the patched srsENB.

It binds the rtctl REP socket and a meter socket, and runs the link and power model over
exactly the TTIs that elapse on its clock (wall time x speedup, or, stepped, one round per
KPI window): on every request it first catches up, simulating the TTIs since the last
request under the thresholds that were in force, so every KPI window is an exact sum over
its TTIs. The environment (demand, CQI)
changes per epoch of `round_s` of emulated time, as the paper's scenarios do per round.

Run by the testbed as ``python -m drivers.emulated --calibration ... --scenario A ...``
(`drivers/emulated/__main__.py`); it prints one JSON line with the endpoints it bound once
it is ready, and exits on SIGTERM/SIGINT or when its parent process dies (no orphan after a
controller crash).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, fields

import numpy as np
import zmq

import hil
from drivers.emulated.meter import serve_meter_request
from drivers.power.scpi_twin import ScpiMeterTwin
from drivers.rtctl.curve import ServerCurve
from drivers.rtctl.messages import CapCounters, CellKpis, KpiWindow, Thresholds, UserKpis
from drivers.rtctl.server import RtctlServer
from hil.base import model
from hil.base.scenarios import Environment, Scenario
from hil.base.slices import SLICE_QCI

log = logging.getLogger(__name__)
RNTI = 70
SLIP_WARNING_EVERY_S = 5.0
_MAX_CHUNK_TTI = 20_000
_MAX_LAG_TTI = 5_000  # more unsimulated TTIs than this: the clock slips
IDLE_SYNC_MS = 8  # an idle emulator catches up this often (see `serve`)
SYNC_SHARE_OF_ROUND = 0.01
"""A request simulates the TTIs pending only when they are at least this share of a round.
A simulation step has a fixed cost (~0.4 ms here, whether of 1 TTI or of 100), which a
request at real time would otherwise pay on every exchange; there, the idle loop keeps fewer
TTIs than that pending, so a reply waits for no simulation. What a request leaves pending
runs later, under the thresholds then in force: a `set` takes effect that many TTIs before
it arrived (at real time up to 10 ms of a 1 s round), as its `applied_tti` records."""
SYNC_WALL_S = 0.00025
"""... and at least this much wall time's worth: requests close together at speed share a
step."""


class TtiClock:
    """Emulated TTI counter: 1000 TTIs per second of wall time, times `speedup`.

    If the host cannot simulate TTIs as fast as they elapse, the clock slips (emulated time
    runs slower than asked, as srsRAN over ZMQ runs below real time) instead of falling
    further behind with every request.
    """

    def __init__(self, speedup: float = 1.0) -> None:
        self.speedup = speedup
        self._t0 = time.monotonic()
        self._origin = self._t0
        self.slipped_tti = 0
        self._last_warning = -math.inf

    def now(self) -> int:
        return int((time.monotonic() - self._t0) * 1000.0 * self.speedup)

    def slip(self, tti: int) -> None:
        self._t0 += tti / (1000.0 * self.speedup)
        self.slipped_tti += tti
        if time.monotonic() - self._last_warning > SLIP_WARNING_EVERY_S:
            self._last_warning = time.monotonic()
            log.warning("cannot simulate %g x real time here: emulated time has slipped by "
                        "%d TTIs in all; lower clock.speedup", self.speedup, self.slipped_tti)

    def wall_s(self) -> float:
        return time.monotonic() - self._origin


class SteppedClock(TtiClock):
    """Emulated time that the controller's requests move: a `get` closes its KPI window
    exactly one round (`epoch_tti`) after the window opened, simulated as fast as the host
    can (clock.mode: stepped). The floor of a round is then two round trips and the
    simulation of its TTIs, not the round's length over a speedup; for learners over the
    paper's 50 000-round horizon and for benchmarks. Nothing is paced by the wall clock, so
    nothing slips."""

    def __init__(self) -> None:
        super().__init__(speedup=1.0)
        self._tti = 0

    def now(self) -> int:
        return self._tti

    def advance_to(self, tti: int) -> None:
        self._tti = max(self._tti, tti)


@dataclass
class _Sums:
    """Running sums of a window (or of the meter's integration period)."""

    nof_tti: int = 0
    energy_j: float = 0.0
    sums: np.ndarray = field(default_factory=lambda: np.zeros((2, len(model.KPI_FIELDS))))

    def add(self, w: model.WindowKpis) -> None:
        self.nof_tti += w.nof_tti
        self.energy_j += w.energy_j
        self.sums += w.sums

    def of(self, direction: str) -> dict[str, float]:
        return dict(zip(model.KPI_FIELDS, self.sums[model.DIRECTIONS.index(direction)].tolist()))


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


class EmulatedVbs:
    """The rtctl backend: thresholds in force, the link state, the KPI accumulators."""

    def __init__(
        self, cal: model.Calibration, scenario: Scenario, *, seed: int, round_s: float = 1.0,
        clock: TtiClock | None = None, defaults: Thresholds | None = None,
    ) -> None:
        self.cal = cal
        self.scenario = scenario
        self.clock = clock or TtiClock()
        self.epoch_tti = max(1, round(round_s * 1000))
        self.stepped = isinstance(self.clock, SteppedClock)
        self._rng = np.random.default_rng(seed)
        self._defaults = defaults or Thresholds()
        self._thresholds = self._defaults
        self._caps = self._caps_for(self._thresholds)
        self._state = model.LinkState()
        self._tti = 0
        self._window = _Sums()
        self._window_start = (0, 0.0)
        self._meter = _Sums()
        self._window_ends_at_apply = False
        self._boot_id = uuid.uuid4().hex[:12]
        self.sync_tti = max(1, round(self.epoch_tti * SYNC_SHARE_OF_ROUND),
                            round(self.clock.speedup * 1000 * SYNC_WALL_S))

    # ---- the model, caught up to the clock
    def _caps_for(self, thr: Thresholds) -> model.Caps:
        ue = thr.ue.get(RNTI)
        return model.make_caps(
            self.cal.cell, dl_max_mcs=thr.dl_max_mcs, ul_max_mcs=thr.ul_max_mcs,
            dl_prb_ratio=thr.dl_prb_ratio, ul_prb_ratio=thr.ul_prb_ratio,
            dl_gain_db=thr.dl_gain_db,
            ue_dl_max_prb=ue.dl_max_prb if ue else None,
            ue_ul_max_prb=ue.ul_max_prb if ue else None,
        )

    def _env_per_tti(self, start: int, stop: int) -> Environment:
        first, last = start // self.epoch_tti, (stop - 1) // self.epoch_tti
        env = self.scenario.epochs(first, last + 1)
        idx = np.arange(start, stop) // self.epoch_tti - first
        return Environment(*(getattr(env, f.name)[idx] for f in fields(Environment)))

    def pending_tti(self) -> int:
        """TTIs elapsed on the clock but not simulated yet."""
        return self.clock.now() - self._tti

    def sync(self) -> int:
        """Catch up if at least `sync_tti` TTIs are pending; return the simulated frontier.

        Windows end at the simulated frontier, so every TTI is counted in exactly one window
        whether or not a request simulates.
        """
        if self.pending_tti() >= self.sync_tti:
            self.catch_up()
        return self._tti

    def due_tti(self) -> int:
        """The TTI to simulate up to: now, unless a wall-paced clock is too far ahead (it
        slips)."""
        now = self.clock.now()
        if now - self._tti > _MAX_LAG_TTI and not self.stepped:
            self.clock.slip(now - self._tti - _MAX_LAG_TTI)
            now = self._tti + _MAX_LAG_TTI
        return now

    def catch_up(self) -> int:
        """Simulate every TTI up to now under the caps in force; return the current TTI."""
        now = self.due_tti()
        while self._tti < now:
            stop = min(now, self._tti + _MAX_CHUNK_TTI)
            kpis, self._state = model.simulate_window(
                self._caps, self._env_per_tti(self._tti, stop), self._state, self._rng, self.cal)
            self._window.add(kpis)
            self._meter.add(kpis)
            if self.cal.drift is not None:
                self._meter.energy_j += (self.cal.drift.power_w(time.time())
                                         * kpis.nof_tti * model.TTI_S)
            self._tti = stop
        return self._tti

    # ---- VbsBackend
    def identity(self) -> dict:
        return {"name": "emulated-srsenb", "version": hil.__version__, "boot_id": self._boot_id,
                "uptime_s": self.clock.wall_s(), "tti": self.clock.now()}

    def thresholds(self) -> Thresholds:
        return self._thresholds

    def defaults(self) -> Thresholds:
        return self._defaults

    def apply(self, thresholds: Thresholds) -> int:
        applied_tti = self.sync()
        self._thresholds = thresholds
        self._caps = self._caps_for(thresholds)
        if self.stepped:  # the meter's window is the round's (the controller sends the
            self._meter = _Sums()  # meter no start: it could overtake the round's `get`)
        self._window_ends_at_apply = True  # the server closes the window next: at this TTI
        return applied_tti

    def close_window(self) -> tuple[KpiWindow, CellKpis, dict[int, UserKpis]]:
        # A `set` closes the window where its thresholds took effect (rtctl v1, 6.3): TTIs
        # after that already ran under the new thresholds and belong to the next window.
        if isinstance(self.clock, SteppedClock) and not self._window_ends_at_apply:
            self.clock.advance_to(self._window_start[0] + self.epoch_tti)
        tti = self._tti if self._window_ends_at_apply else self.sync()
        self._window_ends_at_apply = False
        wall = self.clock.wall_s()
        start_tti, start_wall = self._window_start
        window = KpiWindow(tti_start=start_tti, tti_end=tti, nof_tti=tti - start_tti,
                           wall_s=wall - start_wall)
        cell, users = self.take_kpis()
        self._window_start = (tti, wall)
        return window, cell, users

    def take_kpis(self) -> tuple[CellKpis, dict[int, UserKpis]]:
        """The cell's and each user's KPIs of the window that closes; starts the next one.
        The one user is an eMBB user: its default bearer's QCI is eMBB's."""
        cell = self._cell_kpis(self._window)
        self._window = _Sums()
        return cell, {RNTI: UserKpis(**dict(cell), qci=SLICE_QCI[0])}

    def _cell_kpis(self, s: _Sums) -> CellKpis:
        dl, ul = s.of("dl"), s.of("ul")
        backlog_bytes = (self._state.backlog_bits // 8).astype(int).tolist()
        count = {k: int(v) for k, v in (*(("dl_" + k, v) for k, v in dl.items()),
                                         *(("ul_" + k, v) for k, v in ul.items()))}
        return CellKpis(
            dl_bits_acked=count["dl_bits_delivered"], ul_bits_ok=count["ul_bits_delivered"],
            dl_bits_arrived=count["dl_bits_arrived"], ul_bits_arrived=count["ul_bits_arrived"],
            dl_prb_tti=count["dl_prb_tti"], ul_prb_tti=count["ul_prb_tti"],
            dl_sched_tti=count["dl_sched_tti"], ul_sched_tti=count["ul_sched_tti"],
            dl_mcs_mean=_ratio(dl["mcs_sum"], dl["sched_tti"]),
            ul_mcs_mean=_ratio(ul["mcs_sum"], ul["sched_tti"]),
            dl_cqi_mean=_ratio(dl["cqi_sum"], s.nof_tti),
            ul_snr_mean=_ratio(ul["snr_sum_db"], s.nof_tti),
            dl_backlog_bytes=backlog_bytes[0], ul_backlog_bytes=backlog_bytes[1],
            dl_bler=_ratio(dl["tb_failed"], dl["sched_tti"]),
            ul_bler=_ratio(ul["tb_failed"], ul["sched_tti"]),
            cap_hits=CapCounters(dl_mcs=count["dl_cap_hits_mcs"], dl_prb=count["dl_cap_hits_prb"],
                                 ul_mcs=count["ul_cap_hits_mcs"], ul_prb=count["ul_cap_hits_prb"]),
            violations=CapCounters(
                dl_mcs=count["dl_violations_mcs"], dl_prb=count["dl_violations_prb"],
                ul_mcs=count["ul_violations_mcs"], ul_prb=count["ul_violations_prb"]),
        )

    # ---- the emulated meter's view: mean modelled power since its last reading
    def read_power(self) -> tuple[float, float, int]:
        """(mean power W, energy J, TTIs) since the previous call; NaN power if no TTI passed.

        Read right after a KPI window closed, it covers exactly the TTIs of that window.
        """
        self.sync()
        s, self._meter = self._meter, _Sums()
        mean_w = s.energy_j / (s.nof_tti * model.TTI_S) if s.nof_tti else float("nan")
        return mean_w, s.energy_j, s.nof_tti


def _bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind; port 0 means any free port. Returns the endpoint actually bound."""
    if endpoint.endswith(":0"):
        sock.bind_to_random_port(endpoint[: -len(":0")])
    else:
        sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class _LockedPowerSource:
    """The emulated vBS's power, read from the SCPI twin's threads under the serve lock."""

    def __init__(self, vbs: EmulatedVbs, lock: threading.Lock) -> None:
        self._vbs, self._lock = vbs, lock

    def read_power(self) -> tuple[float, float, int]:
        with self._lock:
            return self._vbs.read_power()


def serve(vbs: EmulatedVbs, control_endpoint: str, meter_endpoint: str,
          stop: threading.Event, on_ready=None, scpi_meter: str | None = None,
          exit_with_parent: bool = False, idle_exit_s: float | None = None,
          curve: ServerCurve | None = None) -> None:
    """One thread, two REP sockets: rtctl control and the meter; optionally a GPM-8213 SCPI
    twin on `scpi_meter` ("host:port", port 0 = any), whose threads share the model under a
    lock with this loop.

    It ends when `stop` is set, when its parent dies (`exit_with_parent`, local runs) or when
    no control request came for `idle_exit_s` (on an SSH host, where the controller is no
    parent: a controller killed with SIGKILL leaves no emulator behind for long).

    With `curve`, the control socket takes only authorized CURVE clients (drivers.rtctl.curve);
    the emulated meter's socket is the emulator's own convenience and stays plain.

    TTIs are simulated when a request needs them (`EmulatedVbs.sync`), and after
    IDLE_SYNC_MS without one: a simulation step has a fixed cost (~0.4 ms here), so at
    speed one step per window is cheapest, while in real time the idle steps leave a request
    fewer TTIs pending than it would simulate, and it replies at once (idle, the steps take
    ~5 % of a core).
    """
    ctx = zmq.Context.instance()
    server = RtctlServer(control_endpoint, vbs, context=ctx)
    control = ctx.socket(zmq.REP)
    meter = ctx.socket(zmq.REP)
    control.linger = meter.linger = 0
    if curve is not None:
        curve.start(ctx)
        curve.apply(control)
    lock = threading.Lock()
    twin = None
    try:
        bound = {"control": _bind(control, control_endpoint), "meter": _bind(meter, meter_endpoint)}
        if scpi_meter is not None:
            host, _, port = scpi_meter.rpartition(":")
            twin = ScpiMeterTwin(_LockedPowerSource(vbs, lock), host, int(port)).start()
            bound["scpi_meter"] = twin.resource
        if on_ready:
            on_ready(bound)
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(meter, zmq.POLLIN)
        parent = os.getppid()
        last_request_s = time.monotonic()
        while not stop.is_set():
            ready = dict(poller.poll(IDLE_SYNC_MS))
            if not ready:  # idle: simulate what has elapsed, so a request has less to do
                with lock:
                    vbs.sync()
            if control in ready:
                last_request_s = time.monotonic()
                raw = control.recv()
                with lock:
                    reply = server.handle(raw)
                control.send(reply)
            if meter in ready:
                raw = meter.recv()
                with lock:
                    reply = serve_meter_request(vbs, raw)
                meter.send(reply)
            if exit_with_parent and os.getppid() != parent:  # the controller died
                log.warning("the controller (parent) died: exiting")
                break
            if idle_exit_s is not None and time.monotonic() - last_request_s > idle_exit_s:
                log.warning("no control request for %.0f s: exiting", idle_exit_s)
                break
    finally:
        if twin is not None:
            twin.close()
        control.close()
        meter.close()
        if curve is not None:
            curve.stop()
