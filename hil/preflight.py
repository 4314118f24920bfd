"""`hil check CONFIG`: is this testbed ready to run? One line per check, `ok` or what to fix.

Every check runs even when an earlier one failed, so one pass lists every problem. A check
is a function that returns what it found (a short description) or raises `HilError` with
what is wrong and what to do.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drivers.power.gpm8213 import Gpm8213Meter
from drivers.srsran.series import STAMP_FILE, Stamp, stale_reason
from drivers.ssh import SshHost
from hil.base.errors import HilError
from hil.base.model import load_calibration
from hil.base.scenarios import make_scenario
from hil.config import HilConfig, local_paths
from hil.lock import testbed_lock
from hil.srsran import Program, binary_path, home_of
from hil.testbed import connect_host, start_testbed

MAX_CLOCK_OFFSET_S = 0.1
BUILD_HINT = ("build and install it with `hil srsran build --source <srsRAN_4G checkout>` "
              "(README, \"Real srsRAN\") on that host")

Check = Callable[[], str]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _files(cfg: HilConfig) -> str:
    """Every file and folder the config names for this machine is here."""
    wanted = local_paths(cfg)
    missing = [f"{key} {path}" for key, path in wanted if not path.exists()]
    if missing:
        raise HilError(f"not found: {'; '.join(missing)}. Relative paths in a config are taken "
                       "from its own folder, so a copy elsewhere loses them: give absolute "
                       "paths, or write a config that says `extends: <the original>` and only "
                       "what differs (README, Configuration)")
    return f"{len(wanted)} found" if wanted else "none named"


def _calibration(cfg: HilConfig) -> str:
    cal = load_calibration(cfg.vbs.emulator.calibration)
    return f"{cfg.vbs.emulator.calibration} ({cal.name})"


def _scenario(cfg: HilConfig) -> str:
    sc = cfg.vbs.emulator.scenario
    make_scenario(sc.name, cfg.seed, trace_path=sc.trace, switch_epoch=sc.switch_epoch).epochs(0, 1)
    return sc.name if sc.trace is None else f"{sc.name} ({sc.trace})"


def _host(cfg: HilConfig, name: str) -> str:
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
        runs_emulator = cfg.vbs.kind == "emulated" and name == cfg.vbs.host
        if runs_emulator and "Python 3" not in "".join(python):
            raise HilError(f"host {name}: python3 is not available there; install Python >= 3.11")
        return f"{host.where}: clock offset {offset_s * 1000:+.0f} ms, {''.join(python).strip()}"


def _binaries(cfg: HilConfig, name: str) -> str:
    """The srsRAN programs on one host, iperf3 too where it runs traffic: each one there;
    srsenb and srsue patched (they know [rtctl]) and built from this checkout's patch
    series (the stamp `hil srsran build` leaves beside their bin/ says so)."""
    srs = cfg.vbs.srsran
    assert srs is not None
    programs: list[Program] = [p for p in ("epc", "enb", "ue") if getattr(srs, p).host == name]
    found, problems = [], []
    with connect_host(name, cfg.hosts[name]) as host:
        home = home_of(host)
        for program in programs:
            process = getattr(srs, program)
            path = binary_path(srs, program, home)
            env = " ".join(f"{key}={shlex.quote(value)}" for key, value in process.env.items())
            where = host.run(f"command -v {shlex.quote(path)}", timeout_s=10, check=False)
            if where.exit_code != 0:
                keys = f"vbs.srsran.{program}.binary" + (
                    " under vbs.srsran.prefix" if path != process.binary else "")
                problems.append(f"{path} not found ({keys})")
                continue
            resolved = where.stdout.strip()
            if program == "epc":
                found.append(resolved)
                continue
            helped = host.run(f"env {env} {shlex.quote(resolved)} --help 2>&1 | "
                              "grep -q rtctl.enable", timeout_s=20, check=False)
            if helped.exit_code != 0:
                problems.append(f"{resolved} has no [rtctl] options: it is not patched")
                continue
            try:
                stamp = _stamp_beside(host, resolved)
            except HilError as exc:
                problems.append(str(exc))
                continue
            found.append(f"{resolved} (series {stamp.short}, built {stamp.built_at})")
        if cfg.traffic.kind == "iperf3":
            if host.run("command -v iperf3", timeout_s=10, check=False).exit_code != 0:
                problems.append("iperf3 not found (traffic.kind iperf3): apt-get install iperf3")
            else:
                found.append("iperf3")
    if problems:
        hint = "" if all(p.startswith("iperf3") for p in problems) else f"; {BUILD_HINT}"
        raise HilError(f"host {name}: " + "; ".join(problems) + hint)
    return f"{', '.join(found)} on {name}"


def _stamp_beside(host: SshHost, binary: str) -> Stamp:
    """The build stamp in the prefix above `binary`'s bin/, current with this checkout."""
    stamp_path = f"{binary.rsplit('/', 2)[0]}/{STAMP_FILE}"
    result = host.run(f"cat {shlex.quote(stamp_path)}", timeout_s=10, check=False)
    if result.exit_code != 0:
        raise HilError(f"{binary}: no build stamp {stamp_path}, so which patch series it was "
                       "built from is unknown")
    try:
        stamp = Stamp.from_json(result.stdout)
    except ValueError as exc:
        raise HilError(f"{stamp_path}: unreadable build stamp ({exc})") from None
    if reason := stale_reason(stamp):
        raise HilError(f"{binary}: {reason}")
    return stamp


