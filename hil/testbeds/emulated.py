"""The emulated vBS as a testbed: a separate process (`python -m drivers.emulated`) on this
machine or on a configured host over SSH (`vbs.host`), restarted on the ports it had if it
dies; the controller waits for the line in which it reports the endpoints it bound, then
connects the rtctl client and the meter. Teardown always stops the process, also after a
crash of the controller's own code.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from drivers.rtctl.client import RtctlClient
from drivers.ssh import ConnectionLostError, SshError, SshHost
from hil.base.liveness import AliveChecker
from hil.base.model import load_calibration
from hil.base.network import endpoint_host
from hil.base.repo import REPO
from hil.base.scenarios import make_scenario
from hil.config import EmulatedVbsConfig, HilConfig, ScenarioConfig
from hil.testbeds import Check, Testbed, TestbedError, TestbedKind, VbsProcess
from hil.testbeds.common import (
    as_seen_from_controller,
    client_curve,
    connect_host,
    host_probes,
    make_meter,
)

EMULATOR = "emulated-vbs"  # the process name on an SSH host
EMULATOR_MODULE = "drivers.emulated"  # what the emulator runs: `python -m drivers.emulated`
IDLE_EXIT_S = 60.0
"""An emulated vBS on an SSH host exits after this long without a control request."""
log = logging.getLogger(__name__)
_T = TypeVar("_T")


class EmulatedTestbed(TestbedKind):
    """The emulated vBS (`vbs.kind: emulated`), one user or a DU of users in slices."""

    checked_by_bringup: ClassVar[bool] = True
    sweep_channel: ClassVar[Literal["cqi", "snr"]] = "cqi"

    def start(self, cfg: HilConfig, log_dir: Path) -> Testbed:
        def start(config: HilConfig) -> _Started:
            if config.vbs.host is None:
                return _start_local(config, log_dir)
            return _start_over_ssh(config, config.vbs.host)

        watchdog = EmulatorWatchdog(start(cfg), lambda ready: start(_on_ports_of(cfg, ready)))
        try:
            ready = watchdog.ready
            ran = RtctlClient(ready["control"], timeout_s=cfg.vbs.timeout_s,
                              retries=cfg.vbs.retries, curve=client_curve(cfg))
            meter = make_meter(cfg, ready)
        except BaseException:
            watchdog.stop()
            raise
        return Testbed(ran=ran, meter=meter, stop_vbs=watchdog.stop,
                       probes=[watchdog, *host_probes(cfg)])

    def checks(self, cfg: HilConfig) -> Iterator[tuple[str, Check]]:
        vbs = _emulated(cfg)
        yield "calibration", lambda: _calibration(vbs)
        yield "scenario", lambda: _scenario(cfg, vbs)

    def python_hosts(self, cfg: HilConfig) -> set[str]:
        return {cfg.vbs.host} if cfg.vbs.host else set()

    def cell_prb(self, cfg: HilConfig) -> int:
        return load_calibration(cfg.vbs.calibration).cell.nof_prb

    def lock_host(self, cfg: HilConfig) -> str | None:
        return cfg.vbs.host

    def shared_locally(self, cfg: HilConfig) -> bool:
        """A local emulator on a free port (`:0`) is each run's own."""
        return not cfg.vbs.control_endpoint.endswith(":0")

    def conditioned(self, cfg: HilConfig, scenario: ScenarioConfig, dl_snr_db: float | None,
                    ul_snr_db: float | None) -> dict[str, Any]:
        """The emulator draws the condition's demand and CQIs from the one-row trace (it
        models CQI, not a channel emulator's SNR)."""
        vbs = _emulated(cfg)
        return {"vbs": vbs.model_copy(update={"emulator": vbs.emulator.model_copy(
            update={"scenario": scenario})})}

    def sweep_problem(self, cfg: HilConfig) -> str | None:
        if _emulated(cfg).emulator.du is not None:
            return ("vbs.emulator.du: a sweep measures the cell of one user; use a config "
                    "without `du` (e.g. testbed_configs/zmq-emulated.yaml)")
        return None

    def provenance(self, cfg: HilConfig) -> dict[str, Any]:
        return {"kind": "emulated", "calibration": str(cfg.vbs.calibration),
                "host": cfg.vbs.host or "this machine"}

    def model_calibration(self, cfg: HilConfig) -> Path | None:
        return cfg.vbs.calibration

    def vbs_process(self, cfg: HilConfig) -> VbsProcess:
        return VbsProcess(cfg.vbs.host, EMULATOR if cfg.vbs.host else EMULATOR_MODULE)


