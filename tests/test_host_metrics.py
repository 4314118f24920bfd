"""HostMetrics: host and process CPU from real processes, RAPL from a fake powercap tree."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE, Popen

import psutil
import pytest

from drivers.host import metrics as metrics_module
from drivers.host.cpu_power import CpuPowerModel
from drivers.host.metrics import HostMetrics
from hil.base.errors import MeterError

BURN_CPU_S = 0.3
TICK_SLACK_S = 0.03  # the kernel counts a process's CPU time in clock ticks

# Burns BURN_CPU_S of CPU time (not wall time: a loaded machine only makes it slower) each
# time a line arrives on stdin, answering "done"; says "ready" first. Given the path of an
# interpreter, it leaves all that to a child process run by that interpreter, so the child
# has another name than its parent.
WORKER = f"""
import subprocess, sys, time
if len(sys.argv) > 1:
    sys.exit(subprocess.call([sys.argv[1], sys.argv[0]]))
print("ready", flush=True)
for _ in sys.stdin:
    end = time.process_time() + {BURN_CPU_S}
    while time.process_time() < end:
        pass
    print("done", flush=True)
"""


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class FakePowercap:
    """A /sys/class/powercap tree: zones with the files the kernel exposes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def zone(self, zone: str, name: str, energy_uj: int, max_energy_uj: int = 262143328850
             ) -> None:
        path = self.root / zone
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_uj}\n")
        self.set(zone, energy_uj)

    def set(self, zone: str, energy_uj: int) -> None:
        (self.root / zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercap:
    return FakePowercap(tmp_path / "powercap")


# -- RAPL --------------------------------------------------------------------------------

def test_rapl_energy_sums_the_packages_and_leaves_out_subzones_and_psys(
        powercap: FakePowercap) -> None:
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    powercap.zone("intel-rapl:0:0", "core", 500_000)
    powercap.zone("intel-rapl:1", "package-1", 7_000_000)
    powercap.zone("intel-rapl:2", "psys", 9_000_000)
    metrics = HostMetrics("no-such-process", powercap_root=powercap.root)

    metrics.start()
    powercap.set("intel-rapl:0", 3_500_000)   # +2.5 J
    powercap.set("intel-rapl:0:0", 2_500_000)  # +2 J, already inside package-0
    powercap.set("intel-rapl:1", 8_000_000)   # +1 J
    powercap.set("intel-rapl:2", 19_000_000)  # +10 J, the whole platform
    reading = metrics.stop()

    assert reading.rapl_energy_j == pytest.approx(3.5)


def test_rapl_counter_wrapping_around_its_range_still_gives_the_energy_used(
        powercap: FakePowercap) -> None:
    powercap.zone("intel-rapl:0", "package-0", 999_000_000, max_energy_uj=1_000_000_000)
    metrics = HostMetrics("no-such-process", powercap_root=powercap.root)

    metrics.start()
    powercap.set("intel-rapl:0", 500_000)  # 1 J up to the wrap, then 0.5 J
    reading = metrics.stop()

    assert reading.rapl_energy_j == pytest.approx(1.5)


def test_rapl_power_is_the_window_energy_over_its_duration(powercap: FakePowercap) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0)
    clock = FakeClock()
    metrics = HostMetrics("no-such-process", powercap_root=powercap.root, clock=clock)

    metrics.start()
    powercap.set("intel-rapl:0", 30_000_000)
    clock.now_s += 2.0
    reading = metrics.stop()

    assert reading.duration_s == pytest.approx(2.0)
    assert reading.rapl_energy_j == pytest.approx(30.0)
    assert reading.rapl_power_w == pytest.approx(15.0)


