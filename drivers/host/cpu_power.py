"""A power "meter" for testbeds without one: the BBU's watts modelled from its CPU load.

For a ZMQ testbed on a workstation (no GPM-8213 on its supply) the reward still needs
watts that respond to the policy. srsENB's CPU load does (decoding effort grows with MCS
and PRBs), so this meter reports ``idle_w + per_core_w * busy cores + radio_w`` over the
round, the busy cores measured with psutil on this machine: all of it, or only `process`
and its children (on a one-machine ZMQ testbed the UE, the core and the controller share
the host; a BBU host runs the eNB alone). It is a model, not a measurement: run.json
records `meter.kind: cpu_model`, and its coefficients come from the config (fit them
against a real meter with the dataset tools).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from drivers.host.metrics import HostMetrics
from drivers.protocols import PowerReading
from hil.base.errors import MeterError


@dataclass
class CpuPowerModel:
    idle_w: float
    per_core_w: float
    radio_w: float
    process: str | None = None
    """Count only this process's CPU (None: the whole host's)."""
    cpu_count: int = field(default_factory=lambda: psutil.cpu_count() or 1)

    def __post_init__(self) -> None:
        names = () if self.process is None else (self.process,)
        self.metrics = HostMetrics(*names, powercap_root=None)

    def start(self) -> None:
        self.metrics.start()

    def stop(self) -> PowerReading:
        reading = self.metrics.stop()
        if reading.host_cpu_pct is None:
            raise MeterError("cpu_model meter: the round was too short to measure CPU load "
                             "(no clock tick); use rounds of at least 0.05 s")
        busy_pct = reading.host_cpu_pct if self.process is None else reading.process_cpu_pct
        if busy_pct is None:
            raise MeterError(f"cpu_model meter: no process {self.process!r} ran in the round "
                             "(meter.process); is the eNB up?")
        busy_cores = busy_pct / 100.0 * self.cpu_count
        power_w = self.idle_w + self.per_core_w * busy_cores + self.radio_w
        return PowerReading(power_w=power_w, energy_j=power_w * reading.duration_s,
                            duration_s=reading.duration_s, samples=1)

    def close(self) -> None:
        self.metrics.close()
