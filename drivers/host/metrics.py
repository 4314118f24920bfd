"""CPU load and RAPL energy of the BBU host over one round, next to the wall-power meter.

The wall meter sees the whole BBU; these figures say where the watts went: how busy the
host was, how much of it was the eNB, and what the CPU packages alone drew (RAPL, the
figure the BSvBS dataset records as ``rapl_power``).

`HostMetrics` follows the power meter's window pattern: `start` marks the beginning of a
round's window, `stop` returns the window's figures. Everything is read from counters that
only grow (CPU times, RAPL energy), so a window costs two snapshots and no sampling thread.

What is measured, and the choices made:

- ``host_cpu_pct``: busy share of all logical CPUs (0-100) from the deltas of
  `psutil.cpu_times` (idle and iowait count as not busy). None if the window spans no clock
  tick, since then nothing was measured.
- ``process_cpu_pct``: for each name given, CPU time used in the window by the processes of
  that name and all their descendants, as a share of all logical CPUs (0-100, the same scale as
  ``host_cpu_pct``, so the two compare directly; a fully busy core of a 4-core host is 25).
  Processes are found again by name at `stop`, so a restarted eNB is counted (its whole CPU
  time, as it started within the window). A process that ends before `stop` takes its CPU
  time of the window with it: that part is not counted. None when no such process existed
  at either end of the window: a missing eNB is not measured as an idle one.
- ``rapl_energy_j`` / ``rapl_power_w``: energy of the CPU packages (the top-level
  ``intel-rapl:N`` zones named ``package-*``; their ``core``/``uncore``/``dram`` subzones
  are parts of a package and ``psys`` covers the whole platform, so neither is added). The
  counters wrap at ``max_energy_range_uj``. None when RAPL is absent or unreadable (since
  Linux 5.10 ``energy_uj`` is readable by root only); that is logged once, never raised,
  because a lab without RAPL can still run.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")
_warned = {"rapl": False}
_UJ_PER_J = 1e6


@dataclass(frozen=True)
class HostReading:
    """The host's figures over one window; None where nothing could be measured."""

    host_cpu_pct: float | None
    processes_cpu_pct: dict[str, float | None]
    """By process name, in the order the names were given."""
    rapl_energy_j: float | None
    rapl_power_w: float | None
    duration_s: float

    @property
    def process_cpu_pct(self) -> float | None:
        """The first named process's (the eNB's, as the testbed names them)."""
        return next(iter(self.processes_cpu_pct.values()), None)


@dataclass(frozen=True)
class _RaplCounter:
    energy_path: Path
    max_energy_uj: int


@dataclass(frozen=True)
class _Snapshot:
    time_s: float
    cpu_times_s: dict[str, float]
    process_cpu_s: dict[str, dict[tuple[int, float], float]]
    rapl_uj: list[int] | None


