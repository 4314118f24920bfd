"""Bring a testbed up from its config and hand the engine its capabilities.

For the emulated testbed that means: start the emulated vBS as a separate process, wait for
the line in which it reports the endpoints it bound, connect the rtctl client and the meter.
Teardown always stops the process, also after a crash of the controller's own code.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from drivers.emulated.meter import EmulatedMeter
from drivers.power.gpm8213 import Gpm8213Meter
from drivers.protocols import PowerMeter, RanControl
from drivers.rtctl.client import RtctlClient
from hil.config import HilConfig
from hil.errors import HilError


class TestbedError(HilError):
    """The testbed could not be brought up."""


@dataclass
class Testbed:
    ran: RanControl
    meter: PowerMeter
    process: subprocess.Popen | None = None

    def close(self) -> None:
        self.ran.close()
        self.meter.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emulator_command(cfg: HilConfig) -> list[str]:
    emu = cfg.vbs.emulator
    cmd = [sys.executable, "-m", "drivers.emulated.vbs",
           "--calibration", str(emu.calibration), "--scenario", emu.scenario.name,
           "--switch-epoch", str(emu.scenario.switch_epoch), "--seed", str(cfg.seed),
           "--round-s", str(cfg.round_s), "--speedup", str(cfg.clock.speedup),
           "--control", cfg.vbs.control_endpoint, "--meter", cfg.meter.endpoint]
    if emu.scenario.trace is not None:
        cmd += ["--trace", str(emu.scenario.trace)]
    if cfg.meter.kind == "gpm8213" and not cfg.meter.resource:
        cmd += ["--scpi-meter", "127.0.0.1:0"]
    return cmd


def make_meter(cfg: HilConfig, emulator_ready: dict | None) -> PowerMeter:
    """The configured meter; a GPM-8213 without a resource is the emulated vBS's twin."""
    if cfg.meter.kind == "gpm8213":
        resource = cfg.meter.resource or (emulator_ready or {}).get("scpi_meter")
        return Gpm8213Meter(resource, poll_s=cfg.meter.poll_s, timeout_s=cfg.meter.timeout_s,
                            use_integrator=cfg.meter.use_integrator)
    return EmulatedMeter(emulator_ready["meter"], timeout_s=cfg.meter.timeout_s)


def _wait_ready(proc: subprocess.Popen, timeout_s: float, log_path: Path) -> dict:
    """Read the emulator's ready line; report the end of its log if it dies first."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline()
            if line:
                msg = json.loads(line)
                if msg.get("ready"):
                    return msg
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace").strip().splitlines()
            tail = err[-1] if err else f"exit code {proc.returncode}"
            raise TestbedError(f"the emulated vBS exited during start-up: {tail} (log: {log_path})")
    proc.kill()
    raise TestbedError(f"the emulated vBS did not report ready within {timeout_s} s")


def start_emulated(cfg: HilConfig, log_dir: Path) -> Testbed:
    """Start the emulated vBS; its stderr goes to ``log_dir/emulator.log``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_path = Path(log_dir) / "emulator.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(emulator_command(cfg), stdout=subprocess.PIPE, stderr=log,
                                text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    try:
        ready = _wait_ready(proc, cfg.vbs.emulator.startup_timeout_s, log_path)
        ran = RtctlClient(ready["control"], timeout_s=cfg.vbs.timeout_s, retries=cfg.vbs.retries)
        meter = make_meter(cfg, ready)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        raise
    return Testbed(ran=ran, meter=meter, process=proc)


def start_testbed(cfg: HilConfig, log_dir: Path) -> Testbed:
    """Bring up the testbed the config describes (issue 2 adds SSH-driven srsRAN and meters)."""
    if cfg.vbs.kind == "emulated":
        return start_emulated(cfg, log_dir)
    raise TestbedError(f"vbs.kind {cfg.vbs.kind!r} is not supported yet")