TESTBED = EmulatedTestbed()


def _emulated(cfg: HilConfig) -> EmulatedVbsConfig:
    assert isinstance(cfg.vbs, EmulatedVbsConfig), "an emulated testbed's config"
    return cfg.vbs


def _calibration(vbs: EmulatedVbsConfig) -> str:
    cal = load_calibration(vbs.calibration)
    return f"{vbs.calibration} ({cal.name})"


def _scenario(cfg: HilConfig, vbs: EmulatedVbsConfig) -> str:
    sc = vbs.emulator.scenario
    make_scenario(sc.name, cfg.seed, trace_path=sc.trace, switch_epoch=sc.switch_epoch).epochs(0, 1)
    return sc.name if sc.trace is None else f"{sc.name} ({sc.trace})"


def emulator_command(cfg: HilConfig, python: str = sys.executable) -> list[str]:
    emu = _emulated(cfg).emulator
    cmd = [python, "-m", EMULATOR_MODULE,
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
    if (server_keys := cfg.vbs.server_keys_at("~")) is not None:
        cmd += ["--curve-dir", server_keys]  # `~` is expanded where the emulator runs
    if cfg.meter.kind == "gpm8213" and not cfg.meter.resource:
        # the twin binds where control binds
        address = endpoint_host(cfg.vbs.control_endpoint) or "127.0.0.1"
        cmd += ["--scpi-meter", f"{address}:{emu.scpi_port}"]
    return cmd


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
    deadline = time.monotonic() + _emulated(cfg).emulator.startup_timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1) and (ready := _ready_message(proc.stdout.readline())):
            return ready, stop, lambda: proc.poll() is None
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace").strip().splitlines()
            tail = err[-1] if err else f"exit code {proc.returncode}"
            raise TestbedError(f"the emulated vBS exited during start-up: {tail} (log: {log_path})")
    stop()
    raise TestbedError(f"the emulated vBS did not report ready within "
                       f"{_emulated(cfg).emulator.startup_timeout_s} s (log: {log_path})")


# ----------------------------------------------------------------------- over SSH
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

    checker: AliveChecker | None = None

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
        deadline = time.monotonic() + _emulated(cfg).emulator.startup_timeout_s
        while time.monotonic() < deadline:
            for line in host.tail(EMULATOR, 20).splitlines():
                if ready := _ready_message(line):
                    checker = AliveChecker(alive, name="emulator-alive")
                    return (as_seen_from_controller(ready, cfg.hosts[host_name].hostname),
                            stop, checker)
            if not host.is_running(EMULATOR):
                raise TestbedError(f"the emulated vBS exited during start-up on {host_name}: "
                                   f"{host.tail(EMULATOR, 3).strip()}")
            time.sleep(0.05)
        raise TestbedError(f"the emulated vBS on {host_name} did not report ready within "
                           f"{_emulated(cfg).emulator.startup_timeout_s} s: "
                           f"{host.tail(EMULATOR, 3).strip()}")
    except BaseException:
        stop()
        raise


def _reconnecting(host: SshHost, call: Callable[[], _T]) -> _T:
    """`call()`, once more after reconnecting if the SSH connection had dropped."""
    try:
        return call()
    except ConnectionLostError:
        host.reconnect()
        return call()


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

    emulator = _emulated(cfg).emulator
    if "scpi_meter" in ready:  # TCPIP0::host::PORT::SOCKET
        port = int(ready["scpi_meter"].split("::")[2])
        emulator = emulator.model_copy(update={"scpi_port": port})
    vbs = cfg.vbs.model_copy(update={
        "control_endpoint": pinned(cfg.vbs.control_endpoint, ready["control"]),
        "emulator": emulator})
    meter = cfg.meter.model_copy(update={"endpoint": pinned(cfg.meter.endpoint, ready["meter"])})
    return cfg.model_copy(update={"vbs": vbs, "meter": meter})