class HostMetrics:
    """CPU of the host and of named processes, and RAPL package energy, per window.

    No `process_names` measures no process (and spares the scan of the process table);
    `powercap_root` None reads no RAPL counters (and warns of none missing).
    """

    def __init__(self, *process_names: str,
                 powercap_root: Path | None = Path("/sys/class/powercap"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.process_names = process_names
        self.powercap_root = powercap_root
        self._clock = clock
        self._cpu_count = psutil.cpu_count() or 1
        self._rapl: list[_RaplCounter] | None = None
        self._start: _Snapshot | None = None
        self._processes = _ProcessTable(clock)

    def start(self) -> None:
        """Begin a window (the round's policy has just been applied)."""
        self._start = self._snapshot()

    def stop(self) -> HostReading:
        """End the window begun by `start` and return its figures."""
        if self._start is None:
            raise RuntimeError("HostMetrics.stop() called without start()")
        begin, end = self._start, self._snapshot()
        self._start = None
        duration_s = end.time_s - begin.time_s
        energy_j = _rapl_energy_j(self._rapl, begin.rapl_uj, end.rapl_uj)
        return HostReading(
            host_cpu_pct=_host_cpu_pct(begin.cpu_times_s, end.cpu_times_s),
            processes_cpu_pct={name: self._process_cpu_pct(begin.process_cpu_s[name],
                                                           end.process_cpu_s[name], duration_s)
                               for name in self.process_names},
            rapl_energy_j=energy_j,
            rapl_power_w=energy_j / duration_s if energy_j is not None and duration_s > 0
            else None,
            duration_s=duration_s,
        )

    def close(self) -> None:
        """Nothing to release; here so the engine can treat every driver alike."""

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(time_s=self._clock(), cpu_times_s=psutil.cpu_times()._asdict(),
                         process_cpu_s=self._processes.cpu_s(self.process_names),
                         rapl_uj=None if self.powercap_root is None else self._read_rapl_uj())

    def _process_cpu_pct(self, begin: dict[tuple[int, float], float],
                         end: dict[tuple[int, float], float], duration_s: float) -> float | None:
        if (not begin and not end) or duration_s <= 0:
            return None
        # A process absent at `start` began within the window: all its CPU time is the window's.
        used_s = sum(cpu_s - begin.get(key, 0.0) for key, cpu_s in end.items())
        return 100.0 * max(used_s, 0.0) / (duration_s * self._cpu_count)

    def _read_rapl_uj(self) -> list[int] | None:
        """The package counters now, or None (warned about once) if RAPL cannot be read."""
        try:
            if self._rapl is None:
                assert self.powercap_root is not None  # _snapshot reads RAPL only with a root
                self._rapl = _find_rapl_packages(self.powercap_root)
            if not self._rapl:
                raise OSError(f"no intel-rapl package zone under {self.powercap_root}")
            return [int(c.energy_path.read_text()) for c in self._rapl]
        except (OSError, ValueError) as exc:
            if not _warned["rapl"]:  # once per process: a sweep builds one per block
                log.warning("RAPL energy unavailable (%s); the rapl_* figures stay empty. "
                            "RAPL needs an Intel or recent AMD CPU and, since Linux 5.10, "
                            "root to read energy_uj.", exc)
                _warned["rapl"] = True
            return None


def _host_cpu_pct(begin: dict[str, float], end: dict[str, float]) -> float | None:
    """Busy share of all CPUs between two `psutil.cpu_times()` snapshots (as dicts)."""
    def busy_and_total(times: dict[str, float]) -> tuple[float, float]:
        # Linux counts guest time inside user time already.
        total = sum(times.values()) - times.get("guest", 0.0) - times.get("guest_nice", 0.0)
        return total - times["idle"] - times.get("iowait", 0.0), total

    busy_begin, total_begin = busy_and_total(begin)
    busy_end, total_end = busy_and_total(end)
    if total_end <= total_begin:
        return None
    return 100.0 * max(busy_end - busy_begin, 0.0) / (total_end - total_begin)


class _ProcessTable:
    """The host's processes by PID (start time, name, parent), kept between snapshots.

    A snapshot lists the PIDs (one directory read) and reads only those that appeared
    since the last one; the named processes' families are then put together from the
    parents, and only their members' CPU times are read. Reading the whole table at every
    snapshot (psutil: ~3 file reads per process, a rescan of /proc per family) took
    115 ms a snapshot on a 2-core BBU busy with srsRAN, four snapshots a round, measured.

    A family member is read afresh each time, so a recycled PID among them is seen by its
    start time. A PID recycled elsewhere between two snapshots keeps its old name until the
    table is read whole again, every FULL_READ_EVERY_S.
    """

    FULL_READ_EVERY_S = 30.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._known: dict[int, tuple[float, str, int]] = {}
        self._read_whole_s = -math.inf

    def cpu_s(self, names: tuple[str, ...]) -> dict[str, dict[tuple[int, float], float]]:
        """By name, the CPU seconds (user + system) of every process called so and of its
        descendants, keyed by (PID, create time)."""
        found: dict[str, dict[tuple[int, float], float]] = {name: {} for name in names}
        if not names:
            return found
        self._refresh()
        children: dict[int, list[int]] = {}
        for pid, (_, _, ppid) in self._known.items():
            children.setdefault(ppid, []).append(pid)
        for root, (_, name, _) in list(self._known.items()):
            if name not in found:
                continue
            family, seen = [root], set()
            while family:
                pid = family.pop()
                if pid in seen:  # a PID recycled while the table was read
                    continue
                seen.add(pid)
                if (times := self._cpu_s(pid)) is not None:
                    found[name][(pid, times[0])] = times[1]
                family.extend(children.get(pid, ()))
        return found

    def _refresh(self) -> None:
        if self._clock() - self._read_whole_s > self.FULL_READ_EVERY_S:
            self._known.clear()
            self._read_whole_s = self._clock()
        pids = set(psutil.pids())
        for gone in self._known.keys() - pids:
            del self._known[gone]
        for pid in pids - self._known.keys():
            self._read(pid)

    def _read(self, pid: int) -> psutil.Process | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                self._known[pid] = (proc.create_time(), proc.name(), proc.ppid())
        except psutil.Error:
            self._known.pop(pid, None)
            return None
        return proc

    def _cpu_s(self, pid: int) -> tuple[float, float] | None:
        """(create time, CPU seconds) of a family member, read now; a recycled PID is read
        again whole."""
        try:
            proc = psutil.Process(pid)
            if proc.create_time() != self._known[pid][0]:
                proc = self._read(pid)
                if proc is None:
                    return None
            times = proc.cpu_times()
            return proc.create_time(), times.user + times.system
        except psutil.Error:
            return None


def _find_rapl_packages(root: Path) -> list[_RaplCounter]:
    return [_RaplCounter(zone / "energy_uj", int((zone / "max_energy_range_uj").read_text()))
            for zone in _package_zones(root)]


def _package_zones(root: Path) -> Iterable[Path]:
    for zone in sorted(root.glob("intel-rapl:*")):
        if _PACKAGE_ZONE.fullmatch(zone.name) and \
                (zone / "name").read_text().strip().startswith("package"):
            yield zone


def _rapl_energy_j(counters: list[_RaplCounter] | None, begin_uj: list[int] | None,
                   end_uj: list[int] | None) -> float | None:
    """Energy over the window summed over packages; a counter below its start has wrapped."""
    if counters is None or begin_uj is None or end_uj is None:
        return None
    total_uj = 0
    for counter, begin, end in zip(counters, begin_uj, end_uj, strict=True):
        total_uj += end - begin if end >= begin else counter.max_energy_uj - begin + end
    return total_uj / _UJ_PER_J