def _radio(cfg: HilConfig, name: str, serial: str) -> str:
    """The B210 with this serial answers uhd_find_devices on its host."""
    with connect_host(name, cfg.hosts[name]) as host:
        result = host.run(f"uhd_find_devices --args serial={shlex.quote(serial)}",
                          timeout_s=30, check=False)
    if result.exit_code != 0 or serial not in result.stdout:
        said = (result.stdout + result.stderr).strip().splitlines()
        raise HilError(f"host {name}: no USRP with serial {serial} (uhd_find_devices: "
                       f"{said[-1] if said else 'no output'}); check the USB 3 cable, "
                       "uhd-host, and the serial in vbs.srsran.radio")
    return f"B210 {serial} on {name}"


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


def _lock(cfg: HilConfig) -> str:
    """Whether a run holds the testbed (hil/lock.py): a run now would be refused."""
    lock = testbed_lock(cfg, "hil check")
    if lock is None:
        return "none needed: every run starts its own emulated vBS"
    return lock.check()


def checks(cfg: HilConfig) -> Iterator[tuple[str, Check]]:
    """The checks that apply to this config, in the order a bring-up needs them."""
    yield "files", lambda: _files(cfg)
    if cfg.vbs.kind == "emulated":
        yield "calibration", lambda: _calibration(cfg)
        yield "scenario", lambda: _scenario(cfg)
    for name in cfg.hosts:
        yield f"host {name}", lambda name=name: _host(cfg, name)
    srs = cfg.vbs.srsran
    if srs is not None:
        for name in dict.fromkeys((srs.enb.host, srs.ue.host)):
            yield f"binaries {name}", lambda name=name: _binaries(cfg, name)
        if srs.radio.kind == "uhd":
            for program, serial in (("enb", srs.radio.enb_serial), ("ue", srs.radio.ue_serial)):
                host = getattr(srs, program).host
                yield f"radio {program}", lambda host=host, serial=serial: _radio(cfg, host,
                                                                                  serial)
    if cfg.meter.kind == "gpm8213" and cfg.meter.resource:
        yield "meter", lambda: _meter(cfg)
    yield "testbed lock", lambda: _lock(cfg)
    if cfg.vbs.kind == "emulated":  # srsRAN's bring-up takes a minute: `hil run` does it
        yield "vbs", lambda: _vbs_answers(cfg)


def run_checks(cfg: HilConfig) -> Iterator[CheckResult]:
    for name, check in checks(cfg):
        try:
            yield CheckResult(name, True, check())
        except HilError as exc:
            yield CheckResult(name, False, str(exc))
