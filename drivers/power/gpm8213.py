"""The GW-Instek GPM-8213 wall-power meter over pyvisa (pyvisa-py backend).

The meter sits on the BBU + radio supply. It is reached over its LAN port (raw TCP,
``TCPIP0::host::23::SOCKET``) or its USB-CDC port (``ASRL/dev/ttyACM0::INSTR``, 8-N-1);
both speak SCPI lines ending in CR LF. On connect the driver checks ``*IDN?``, sets the
numeric items (8, as on the real unit) and reads ``:NUMERIC:NORMAL:HEADER?`` back to prove
they took effect.

Why a poller thread: the meter only reports its latest update (about one a second), so
power over a round is a mean of the readings that cover it. A thread queries
``:NUMERIC:NORMAL:VALUE?`` every `poll_s` and keeps time-stamped samples; `start()` and
`stop()` only mark the window, so the round's critical path does no I/O and a slow or
broken meter never blocks it. Each reading stands for the time since the previous one (at
most one meter update); a window's mean weighs them by the part of the window they cover,
and its coverage is the share of the window that valid readings cover. The poller also
reads at each window's start (`start()` wakes it), so that no reading mixes two rounds'
power, and at its end when the readings so far cover less than END_READ_BELOW or the
integrator is used (`stop()` then waits for that one exchange, at most `poll_s` + 50 ms):
a healthy meter loses no window at any `poll_s` up to the round's length. A NaN, a garbled
reply or a dropped connection costs only the time it stands for: the window is refused only
when its coverage is below `min_coverage`. Any reply the driver cannot
trust ends the session, and the poller reconnects with backoff; a connection the meter
closed is noticed as soon as it closes (not after `timeout_s`) and logged as a drop.

With ``use_integrator=True`` the meter's own integrator (``:INTEGrate:...``; the items
``WH`` and ``TIME`` replace ``Q`` and ``FI``) gives the window's mean power, since it
misses no energy between polls, behind NaN replies or late ones: per session (a reconnect
resets it), the energy over the integrator's own time between the first reading asked for
inside the window and the last one, the reading at the window's end included. Its coverage
is the share of the window those spans surely hold; below `min_coverage` (a hang-up every
few readings leaves short sessions) the polled samples are used instead.
"""

from __future__ import annotations

import collections
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyvisa
from pyvisa import constants

from drivers.power.gpm8213_scpi import (
    HEADER_NAMES,
    INTEGRATOR_ITEMS,
    INTEGRATOR_SETUP,
    ITEMS,
    TERMINATION,
    VALUE_QUERY,
    BadReply,
    header_matches,
    is_gpm8213,
    parse_values,
)
from drivers.power.windows import Sample, WindowMean, integrated_mean, window_mean
from drivers.protocols import PowerReading
from hil.base.errors import MeterError

logger = logging.getLogger(__name__)

BACKOFF_MAX_S = 10.0
END_READ_BELOW = 0.8
"""A window its readings cover less than this is read once more at its end (a faulty meter:
the tail may be what saves it); better covered ones skip that exchange."""
EDGE_WAIT_MARGIN_S = 0.05
"""How much longer than one poll `stop()` waits for the reading at a window's end."""
UPDATE_S = 1.0
"""The meter updates its readings about once a second (as polled on a real unit): a reading
stands for the time since the previous one, but never for more than this (or one poll, if
longer)."""


def _connect_hint(resource: str, exc: BaseException) -> str:
    """What an operator does about a meter that cannot be opened."""
    if resource.upper().startswith("ASRL") and "Permission denied" in str(exc):
        return ("this user may not open the serial port: add it to the port's group (`sudo "
                "usermod -aG dialout $USER`, then log in again) or install the udev rule of "
                "docs/operator.md (\"The power meter\")")
    return "check the address, the cable and that the meter is on"


@dataclass(frozen=True)
class MeterStats:
    """What the poller has seen so far, for logs, preflight and tests."""

    polls: int
    valid_samples: int
    nan_samples: int
    connects: int
    errors: dict[str, int]
    last_error: str | None
    integrator: bool


class _Dropped(MeterError):
    """The meter closed the connection."""


