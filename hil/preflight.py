"""`hil check CONFIG`: is this testbed ready to run? One line per check, `ok` or what to fix.

Every check runs even when an earlier one failed, so one pass lists every problem. A check
is a function that returns what it found (a short description) or raises `HilError` with
what is wrong and what to do.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers.power.gpm8213 import Gpm8213Meter
from hil.base.errors import HilError
from hil.config import HilConfig, local_paths
from hil.lock import testbed_lock
from hil.testbeds import Check, Warn, kind_of, start_testbed
from hil.testbeds.common import connect_host
from hil.testbeds.keys import control_checks

MAX_CLOCK_OFFSET_S = 0.1


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: Literal["ok", "warn", "fail"]
    detail: str

    @property
    def ok(self) -> bool:
        """Nothing to fix before a run (a warning is a risk chosen in the config)."""
        return self.level != "fail"


def _files(cfg: HilConfig) -> str:
    """Every file and folder the config names for this machine is here."""
    wanted = local_paths(cfg)
    missing = [f"{key} {path}" + (f" (make the keys with `hil keys {path}`)"
                                  if key == "vbs.curve_dir" else "")
               for key, path in wanted if not path.exists()]
    if missing:
        raise HilError(f"not found: {'; '.join(missing)}. Relative paths in a config are taken "
                       "from its own folder, so a copy elsewhere loses them: give absolute "
                       "paths, or write a config that says `extends: <the original>` and only "
                       "what differs (docs/operator.md, \"Configuration\")")
    return f"{len(wanted)} found" if wanted else "none named"


def _host(cfg: HilConfig, name: str, runs_python: bool) -> str:
    """Reachable, and its clock within MAX_CLOCK_OFFSET_S of ours (round timestamps and the
    meter's samples are compared across hosts)."""
    with connect_host(name, cfg.hosts[name]) as host:
        sent = time.time()
        result = host.run("date +%s.%N; python3 --version", timeout_s=10, check=False)
        received = time.time()
        remote_time, *python = result.stdout.split("\n", 1)
        offset_s = float(remote_time) - (sent + received) / 2
        if abs(offset_s) > MAX_CLOCK_OFFSET_S + (received - sent) / 2:
            raise HilError(f"host {name}: its clock is {offset_s:+.2f} s off this machine's; "
                           "synchronise both with NTP (timedatectl set-ntp true, or chrony)")
        if runs_python and "Python 3" not in "".join(python):
            raise HilError(f"host {name}: python3 is not available there; install Python >= 3.11")
        return f"{host.where}: clock offset {offset_s * 1000:+.0f} ms, {''.join(python).strip()}"


def _meter(cfg: HilConfig) -> str:
    meter = Gpm8213Meter(cfg.meter.resource, poll_s=cfg.meter.poll_s,
                         timeout_s=cfg.meter.timeout_s)  # raises naming the resource
    meter.close()
    return f"GPM-8213 at {cfg.meter.resource}: {meter.idn}"


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


def _lock(cfg: HilConfig) -> str:
    """Whether a run holds the testbed (hil/lock.py): a run now would be refused."""
    lock = testbed_lock(cfg, "hil check")
    if lock is None:
        return "none needed: every run starts its own emulated vBS"
    return lock.check()


def checks(cfg: HilConfig) -> Iterator[tuple[str, Check]]:
    """The checks that apply to this config, in the order a bring-up needs them."""
    kind = kind_of(cfg)
    yield "files", lambda: _files(cfg)
    python_hosts = kind.python_hosts(cfg)
    for name in cfg.hosts:
        yield f"host {name}", lambda name=name: _host(cfg, name, name in python_hosts)
    yield from kind.checks(cfg)
    yield from control_checks(cfg)
    if cfg.meter.kind == "gpm8213" and cfg.meter.resource:
        yield "meter", lambda: _meter(cfg)
    yield "testbed lock", lambda: _lock(cfg)
    if kind.checked_by_bringup:
        yield "vbs", lambda: _vbs_answers(cfg)


def run_checks(cfg: HilConfig) -> Iterator[CheckResult]:
    for name, check in checks(cfg):
        try:
            found = check()
        except HilError as exc:
            yield CheckResult(name, "fail", str(exc))
            continue
        yield (CheckResult(name, "warn", found.detail) if isinstance(found, Warn)
               else CheckResult(name, "ok", found))
