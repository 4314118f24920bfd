"""Bring a testbed up from its config and hand the engine its capabilities.

For the emulated testbed that means: start the emulated vBS as a separate process, on this
machine or on a configured host over SSH (`vbs.host`), wait for the line in which it reports
the endpoints it bound, connect the rtctl client and the meter. Teardown always stops the
process, also after a crash of the controller's own code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from drivers.emulated.meter import EmulatedMeter
from drivers.host.cpu_power import CpuPowerModel
from drivers.host.metrics import HostMetrics
from drivers.power.gpm8213 import Gpm8213Meter
from drivers.protocols import PowerMeter, PowerReading, RanControl, RoundProbe
from drivers.rtctl.client import RtctlClient
from drivers.rtctl.curve import ClientCurve
from drivers.ssh import ConnectionLostError, SshError, SshHost
from hil import srsran
from hil.base.errors import HilError
from hil.base.repo import REPO
from hil.base.scenarios import make_scenario
from hil.config import HilConfig, HostConfig
from hil.probes import HostMetricsProbe, TrafficProbe, WatchdogProbe

EMULATOR = "emulated-vbs"  # the process name on an SSH host
IDLE_EXIT_S = 60.0
ALIVE_CHECK_S = 1.0  # how often a thread asks the BBU host whether the emulated vBS runs
"""An emulated vBS on an SSH host exits after this long without a control request."""
log = logging.getLogger(__name__)
_T = TypeVar("_T")


class TestbedError(HilError):
    """The testbed could not be brought up."""


@dataclass
class Testbed:
    ran: RanControl
    meter: PowerMeter
    stop_vbs: Callable[[], None]
    probes: list[RoundProbe] = dataclasses.field(default_factory=list)

    def close(self) -> None:
        try:
            self.ran.close()
            self.meter.close()
        finally:
            self.stop_vbs()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emulator_command(cfg: HilConfig, python: str = sys.executable) -> list[str]:
    emu = cfg.vbs.emulator
    cmd = [python, "-m", "drivers.emulated",
           "--calibration", str(emu.calibration), "--scenario", emu.scenario.name,
           "--switch-epoch", str(emu.scenario.switch_epoch), "--seed", str(cfg.seed),
           "--round-s", str(cfg.round_s), "--speedup", str(cfg.clock.speedup),
           "--control", cfg.vbs.control_endpoint, "--meter", cfg.meter.endpoint]
    if cfg.clock.mode == "stepped":
        cmd.append("--stepped")
    if emu.scenario.trace is not None:
        cmd += ["--trace", str(emu.scenario.trace)]
    if emu.du is not None:
        cmd += ["--du-ues", str(emu.du.n_ues), "--du-seed", str(emu.du.seed)]
    if cfg.vbs.curve_dir is not None:
        cmd += ["--curve-dir", str(cfg.vbs.curve_dir)]
    if cfg.meter.kind == "gpm8213" and not cfg.meter.resource:
        cmd += ["--scpi-meter", f"{_bind_address(cfg.vbs.control_endpoint)}:{emu.scpi_port}"]
    return cmd


def _bind_address(endpoint: str) -> str:
    """The address part of ``tcp://address:port`` (the twin binds where control binds)."""
    return endpoint.removeprefix("tcp://").rpartition(":")[0] or "127.0.0.1"


def _as_seen_from_controller(ready: dict, hostname: str) -> dict:
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


def _ready_message(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    message = json.loads(line)
    return message if message.get("ready") else None


# ----------------------------------------------------------------------- on this machine
_Started = tuple[dict, Callable[[], None], Callable[[], bool]]
"""An emulated vBS that came up: its endpoints, how to stop it, whether it is still alive."""


def _start_local(cfg: HilConfig, log_dir: Path) -> _Started:
    """A child process; its stderr goes to ``log_dir/emulator.log``."""
    log_path = Path(log_dir) / "emulator.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*emulator_command(cfg), "--exit-with-parent"], stdout=subprocess.PIPE, stderr=log,
            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=REPO)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + cfg.vbs.emulator.startup_timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1) and (ready := _ready_message(proc.stdout.readline())):
            return ready, stop, lambda: proc.poll() is None
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace").strip().splitlines()
            tail = err[-1] if err else f"exit code {proc.returncode}"
            raise TestbedError(f"the emulated vBS exited during start-up: {tail} (log: {log_path})")
    stop()
    raise TestbedError(f"the emulated vBS did not report ready within "
                       f"{cfg.vbs.emulator.startup_timeout_s} s (log: {log_path})")