def _lan_socket(instrument: Any) -> socket.socket | None:
    """The TCP socket under a pyvisa-py LAN (SOCKET) resource with nothing buffered, else
    None (serial, pyvisa-sim, test doubles): the only place that looks inside pyvisa-py."""
    sessions = getattr(getattr(instrument, "visalib", None), "sessions", {})
    raw = sessions.get(getattr(instrument, "session", None)) if isinstance(sessions, dict) else None
    sock = getattr(raw, "interface", None)
    if not isinstance(sock, socket.socket) or getattr(raw, "_pending_buffer", b""):
        return None
    return sock


@dataclass
class _Session:
    """An open resource whose items are configured; `number` counts its sessions."""

    instrument: Any
    number: int
    items: tuple[str, ...]
    integrator: bool


@dataclass
class _Counters:
    polls: int = 0
    valid_samples: int = 0
    nan_samples: int = 0
    connects: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    last_error: str | None = None


class Gpm8213Meter:
    """PowerMeter on a GPM-8213: a poller samples P every `poll_s`, windows average them.

    The constructor connects (MeterError if the meter is unreachable or is not a GPM-8213)
    and starts the poller. `poll_s` should be the meter's update period: it is also how
    long before its reply a sample's value was measured. `resource_manager` defaults to
    pyvisa-py (``@py``); tests pass a pyvisa-sim one or a fake.
    """

    idn: str
    """The meter's answer to `*IDN?` (maker, model, serial, firmware) at the last connect."""

    def __init__(self, resource: str, *, poll_s: float = 1.0, timeout_s: float = 2.0,
                 use_integrator: bool = False, min_coverage: float = 0.5,
                 resource_manager: Any = None) -> None:
        self.resource = resource
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.use_integrator = use_integrator
        self.min_coverage = min_coverage
        self._owns_rm = resource_manager is None
        self._rm = pyvisa.ResourceManager("@py") if resource_manager is None else resource_manager
        self._lock = threading.Lock()
        self._sampled = threading.Condition(self._lock)  # notified with every new sample
        self._samples: collections.deque[Sample] = collections.deque(maxlen=100_000)
        self._counters = _Counters()
        self._window_t0: float | None = None
        self._stopping = threading.Event()
        self._poll_now = threading.Event()  # a window edge: read at once
        try:
            self._session: _Session | None = self._connect()
        except MeterError:
            self._close_rm()
            raise
        except (pyvisa.Error, OSError, ValueError) as exc:
            self._close_rm()
            raise MeterError(f"power meter {resource}: cannot connect ({exc}); "
                             f"{_connect_hint(resource, exc)}") from exc
        self._thread = threading.Thread(target=self._run, name=f"gpm8213:{resource}",
                                        daemon=True)
        self._thread.start()

    # ---- PowerMeter
    def start(self) -> None:
        """Open a window now (and read the meter at once); forget samples too old to matter."""
        with self._lock:
            self._window_t0 = time.monotonic()
            keep_from = self._window_t0 - 2 * (self.poll_s + self.timeout_s)
            while len(self._samples) > 1 and self._samples[1].t_s < keep_from:
                self._samples.popleft()
        self._poll_now.set()

    def stop(self) -> PowerReading:
        """The window's mean power and coverage; MeterError if valid readings cover less
        than `min_coverage` of it, even with the reading at its end (waited for, at most
        `poll_s` + 50 ms, when the readings so far cover less than END_READ_BELOW or the
        integrator is used: a healthy meter polled often keeps the round's critical path
        free of I/O)."""
        with self._lock:  # samples are stamped under it too: none is stamped <= t1 yet missing
            t1 = time.monotonic()
            t0, self._window_t0 = self._window_t0, None
        if t0 is None:
            raise MeterError(f"power meter {self.resource}: stop() without start()")
        max_span_s = max(self.poll_s, UPDATE_S)
        with self._lock:
            samples = list(self._samples)
        mean = window_mean(samples, t0, t1, max_span_s)
        if self.use_integrator:  # the integrator needs a reading asked for after the end
            mean = self._read_end(t1, lambda s: s.sent_s >= t1,
                                  lambda got: self._integrated_or_polled(got, t0, t1))
        elif mean is None or mean.coverage < max(self.min_coverage, END_READ_BELOW):
            # the tail may be what saves a faulty meter's window
            mean = self._read_end(t1, lambda s: s.t_s > t1,
                                  lambda got: window_mean(got, t0, t1, max_span_s))
        if mean is None or mean.coverage < self.min_coverage:
            counters = self.stats()
            covered = 0.0 if mean is None else mean.coverage
            raise MeterError(
                f"power meter {self.resource}: valid readings cover {covered:.0%} of the "
                f"{t1 - t0:.3f} s window, below meter.min_coverage {self.min_coverage:.0%} "
                f"(errors so far {counters.errors}, last: {counters.last_error}); check the "
                "meter and its connection")
        return PowerReading(power_w=mean.power_w, energy_j=mean.power_w * (t1 - t0),
                            duration_s=t1 - t0, samples=mean.samples, coverage=mean.coverage)

    def _integrated_or_polled(self, samples: list[Sample], t0: float,
                              t1: float) -> WindowMean | None:
        """The integrator's mean when it covers enough of the window, else the polled one."""
        integrated = integrated_mean(samples, t0, t1, self._edge_lag_s)
        if integrated is not None and integrated.coverage >= self.min_coverage:
            return integrated
        return window_mean(samples, t0, t1, max(self.poll_s, UPDATE_S))

    @property
    def _edge_lag_s(self) -> float:
        """How long after an edge its reading may come: one poll in flight, then ours."""
        return self.poll_s + EDGE_WAIT_MARGIN_S

    def _read_end(self, t1: float, is_end: Callable[[Sample], bool],
                  mean_of: Callable[[list[Sample]], WindowMean | None]) -> WindowMean | None:
        """Ask for a reading now and wait (at most `_edge_lag_s`) for one that `is_end`;
        the window's mean from the samples then."""
        self._poll_now.set()
        with self._sampled:
            self._sampled.wait_for(lambda: self._samples and is_end(self._samples[-1]),
                                   timeout=self._edge_lag_s)
            samples = list(self._samples)
        return mean_of(samples)

    def close(self) -> None:
        """Stop the poller (it finishes its query: up to `timeout_s`) and release the port."""
        self._stopping.set()
        self._poll_now.set()
        self._thread.join(self.timeout_s + self.poll_s + 1.0)
        self._close_rm()  # closes the session too, should the poller still be stuck in it

    def stats(self) -> MeterStats:
        with self._lock:
            return self._stats()

    # ---- connection
    def _open_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "read_termination": TERMINATION, "write_termination": TERMINATION,
            "timeout": int(self.timeout_s * 1000),
            "open_timeout": int(self.timeout_s * 1000),  # pyvisa-py waits 10 s to connect
            "encoding": "latin-1",  # noise must reach the parser, not fail in decoding
        }
        if self.resource.upper().startswith("ASRL"):
            kwargs.update(data_bits=8, parity=constants.Parity.none,
                          stop_bits=constants.StopBits.one)
        return kwargs

    def _connect(self) -> _Session:
        """Open the resource, check it is a GPM-8213 and set up its numeric items."""
        instrument = self._rm.open_resource(self.resource, **self._open_kwargs())
        try:
            idn = instrument.query("*IDN?").strip()
            if not is_gpm8213(idn):
                raise MeterError(f"power meter {self.resource} answered *IDN? with {idn!r}, "
                                 "not a GPM-8213; check the meter's address or port")
            items = INTEGRATOR_ITEMS if self.use_integrator else ITEMS
            instrument.write(f":NUMERIC:NORMAL:NUMBER {len(items)}")
            for k, item in enumerate(items, start=1):
                instrument.write(f":NUMERIC:NORMAL:ITEM{k} {item}")
            integrator = self._check_header(instrument.query(":NUMERIC:NORMAL:HEADER?"), items)
            if integrator:
                for command in INTEGRATOR_SETUP:
                    instrument.write(command)
        except BaseException:
            instrument.close()
            raise
        with self._lock:
            self._counters.connects += 1
            number = self._counters.connects
        logger.info("power meter %s: %s, items %s", self.resource, idn, ",".join(items))
        self.idn = idn
        return _Session(instrument, number, items, integrator)

    def _check_header(self, reply: str, items: tuple[str, ...]) -> bool:
        """MeterError unless the meter names the items we set; True if WH and TIME took too."""
        core, took = header_matches(reply, items)
        if not core:
            raise MeterError(
                f"power meter {self.resource}: the numeric items did not take effect "
                f"(:NUMERIC:NORMAL:HEADER? answered {reply.strip()!r}, expected "
                f"{','.join(HEADER_NAMES[item] for item in items)!r}); is the meter in remote "
                "mode with headers off?")
        if not self.use_integrator:
            return False
        if not took:
            logger.warning("power meter %s: no integrator items (header %r); using the polled "
                           "samples for energy", self.resource, reply.strip())
        return took

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.instrument.close()
            except (pyvisa.Error, OSError) as exc:
                logger.debug("power meter %s: closing: %s", self.resource, exc)

    def _close_rm(self) -> None:
        if self._owns_rm:
            self._rm.close()
            self._owns_rm = False

    # ---- poller
    def _run(self) -> None:
        """Poll until closed; on any failure drop the session and reconnect with backoff.

        A window's edge cuts the backoff short: a meter back after a restart (an emulated
        vBS restarted by the watchdog, a meter power-cycled) is found by the next round, not
        seconds later. Only the first failure of a streak of refused reconnects is logged.
        Every exception is caught on purpose: a dead poller would silently invalidate every
        later round, so unexpected ones are logged with their traceback and retried too.
        """
        backoff_s, failed_connects = self.poll_s, 0
        while not self._stopping.is_set():
            if self._session is None:
                try:
                    self._session = self._connect()
                    backoff_s, failed_connects = self.poll_s, 0
                except Exception as exc:  # noqa: BLE001 - see the docstring
                    self._note_error("connect", exc, log=failed_connects == 0)
                    failed_connects += 1
                    self._poll_now.wait(backoff_s)
                    self._poll_now.clear()
                    backoff_s = min(2 * backoff_s, max(self.poll_s, BACKOFF_MAX_S))
                    continue
            began = time.monotonic()
            try:
                self._poll(self._session)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                self._note_error(_error_kind(exc), exc)
                self._drop_session()
            self._poll_now.wait(max(0.0, self.poll_s - (time.monotonic() - began)))
            self._poll_now.clear()
        self._drop_session()

    def _poll(self, session: _Session) -> None:
        sent_s = time.monotonic()
        values = dict(zip(session.items, parse_values(self._query_value(session.instrument),
                                                      len(session.items))))
        with self._lock:
            sample = Sample(time.monotonic(), values["P"], values.get("WH", math.nan),
                            values.get("TIME", math.nan), session.number, sent_s)
            self._samples.append(sample)
            self._sampled.notify_all()
            self._counters.polls += 1
            if math.isfinite(sample.power_w):
                self._counters.valid_samples += 1
            else:
                self._counters.nan_samples += 1

    def _query_value(self, instrument: Any) -> str:
        """The value query's reply. On a LAN socket the driver waits for the reply itself,
        so that a connection the meter closes raises `_Dropped` at once: pyvisa-py would
        read an empty socket until `timeout_s` and report a timeout."""
        sock = _lan_socket(instrument)
        if sock is None:
            return instrument.query(VALUE_QUERY)
        instrument.write(VALUE_QUERY)
        readable, _, _ = select.select([sock], [], [], self.timeout_s)
        if not readable:
            raise pyvisa.VisaIOError(constants.StatusCode.error_timeout)
        if sock.recv(1, socket.MSG_PEEK) == b"":
            raise _Dropped("the meter closed the connection")
        return instrument.read()

    def _note_error(self, kind: str, exc: BaseException, *, log: bool = True) -> None:
        expected = isinstance(exc, pyvisa.Error | OSError | ValueError | MeterError)
        if log or not expected:
            logger.warning("power meter %s: %s: %s", self.resource, kind, exc,
                           exc_info=not expected)
        with self._lock:
            self._counters.errors[kind] += 1
            self._counters.last_error = f"{kind}: {exc}"

    def _stats(self) -> MeterStats:
        c = self._counters
        session = self._session
        return MeterStats(polls=c.polls, valid_samples=c.valid_samples,
                          nan_samples=c.nan_samples, connects=c.connects,
                          errors=dict(c.errors), last_error=c.last_error,
                          integrator=session is not None and session.integrator)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, _Dropped):
        return "dropped"
    if isinstance(exc, BadReply):
        return "garbage"
    if isinstance(exc, pyvisa.VisaIOError) and exc.error_code == constants.StatusCode.error_timeout:
        return "timeout"
    return "io"
