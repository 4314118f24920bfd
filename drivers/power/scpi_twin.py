"""A GPM-8213 twin: the meter's SCPI dialect over raw TCP, serving a modelled power.

The real meter listens on a raw TCP socket and answers CR LF terminated SCPI lines, so a
twin on a socket lets the real driver (pyvisa, pyvisa-py, `TCPIP0::host::port::SOCKET`)
run unchanged in CI: the emulated vBS serves its modelled power through it, and tests
inject the faults a lab sees (NAN readings, a meter that stops answering, line noise, a
dropped connection).

It answers the commands `Gpm8213Meter` sends, in long or short form and any case:
``*IDN?``, ``:NUMeric:NORMal:NUMBer n``, ``:NUMeric:NORMal:ITEM<k> <item>``,
``:NUMeric:NORMal:HEADer?``, ``:NUMeric:NORMal:VALue?``, ``:INTEGrate:{STARt|STOP|RESet}``,
``:INTEGrate:MODE m``, ``:INTEGrate:FUNCtion f`` and ``:SYSTem:ERRor?``. As on an SCPI
instrument, a command without ``?`` has no reply: a bad one goes to the error queue that
``:SYSTem:ERRor?`` reads. An unknown query is answered with its error, so a client sees it.

The electrical items are derived from the source's power alone: U = 230 V, 50 Hz, power
factor 0.6, no current frequency (``fI`` is NAN, as on the real unit's transcript).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import math
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable

from drivers.power.gpm8213_scpi import HEADER_NAMES, ITEMS
from drivers.protocols import PowerSource

logger = logging.getLogger(__name__)

IDN = "GWInstek,GPM-8213,TWIN0001,V1.05"
VOLTAGE_V = 230.0
FREQUENCY_HZ = 50.0
POWER_FACTOR = 0.6
MAX_ITEMS = 16
GARBAGE_LINE = "\x15#@!\xff\xfe 12.3E+\x00"
"""What a line hit by noise might look like: no numbers, bytes outside ASCII."""
UNDEFINED_HEADER = '-113,"Undefined header"'
ILLEGAL_PARAMETER = '-224,"Illegal parameter value"'
NO_ERROR = '0,"No error"'


class Fault(enum.Enum):
    """What the twin does instead of answering a ``:NUMeric:NORMal:VALue?`` query."""

    NAN = "every item NAN, as a meter without a valid measurement answers"
    DELAY = "answer only after `fault_delay_s`, so the client times out first"
    GARBAGE = "a line of noise instead of numbers"
    DROP = "close the connection without answering"


def _command(template: str) -> re.Pattern[str]:
    """A regex for an SCPI command written with its mnemonics as in the manual.

    Each mnemonic ``NUMeric`` accepts its long (NUMERIC) and short (NUM) form, any case;
    the leading colon is optional.
    """
    body = re.sub(r"([A-Z]+)([a-z]+)", lambda m: f"{m[1]}(?:{m[2].upper()})?",
                  template.removeprefix(":"))
    return re.compile(rf":?{body}", re.IGNORECASE)


_IDN = _command(r"\*IDN\?")
_NUMBER = _command(r":NUMeric:NORMal:NUMBer (\d+)")
_ITEM = _command(r":NUMeric:NORMal:ITEM(\d+) (\w+)")
_HEADER = _command(r":NUMeric:NORMal:HEADer\?")
_VALUE = _command(r":NUMeric:NORMal:VALue\?")
_INTEG_START = _command(r":INTEGrate:STARt")
_INTEG_STOP = _command(r":INTEGrate:STOP")
_INTEG_RESET = _command(r":INTEGrate:RESet")
_INTEG_MODE = _command(r":INTEGrate:MODE (?:NORMal|MANual|CONTinuous)")
_INTEG_FUNCTION = _command(r":INTEGrate:FUNCtion (?:WATT|AMPere)")
_SYSTEM_ERROR = _command(r":SYSTem:ERRor\?")


def nr3(value: float) -> str:
    """A number as the meter prints it: engineering notation, 5 significant digits, or NAN."""
    if not math.isfinite(value):
        return "NAN"
    if value == 0:
        return "0.0000E+00"
    exponent = 3 * math.floor(math.log10(abs(value)) / 3)
    mantissa = value / 10.0**exponent
    text = f"{mantissa:.{max(0, 5 - len(str(int(abs(mantissa)))))}f}"
    if abs(float(text)) >= 1000:  # rounding carried into the next group: 999.996 -> 1.0000E+03
        return nr3(float(text) * 10.0**exponent)
    return f"{text}E{exponent:+03d}"


class ScpiMeterTwin:
    """A threaded TCP server that answers like a GPM-8213 whose load draws `source`'s power.

    ``P`` is the source's mean power since the previous reading (the last one again when no
    time has passed, as a meter repeats its last update); ``WH`` and ``TIME`` integrate the
    source's energy and TTIs while the integrator runs. `source` is called from the
    twin's connection threads, under the twin's lock: its other users must not race it.
    """

    def __init__(self, source: PowerSource, host: str = "127.0.0.1", port: int = 0, *,
                 fault_delay_s: float = 1.0) -> None:
        self.source = source
        self.fault_delay_s = fault_delay_s
        self._lock = threading.Lock()
        self._items: dict[int, str] = dict(enumerate(ITEMS, start=1))
        self._number = len(ITEMS)
        self._power_w = math.nan
        self._integrating = False
        self._energy_wh = 0.0
        self._integrated_s = 0.0
        self._errors: collections.deque[str] = collections.deque(maxlen=32)
        self._faults: collections.deque[Fault] = collections.deque()
        self._every: dict[Fault, int] = {}  # periodic faults: every n-th value query
        self._value_queries = 0
        self._connections: set[socket.socket] = set()
        self._routes = self._route_table()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def resource(self) -> str:
        """The VISA resource string a driver opens to reach this twin."""
        host, port = self.address
        return f"TCPIP0::{host}::{port}::SOCKET"

    def start(self) -> ScpiMeterTwin:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"scpi-twin:{self.address[1]}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and hang up on every client, as a meter switched off would."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # the client has gone already
                conn.shutdown(socket.SHUT_RDWR)

    # ---- fault injection (tests)
    def inject(self, fault: Fault, times: int = 1) -> None:
        """Answer the next `times` value queries with `fault` instead of a reading."""
        with self._lock:
            self._faults.extend([fault] * times)

    def inject_every(self, fault: Fault, n: int) -> None:
        """From now on, answer every `n`-th value query with `fault` (the first fault listed
        in `Fault` wins where periods meet); injected faults come first."""
        with self._lock:
            self._every[fault] = n

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._every.clear()

    # ---- the instrument
    def answer(self, command: str) -> str | None:
        """The reply line to one command (without CR LF); None for a command (no ``?``)."""
        command = command.strip()
        with self._lock:
            for pattern, handler in self._routes:
                match = pattern.fullmatch(command)
                if match:
                    return handler(*match.groups())
            if command.endswith("?"):
                return UNDEFINED_HEADER
            self._errors.append(UNDEFINED_HEADER)
            return None

    def _respond(self, command: str) -> str | None:
        """The reply to one line as the socket sees it: `answer`, unless a fault is due.

        Raises `_HangUp` for a DROP fault. The DELAY sleep holds no lock, so other
        connections (the client reconnecting after its timeout) are served meanwhile.
        """
        with self._lock:
            fault = self._next_fault() if _VALUE.fullmatch(command) else None
            nan_reply = ",".join(["NAN"] * self._number)
            if fault is Fault.NAN:
                self._pull_source()  # the time this reading stands for is lost, not deferred
        if fault is Fault.DROP:
            raise _HangUp
        if fault is Fault.DELAY:
            time.sleep(self.fault_delay_s)
        if fault is Fault.NAN:
            return nan_reply
        if fault is Fault.GARBAGE:
            return GARBAGE_LINE
        return self.answer(command)

    def _next_fault(self) -> Fault | None:
        """The fault due for this value query (under the lock)."""
        self._value_queries += 1
        if self._faults:
            return self._faults.popleft()
        return next((f for f in Fault if f in self._every
                     and self._value_queries % self._every[f] == 0), None)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _route_table(self) -> list[tuple[re.Pattern[str], Callable[..., str | None]]]:
        return [
            (_IDN, lambda: IDN),
            (_NUMBER, self._set_number),
            (_ITEM, self._set_item),
            (_HEADER, lambda: ",".join(HEADER_NAMES[self._items[k]]
                                       for k in range(1, self._number + 1))),
            (_VALUE, self._values),
            (_INTEG_START, lambda: self._integrate(True)),
            (_INTEG_STOP, lambda: self._integrate(False)),
            (_INTEG_RESET, self._reset_integrator),
            (_INTEG_MODE, lambda: None),  # the twin integrates until STOP in every mode
            (_INTEG_FUNCTION, lambda: None),  # only WATT is modelled (WH)
            (_SYSTEM_ERROR, lambda: self._errors.popleft() if self._errors else NO_ERROR),
        ]

    def _set_number(self, count: str) -> None:
        if 1 <= int(count) <= MAX_ITEMS:
            self._number = int(count)
            for k in range(1, self._number + 1):
                self._items.setdefault(k, "P")
        else:
            self._errors.append(ILLEGAL_PARAMETER)

    def _set_item(self, index: str, item: str) -> None:
        if 1 <= int(index) <= MAX_ITEMS and item.upper() in HEADER_NAMES:
            self._items[int(index)] = item.upper()
        else:
            self._errors.append(ILLEGAL_PARAMETER)

    def _pull_source(self) -> None:
        """Take the source's power since the previous pull; integrate it while running."""
        power_w, energy_j, ttis = self.source.read_power()
        if math.isfinite(power_w):
            self._power_w = power_w
        if self._integrating:
            self._energy_wh += energy_j / 3600.0
            self._integrated_s += ttis * 1e-3

    def _integrate(self, running: bool) -> None:
        self._pull_source()  # energy before STARt (or after STOP) is not integrated
        self._integrating = running

    def _reset_integrator(self) -> None:
        self._integrating = False
        self._energy_wh = self._integrated_s = 0.0

    def _values(self) -> str:
        self._pull_source()
        power_w = self._power_w
        apparent_va = power_w / POWER_FACTOR
        by_item = {
            "U": VOLTAGE_V, "I": apparent_va / VOLTAGE_V, "P": power_w, "S": apparent_va,
            "Q": math.sqrt(apparent_va**2 - power_w**2), "FU": FREQUENCY_HZ, "FI": math.nan,
            "LAMBDA": POWER_FACTOR if math.isfinite(power_w) else math.nan,
            "WH": self._energy_wh, "TIME": self._integrated_s,
        }
        return ",".join(nr3(by_item[self._items[k]]) for k in range(1, self._number + 1))


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], twin: ScpiMeterTwin) -> None:
        self.twin = twin
        super().__init__(address, _Connection)

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("meter twin: connection from %s ended with an error", client_address,
                     exc_info=True)


class _HangUp(Exception):
    """A DROP fault: close this connection without answering."""


class _Connection(socketserver.StreamRequestHandler):
    """One client: CR LF (or bare LF) terminated lines in, CR LF terminated replies out."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.twin._track(self.request, True)

    def finish(self) -> None:
        self.server.twin._track(self.request, False)
        super().finish()

    def handle(self) -> None:
        for raw in self.rfile:
            command = raw.decode("latin-1").strip()
            if not command:
                continue
            try:
                reply = self.server.twin._respond(command)
            except _HangUp:
                return  # the server closes the socket
            if reply is not None:
                self.wfile.write(reply.encode("latin-1") + b"\r\n")
