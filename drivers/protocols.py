"""Capabilities the round engine asks for. It never asks for a class (labgrid-style).

Each real driver and its emulated twin implement one of these over the same wire format, so
CI exercises the code paths a lab uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.rtctl.messages import PingReply, WindowReply


class RanControl(Protocol):
    """Thresholds in, KPI windows out (rtctl v1; spec in patches/PROTOCOL.md).

    `set`/`get`/`reset` close the KPI window, so one `set` at the start of a round and one
    `get` at its end measure exactly the round under its own policy.
    """

    endpoint: str

    def ping(self) -> PingReply: ...

    def set(self, thresholds: Mapping[str, Any]) -> WindowReply: ...

    def get(self) -> WindowReply: ...

    def reset(self) -> WindowReply: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PowerReading:
    """Mean power over a measurement window; `samples` counts meter readings behind it and
    `coverage` is the share of the window they stand for (1 for a meter that integrates)."""

    power_w: float
    energy_j: float
    duration_s: float
    samples: int
    coverage: float = 1.0


class PowerSource(Protocol):
    """Where a meter twin gets its watts from (the emulated vBS's power model)."""

    def read_power(self) -> tuple[float, float, int]:
        """(mean W, energy J, TTIs) since the previous call; NaN W if no time passed."""
        ...


class PowerMeter(Protocol):
    """A wall-power meter on the BBU + radio supply (GPM-8213 or its twin)."""

    def start(self) -> None:
        """Begin a measurement window (the round's policy has just been applied)."""

    def stop(self) -> PowerReading:
        """End the window and return its mean power; raises MeterError if unusable."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str


class ProcessHost(Protocol):
    """A machine of the testbed that runs processes for us (over SSH, or locally).

    Processes are started under a name; the host tracks their PIDs, so `stop` and
    `is_running` never guess with pattern matching, and their output goes to a log file
    that `tail` reads.
    """

    name: str

    def run(self, command: str, *, timeout_s: float = 30.0, check: bool = True) -> CommandResult:
        """Run a one-off command to completion; HilError on timeout or (check) non-zero exit."""

    def put_text(self, text: str, remote_path: str, *, mode: int = 0o644) -> None:
        """Write a file (a rendered config) on the host, atomically."""

    def start(self, name: str, command: str, *, netns: str | None = None,
              env: Mapping[str, str] | None = None) -> int:
        """Start a long-running process in the background; returns its PID."""

    def is_running(self, name: str) -> bool: ...

    def stop(self, name: str, *, timeout_s: float = 10.0) -> None:
        """SIGTERM its process group, then SIGKILL after timeout_s; returns once no process
        of the group runs (a shell's children may write on after the shell ended); no
        error if it is not running."""

    def tail(self, name: str, lines: int = 50) -> str:
        """The last lines of the process's log."""

    def close(self) -> None: ...


class RoundProbe(Protocol):
    """Something else the testbed does or measures each round, beside control and power:
    host CPU and RAPL, the traffic demand, the bring-up's watchdog.

    `before_round` runs first in a round, before its thresholds are sent (it may restart a
    dead process, or set the round's demand); `after_round` ends the round and returns the
    columns it adds to the round's row (names from `hil.schema`). HilError from either
    makes the round invalid with that reason.
    """

    def before_round(self, round_index: int) -> None: ...

    def after_round(self) -> dict[str, Any]: ...
