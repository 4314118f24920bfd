"""Capabilities the round engine asks for. It never asks for a class (labgrid-style).

Each real driver and its emulated twin implement one of these over the same wire format, so
CI exercises the code paths a lab uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class RanControl(Protocol):
    """Thresholds in, KPI windows out (rtctl v1; spec in patches/PROTOCOL.md).

    `set`/`get`/`reset` close the KPI window, so one `set` at the start of a round and one
    `get` at its end measure exactly the round under its own policy.
    """

    endpoint: str

    def ping(self) -> Any: ...

    def set(self, thresholds: Mapping[str, Any]) -> Any: ...

    def get(self) -> Any: ...

    def reset(self) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PowerReading:
    """Mean power over a measurement window; `samples` counts meter readings behind it."""

    power_w: float
    energy_j: float
    duration_s: float
    samples: int


class PowerMeter(Protocol):
    """A wall-power meter on the BBU + radio supply (GPM-8213 or its twin)."""

    def start(self) -> None:
        """Begin a measurement window (the round's policy has just been applied)."""

    def stop(self) -> PowerReading:
        """End the window and return its mean power; raises MeterError if unusable."""

    def close(self) -> None: ...