def test_without_rapl_the_rapl_figures_are_none_and_it_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once per process: a sweep builds new metrics for every block."""
    monkeypatch.setitem(metrics_module._warned, "rapl", False)

    with caplog.at_level(logging.WARNING, logger="drivers.host.metrics"):
        readings = []
        for _ in range(2):
            metrics = HostMetrics("no-such-process", powercap_root=tmp_path / "absent")
            for _ in range(2):
                metrics.start()
                readings.append(metrics.stop())

    assert all(r.rapl_energy_j is None and r.rapl_power_w is None for r in readings)
    assert len([r for r in caplog.records if "RAPL" in r.getMessage()]) == 1


def test_a_rapl_counter_that_becomes_unreadable_empties_that_window_only(
        powercap: FakePowercap) -> None:
    powercap.zone("intel-rapl:0", "package-0", 0)
    metrics = HostMetrics("no-such-process", powercap_root=powercap.root)
    counter = powercap.root / "intel-rapl:0" / "energy_uj"

    metrics.start()
    counter.write_text("garbage\n")
    broken = metrics.stop()
    powercap.set("intel-rapl:0", 1_000_000)
    metrics.start()
    powercap.set("intel-rapl:0", 3_000_000)
    recovered = metrics.stop()

    assert broken.rapl_energy_j is None
    assert recovered.rapl_energy_j == pytest.approx(2.0)


# -- CPU ---------------------------------------------------------------------------------

@pytest.fixture
def named_python(tmp_path: Path) -> Path:
    """The Python interpreter under a name no other process has (the name is the link's)."""
    link = tmp_path / f"hm{os.getpid()}"
    link.symlink_to(sys.executable)
    return link


@pytest.fixture
def spawn(tmp_path: Path, named_python: Path) -> Iterator[Callable[..., Popen[str]]]:
    """Starts workers under the unique name; kills them and their children afterwards."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    started: list[Popen[str]] = []

    def spawn_worker(*args: str) -> Popen[str]:
        proc = Popen([str(named_python), str(script), *args], text=True, stdin=PIPE,
                     stdout=PIPE)
        started.append(proc)
        return proc

    yield spawn_worker
    for proc in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        proc.kill()
        proc.wait()


def burn(worker: Popen[str]) -> None:
    """Have a worker burn BURN_CPU_S of CPU and wait until it has."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("go\n")
    worker.stdin.flush()
    assert worker.stdout.readline().strip() == "done"


def ready(worker: Popen[str]) -> Popen[str]:
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def window_cpu_s(pct: float | None, duration_s: float) -> float:
    """The CPU seconds behind a process_cpu_pct (a share of all logical CPUs)."""
    assert pct is not None
    return pct / 100.0 * duration_s * psutil.cpu_count()


def test_process_cpu_counts_only_the_cpu_time_used_within_the_window(
        spawn: Callable[..., Popen[str]], named_python: Path) -> None:
    worker = ready(spawn())
    burn(worker)  # before the window: must not count
    metrics = HostMetrics(named_python.name, powercap_root=named_python.parent / "absent")

    metrics.start()
    burn(worker)
    reading = metrics.stop()

    used_s = window_cpu_s(reading.process_cpu_pct, reading.duration_s)
    assert BURN_CPU_S - TICK_SLACK_S <= used_s < 2 * BURN_CPU_S
    assert reading.host_cpu_pct is not None and reading.host_cpu_pct > 0


def test_a_process_restarted_within_the_window_is_found_again_by_name(
        spawn: Callable[..., Popen[str]], named_python: Path) -> None:
    first = ready(spawn())
    metrics = HostMetrics(named_python.name, powercap_root=named_python.parent / "absent")

    metrics.start()
    first.kill()
    first.wait()
    burn(ready(spawn()))
    reading = metrics.stop()

    assert window_cpu_s(reading.process_cpu_pct, reading.duration_s) \
        >= BURN_CPU_S - TICK_SLACK_S


def test_the_cpu_of_the_process_children_is_counted(
        spawn: Callable[..., Popen[str]], named_python: Path) -> None:
    metrics = HostMetrics(named_python.name, powercap_root=named_python.parent / "absent")
    parent = spawn(os.path.realpath(sys.executable))  # the child uses the parent's stdio

    metrics.start()
    burn(ready(parent))
    reading = metrics.stop()

    assert psutil.Process(parent.pid).children(), "the burning was done by a child"
    assert window_cpu_s(reading.process_cpu_pct, reading.duration_s) \
        >= BURN_CPU_S - TICK_SLACK_S


def test_a_missing_process_gives_no_process_cpu_but_the_host_is_still_measured(
        tmp_path: Path) -> None:
    metrics = HostMetrics(f"hm-none-{os.getpid()}", powercap_root=tmp_path / "absent")

    metrics.start()
    begin = psutil.cpu_times()
    while sum(psutil.cpu_times()) - sum(begin) < 0.05:  # let a few clock ticks pass
        pass
    reading = metrics.stop()

    assert reading.process_cpu_pct is None
    assert reading.host_cpu_pct is not None and reading.host_cpu_pct > 0


def test_stop_without_start_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        HostMetrics(powercap_root=tmp_path).stop()


def test_several_processes_are_measured_each_on_its_own(
        spawn: Callable[..., Popen[str]], named_python: Path) -> None:
    """The eNB and the UE of a one-machine testbed: each its own figure, in the given order."""
    worker = ready(spawn())
    absent = f"hm-none-{os.getpid()}"
    metrics = HostMetrics(named_python.name, absent,
                          powercap_root=named_python.parent / "absent")

    metrics.start()
    burn(worker)
    reading = metrics.stop()

    assert list(reading.processes_cpu_pct) == [named_python.name, absent]
    assert window_cpu_s(reading.processes_cpu_pct[named_python.name], reading.duration_s) \
        >= BURN_CPU_S - TICK_SLACK_S
    assert reading.processes_cpu_pct[absent] is None


def test_the_cpu_model_meter_can_follow_one_process_instead_of_the_host(
        spawn: Callable[..., Popen[str]], named_python: Path) -> None:
    """Watts from the eNB's cores alone where other programs share its host."""
    worker = ready(spawn())
    meter = CpuPowerModel(idle_w=6.0, per_core_w=2.5, radio_w=3.0, process=named_python.name)

    meter.start()
    burn(worker)
    reading = meter.stop()

    busy_cores = (reading.power_w - 9.0) / 2.5
    assert busy_cores * reading.duration_s >= BURN_CPU_S - TICK_SLACK_S
    missing = CpuPowerModel(idle_w=6.0, per_core_w=2.5, radio_w=3.0, process="hm-none")
    missing.start()
    burn(worker)
    with pytest.raises(MeterError, match="no process 'hm-none'"):
        missing.stop()
