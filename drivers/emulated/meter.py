"""The emulated vBS's own light meter: the fastest way to read its modelled power.

For accelerated runs (a round of a few ms) a polling meter is too coarse, so the emulated vBS
also answers, on a ZMQ socket, the GPM-8213 numeric query as a meter set up with three items
would: ``P`` (mean W), ``WH`` and ``TIME`` (s), integrated since the previous
query, in NR3 ASCII, ``NAN`` where no time has passed. `EmulatedMeter` is the controller side.
The real GPM-8213 path (pyvisa driver and SCPI twin) is `drivers/power/`.
"""

from __future__ import annotations

import math

import zmq

from drivers.power.gpm8213_scpi import parse_values
from drivers.power.scpi_twin import nr3
from drivers.protocols import PowerReading, PowerSource
from hil.base.errors import MeterError

IDN = "GWInstek,GPM-8213,EMULATED,V0"
VALUE_QUERY = b":NUMERIC:NORMAL:VALUE?"


def serve_meter_request(source: PowerSource, raw: bytes) -> bytes:
    """Answer one query; unknown commands get an SCPI-style error string."""
    query = raw.strip().upper()
    if query == b"*IDN?":
        return IDN.encode()
    if query == VALUE_QUERY:
        power, energy_j, ttis = source.read_power()
        return ",".join((nr3(power), nr3(energy_j / 3600.0), nr3(ttis / 1000.0))).encode()
    return b'-113,"Undefined header"'


class EmulatedMeter:
    """PowerMeter over the emulated vBS's meter socket.

    `start` only has to reset the integration period, so it does not wait for the answer
    (a DEALER socket; the answer is discarded by the next exchange): the round's critical
    path keeps one round trip fewer, which is most of the cost of an accelerated round.
    Answers come back in order, so the next exchange first drains the ones still owed.
    """

    def __init__(self, endpoint: str, *, timeout_s: float = 0.5, stepped: bool = False,
                 context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.stepped = stepped
        self.timeout_ms = int(timeout_s * 1000)
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._owed = 0  # answers to queries sent without waiting

    def _send(self, command: bytes) -> None:
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.DEALER)
            self._sock.linger = 0
            self._sock.connect(self.endpoint)
        self._sock.send_multipart([b"", command])  # empty delimiter, as a REQ would send

    def _receive(self) -> str:
        assert self._sock is not None
        if not self._sock.poll(self.timeout_ms, zmq.POLLIN):
            self.close()  # start afresh: answers still owed would be out of step
            raise MeterError(
                f"power meter at {self.endpoint} did not answer within {self.timeout_ms} ms; "
                "is the emulated vBS running?")
        return self._sock.recv_multipart()[-1].decode(errors="replace")

    def _query(self, command: bytes) -> str:
        self._send(command)
        while self._owed:
            self._receive()
            self._owed -= 1
        return self._receive()

    def identity(self) -> str:
        return self._query(b"*IDN?")

    def start(self) -> None:
        """Reset the integration period (the answer is not needed). On a stepped clock the
        emulator resets it when the round's thresholds apply, and a reset sent here could
        reach it after the `get` that simulates the round, so none is sent."""
        if self.stepped:
            return
        self._send(VALUE_QUERY)
        self._owed += 1

    def stop(self) -> PowerReading:
        values = parse_values(self._query(VALUE_QUERY), 3)
        power_w, energy_wh, time_s = values
        if not all(math.isfinite(v) for v in values) or time_s <= 0:
            raise MeterError(f"meter at {self.endpoint} has no reading for this window (NAN)")
        return PowerReading(power_w=power_w, energy_j=energy_wh * 3600.0, duration_s=time_s,
                            samples=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._owed = 0
