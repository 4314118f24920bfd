"""How well the GPM-8213 driver measures round windows, healthy or under faults.

The real driver (pyvisa-py over TCP) reads the SCPI twin, whose load draws a power that
changes at every window start, as a new policy would: each window's true mean is the power
set for it. A fault plan makes the twin answer NaN, answer late or hang up on every n-th
value query. `hil bench` prints the figures and RELIABILITY.md tabulates them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from drivers.power.gpm8213 import Gpm8213Meter
from drivers.power.scpi_twin import Fault, ScpiMeterTwin
from hil.base.errors import MeterError


@dataclass(frozen=True)
class FaultPlan:
    """Every n-th value query answered with a fault (0: never)."""

    nan_every: int = 0
    delay_every: int = 0
    delay_s: float = 0.2
    drop_every: int = 0

    def apply(self, twin: ScpiMeterTwin) -> None:
        for fault, every in ((Fault.NAN, self.nan_every), (Fault.DELAY, self.delay_every),
                             (Fault.DROP, self.drop_every)):
            if every:
                twin.inject_every(fault, every)


HEALTHY = FaultPlan()
FAULTY = FaultPlan(nan_every=3, delay_every=5, delay_s=0.2, drop_every=7)
"""NaN on every 3rd reply, a 200 ms late answer on every 5th, a hang-up on every 7th."""


class SteppedPower:
    """A PowerSource whose power holds until `set`; `read_power` gives the exact mean since
    the previous read (energy integrated over the wall clock)."""

    def __init__(self, power_w: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._power_w = power_w
        self._t = self._read_t = time.monotonic()
        self._energy_j = 0.0

    def set(self, power_w: float) -> None:
        with self._lock:
            self._advance()
            self._power_w = power_w

    def read_power(self) -> tuple[float, float, int]:
        with self._lock:
            self._advance()
            elapsed_s, energy_j = self._t - self._read_t, self._energy_j
            self._read_t, self._energy_j = self._t, 0.0
        mean_w = energy_j / elapsed_s if elapsed_s > 0 else float("nan")
        return mean_w, energy_j, round(elapsed_s * 1000)

    def _advance(self) -> None:
        now = time.monotonic()
        self._energy_j += self._power_w * (now - self._t)
        self._t = now


@dataclass(frozen=True)
class WindowCheck:
    windows: int
    valid: int
    max_error_w: float    # over the valid windows: |measured - true mean|
    mean_coverage: float  # over the valid windows

    @property
    def valid_share(self) -> float:
        return self.valid / self.windows


def check_windows(*, windows: int, window_s: float, poll_s: float, plan: FaultPlan,
                  use_integrator: bool = False, min_coverage: float = 0.5,
                  seed: int = 0) -> WindowCheck:
    """Measure `windows` back-to-back windows of `window_s`, each at a new power drawn from
    9-16 W (the testbed's range), as the round engine does: power set, window opened,
    window closed."""
    rng = np.random.default_rng(seed)
    source = SteppedPower(float(rng.uniform(9.0, 16.0)))
    twin = ScpiMeterTwin(source, fault_delay_s=plan.delay_s).start()
    meter = Gpm8213Meter(twin.resource, poll_s=poll_s, timeout_s=max(0.5, 2 * plan.delay_s),
                         use_integrator=use_integrator, min_coverage=min_coverage)
    driver_log = logging.getLogger(Gpm8213Meter.__module__)
    level = driver_log.level
    driver_log.setLevel(logging.ERROR)  # the faults are injected: a warning each is noise
    try:
        time.sleep(2 * poll_s)
        plan.apply(twin)
        errors, coverages = [], []
        for _ in range(windows):
            power_w = float(rng.uniform(9.0, 16.0))
            source.set(power_w)
            meter.start()
            time.sleep(window_s)
            try:
                reading = meter.stop()
            except MeterError:
                continue
            errors.append(abs(reading.power_w - power_w))
            coverages.append(reading.coverage)
    finally:
        driver_log.setLevel(level)
        meter.close()
        twin.close()
    return WindowCheck(windows, len(errors), max(errors, default=float("nan")),
                       float(np.mean(coverages)) if coverages else float("nan"))
