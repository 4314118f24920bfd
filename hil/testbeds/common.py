"""What every kind of testbed uses: SSH sessions to its hosts, the meter, CURVE keys for
rtctl, endpoints as the controller sees them, and the host probes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from drivers.emulated.meter import EmulatedMeter
from drivers.host.cpu_power import CpuPowerModel
from drivers.host.metrics import HostMetrics
from drivers.power.gpm8213 import Gpm8213Meter
from drivers.protocols import PowerMeter, PowerReading, RoundProbe
from drivers.rtctl.curve import ClientCurve
from drivers.ssh import SshHost
from hil.config import HilConfig, HostConfig
from hil.probes import HostMetricsProbe


def connect_host(name: str, host: HostConfig) -> SshHost:
    """An SSH session to the host; a local twin sshd (`local_sshd`) is started first unless
    it runs, so that `hil run` works without `make` having started it."""
    if host.local_sshd is not None:
        from drivers.emulated.sshd import ensure_running  # OpenSSH's sshd: only for the twin

        ensure_running(host.local_sshd, host.port)
    return SshHost(
        name, host.hostname, port=host.port, username=host.username,
        key_path=None if host.key_path is None else str(host.key_path), use_agent=host.use_agent,
        known_hosts_path=None if host.known_hosts_path is None else str(host.known_hosts_path),
        trust_unknown_host=host.trust_unknown_host, state_dir=host.state_dir)


def home_of(host: SshHost) -> str:
    """The host user's home directory (programs started there do not expand ``~``)."""
    return host.run("cd && pwd", timeout_s=10).stdout.strip()


def as_seen_from_controller(ready: dict, hostname: str) -> dict:
    """Endpoints an emulator on `hostname` bound to a wildcard address, with that host's name.

    An emulator on a lab host binds e.g. ``tcp://0.0.0.0:5555`` to be reachable; the
    controller connects to that host, not to 0.0.0.0.
    """
    def seen(value: object) -> object:
        if not isinstance(value, str):
            return value
        for wildcard in ("0.0.0.0", "*"):
            value = value.replace(f"//{wildcard}:", f"//{hostname}:").replace(
                f"::{wildcard}::", f"::{hostname}::")
        return value
    return {key: seen(value) for key, value in ready.items()}


def make_meter(cfg: HilConfig, emulator_ready: dict) -> PowerMeter:
    """The configured meter; a GPM-8213 without a resource is the emulated vBS's twin."""
    if cfg.meter.kind == "cpu_model":
        return CpuPowerModel(cfg.meter.idle_w, cfg.meter.per_core_w, cfg.meter.radio_w,
                             process=cfg.meter.process)
    if cfg.meter.kind == "gpm8213":
        resource = cfg.meter.resource or emulator_ready.get("scpi_meter")
        meter = Gpm8213Meter(resource, poll_s=cfg.meter.poll_s, timeout_s=cfg.meter.timeout_s,
                             use_integrator=cfg.meter.use_integrator,
                             min_coverage=cfg.meter.min_coverage)
        return meter if cfg.clock.speedup == 1.0 else AcceleratedMeter(meter, cfg.clock.speedup)
    return EmulatedMeter(emulator_ready["meter"], timeout_s=cfg.meter.timeout_s,
                         stepped=cfg.clock.mode == "stepped")


@dataclass
class AcceleratedMeter:
    """A wall-clock meter on an accelerated testbed: its windows in emulated time.

    A GPM-8213 times its windows on the wall clock; when the emulated vBS runs `speedup`
    times faster, a window of w wall seconds is w * speedup seconds of the testbed's time,
    which is what energy is recorded in (the emulated meter counts TTIs already).
    """

    meter: PowerMeter
    speedup: float

    def start(self) -> None:
        self.meter.start()

    def stop(self) -> PowerReading:
        reading = self.meter.stop()
        return dataclasses.replace(reading, energy_j=reading.energy_j * self.speedup,
                                   duration_s=reading.duration_s * self.speedup)

    def close(self) -> None:
        self.meter.close()


def client_curve(cfg: HilConfig) -> ClientCurve | None:
    return None if cfg.vbs.curve_dir is None else ClientCurve.from_dir(cfg.vbs.curve_dir)


def host_probes(cfg: HilConfig) -> list[RoundProbe]:
    if not cfg.host_metrics.enabled:
        return []
    names = [cfg.host_metrics.process, cfg.host_metrics.ue_process]
    return [HostMetricsProbe(HostMetrics(*[n for n in names if n]))]
