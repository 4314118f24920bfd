"""`hil check CONFIG`: is this testbed ready to run? One line per check, `ok` or what to fix.

Every check runs even when an earlier one failed, so one pass lists every problem. A check
is a function that returns what it found (a short description) or raises `HilError` with
what is wrong and what to do.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drivers.emulated.model import load_calibration
from drivers.emulated.scenarios import make_scenario
from drivers.power.gpm8213 import Gpm8213Meter
from hil.config import HilConfig
from hil.errors import HilError
from hil.testbed import connect_host, start_testbed

Check = Callable[[], str]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _calibration(cfg: HilConfig) -> str:
    cal = load_calibration(cfg.vbs.emulator.calibration)
    return f"{cfg.vbs.emulator.calibration} ({cal.name})"


def _scenario(cfg: HilConfig) -> str:
    sc = cfg.vbs.emulator.scenario
    make_scenario(sc.name, cfg.seed, trace_path=sc.trace, switch_epoch=sc.switch_epoch).epochs(0, 1)
    return sc.name if sc.trace is None else f"{sc.name} ({sc.trace})"


def _host(cfg: HilConfig, name: str) -> str:
    with connect_host(name, cfg.hosts[name]) as host:
        result = host.run("python3 --version", timeout_s=10, check=False)
        if result.exit_code != 0:
            raise HilError(f"host {name}: python3 is not available there; install Python >= 3.11")
        return f"{host.where}: {result.stdout.strip() or result.stderr.strip()}"


def _meter(cfg: HilConfig) -> str:
    meter = Gpm8213Meter(cfg.meter.resource, poll_s=cfg.meter.poll_s,
                         timeout_s=cfg.meter.timeout_s)  # raises naming the resource
    meter.close()
    return f"GPM-8213 at {cfg.meter.resource}"


def _vbs_answers(cfg: HilConfig) -> str:
    """Bring the vBS up, ping it, measure one short window (KPIs and power), stop it."""
    polls_s = 2 * cfg.meter.poll_s if cfg.meter.kind == "gpm8213" else 0.0
    window_s = min(3.0, max(cfg.period_s / 2, polls_s))
    with tempfile.TemporaryDirectory() as tmp, start_testbed(cfg, Path(tmp)) as testbed:
        identity = testbed.ran.ping().vbs
        testbed.ran.get()
        testbed.meter.start()
        time.sleep(window_s)
        window = testbed.ran.get().window
        reading = testbed.meter.stop()
    return (f"{identity.name} {identity.version}, rtctl v{identity.protocol}, a window of "
            f"{window.nof_tti} TTI at {reading.power_w:.2f} W")


def checks(cfg: HilConfig) -> Iterator[tuple[str, Check]]:
    """The checks that apply to this config, in the order a bring-up needs them."""
    yield "calibration", lambda: _calibration(cfg)
    yield "scenario", lambda: _scenario(cfg)
    for name in cfg.hosts:
        yield f"host {name}", lambda name=name: _host(cfg, name)
    if cfg.meter.kind == "gpm8213" and cfg.meter.resource:
        yield "meter", lambda: _meter(cfg)
    yield "vbs", lambda: _vbs_answers(cfg)


def run_checks(cfg: HilConfig) -> Iterator[CheckResult]:
    for name, check in checks(cfg):
        try:
            yield CheckResult(name, True, check())
        except HilError as exc:
            yield CheckResult(name, False, str(exc))