# ----------------------------------------------------------------------- over SSH
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


def _start_over_ssh(cfg: HilConfig, host_name: str) -> _Started:
    """Started and tracked by the host's ProcessHost; its log stays on the host (`tail`).

    The host runs this checkout's code with this interpreter (the same machine in CI; a lab
    installs vbs-hil at the same path on the BBU host).
    """
    host = connect_host(host_name, cfg.hosts[host_name])
    # A controller killed with SIGKILL is no parent the emulator could watch: it exits when
    # no request came for a while, and a leftover one is stopped here first.
    idle_exit_s = max(IDLE_EXIT_S, 10 * cfg.period_s)
    command = (f"cd {shlex.quote(str(REPO))} && exec "
               f"{shlex.join([*emulator_command(cfg), '--exit-when-idle-s', str(idle_exit_s)])}")

    checker: _AliveChecker | None = None

    def stop() -> None:
        try:
            if checker is not None:
                checker.close()
            _reconnecting(host, lambda: host.stop(EMULATOR))
        finally:
            host.close()

    def alive() -> bool:
        """Whether the emulator runs; when SSH cannot tell (the host's sshd is down), the
        rtctl exchange of the round will: the emulator does not need SSH to serve."""
        try:
            return _reconnecting(host, lambda: host.is_running(EMULATOR))
        except SshError as exc:
            log.warning("cannot check the emulated vBS on %s: %s", host_name, exc)
            return True

    try:
        if host.is_running(EMULATOR):
            log.warning("stopping an emulated vBS left running on %s", host_name)
            host.stop(EMULATOR)
        host.start(EMULATOR, command, env={"PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + cfg.vbs.emulator.startup_timeout_s
        while time.monotonic() < deadline:
            for line in host.tail(EMULATOR, 20).splitlines():
                if ready := _ready_message(line):
                    checker = _AliveChecker(alive, ALIVE_CHECK_S)
                    return (_as_seen_from_controller(ready, cfg.hosts[host_name].hostname),
                            stop, checker)
            if not host.is_running(EMULATOR):
                raise TestbedError(f"the emulated vBS exited during start-up on {host_name}: "
                                   f"{host.tail(EMULATOR, 3).strip()}")
            time.sleep(0.05)
        raise TestbedError(f"the emulated vBS on {host_name} did not report ready within "
                           f"{cfg.vbs.emulator.startup_timeout_s} s: "
                           f"{host.tail(EMULATOR, 3).strip()}")
    except BaseException:
        stop()
        raise


class _AliveChecker:
    """Whether a remote process runs, asked in a thread every `every_s`: an SSH exchange
    (~25 ms) has no place in a round's critical path, which only reads the last answer."""

    def __init__(self, check: Callable[[], bool], every_s: float) -> None:
        self._check, self._every_s = check, every_s
        self._alive = True
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-alive", daemon=True)
        self._thread.start()

    def __call__(self) -> bool:
        return self._alive

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            self._alive = self._check()


def _reconnecting(host: SshHost, call: Callable[[], _T]) -> _T:
    """`call()`, once more after reconnecting if the SSH connection had dropped."""
    try:
        return call()
    except ConnectionLostError:
        host.reconnect()
        return call()


# ----------------------------------------------------------------------- the testbed
def start_testbed(cfg: HilConfig, log_dir: Path) -> Testbed:
    """Bring up the testbed the config describes; on any failure, take down what came up."""
    if cfg.vbs.kind == "srsran":
        return _start_srsran(cfg)

    def start(config: HilConfig) -> _Started:
        if config.vbs.host is None:
            return _start_local(config, log_dir)
        return _start_over_ssh(config, config.vbs.host)

    watchdog = EmulatorWatchdog(start(cfg), lambda ready: start(_on_ports_of(cfg, ready)))
    try:
        ready = watchdog.ready
        ran = RtctlClient(ready["control"], timeout_s=cfg.vbs.timeout_s, retries=cfg.vbs.retries,
                          curve=_client_curve(cfg))
        meter = make_meter(cfg, ready)
    except BaseException:
        watchdog.stop()
        raise
    return Testbed(ran=ran, meter=meter, stop_vbs=watchdog.stop,
                   probes=[watchdog, *_host_probes(cfg)])


class EmulatorWatchdog:
    """Restarts a dead emulated vBS before the next round, on the ports it had, so that the
    rtctl client (a new socket per resend) and the meter (it reconnects) find it again.

    The round in which it died is recorded invalid; the next one runs on the new process.
    """

    def __init__(self, first: _Started, restart: Callable[[dict], _Started]) -> None:
        self.ready, self._stop, self._alive = first
        self._restart = restart
        self.restarts = 0

    def before_round(self, round_index: int) -> None:
        if self._alive():
            return
        log.warning("round %d: the emulated vBS is not running: restarting it", round_index)
        self._stop()
        self.ready, self._stop, self._alive = self._restart(self.ready)
        self.restarts += 1

    def after_round(self) -> dict[str, int | str]:
        return {"testbed_restarts": self.restarts,
                "testbed_stage": "vBS up" if self._alive() else "vBS down"}

    def stop(self) -> None:
        self._stop()


def _on_ports_of(cfg: HilConfig, ready: dict) -> HilConfig:
    """`cfg` with the emulator's endpoints pinned to the ports its first start bound."""
    def pinned(endpoint: str, bound: str) -> str:
        return f"{endpoint.rpartition(':')[0]}:{bound.rpartition(':')[2]}"

    emulator = cfg.vbs.emulator
    if "scpi_meter" in ready:  # TCPIP0::host::PORT::SOCKET
        port = int(ready["scpi_meter"].split("::")[2])
        emulator = emulator.model_copy(update={"scpi_port": port})
    vbs = cfg.vbs.model_copy(update={
        "control_endpoint": pinned(cfg.vbs.control_endpoint, ready["control"]),
        "emulator": emulator})
    meter = cfg.meter.model_copy(update={"endpoint": pinned(cfg.meter.endpoint, ready["meter"])})
    return cfg.model_copy(update={"vbs": vbs, "meter": meter})


def _client_curve(cfg: HilConfig) -> ClientCurve | None:
    return None if cfg.vbs.curve_dir is None else ClientCurve.from_dir(cfg.vbs.curve_dir)


def _start_srsran(cfg: HilConfig) -> Testbed:
    """srsEPC, srsENB, srsUE (and iperf3) up in order over SSH; the eNB's rtctl connected."""
    testbed = srsran.build(cfg, lambda name: connect_host(name, cfg.hosts[name]))
    try:
        testbed.bringup.up()
        ran = RtctlClient(srsran_control_endpoint(cfg), timeout_s=cfg.vbs.timeout_s,
                          retries=cfg.vbs.retries, curve=_client_curve(cfg))
        meter = make_meter(cfg, {})
    except BaseException:
        testbed.close()
        raise
    probes: list[RoundProbe] = [WatchdogProbe(testbed.bringup), *_host_probes(cfg)]
    if testbed.traffic is not None:
        sc = cfg.traffic.scenario
        probes.append(TrafficProbe(testbed.traffic, make_scenario(
            sc.name, cfg.seed, trace_path=sc.trace, switch_epoch=sc.switch_epoch)))
    return Testbed(ran=ran, meter=meter, stop_vbs=testbed.close, probes=probes)


def srsran_control_endpoint(cfg: HilConfig) -> str:
    """Where the controller reaches the eNB's rtctl socket: its bind address, a wildcard
    replaced by the eNB host's name."""
    assert cfg.vbs.srsran is not None
    hostname = cfg.hosts[cfg.vbs.srsran.enb.host].hostname
    return _as_seen_from_controller({"control": cfg.vbs.srsran.rtctl_bind}, hostname)["control"]


def _host_probes(cfg: HilConfig) -> list[RoundProbe]:
    if not cfg.host_metrics.enabled:
        return []
    names = [cfg.host_metrics.process, cfg.host_metrics.ue_process]
    return [HostMetricsProbe(HostMetrics(*[n for n in names if n]))]
