"""A lab of testbeds at once: `hil run A.yaml B.yaml`, `hil collect A.yaml B.yaml`.

Each testbed runs the one-testbed command in a process of its own, so each takes its own
testbed lock (hil/lock.py), restores its own defaults, and a failure on one leaves the
others running. This process starts them, shows each one's progress by following the
folder it records into (hil/live.py, as `hil serve` does), passes Ctrl-C on (once: each
stops cleanly after its round in flight), and prints the results side by side.

    <out>/<testbed>/        what the command records for that testbed (a run directory
                            inside it for `run`; the sweep itself for `collect`)
    <out>/<testbed>.log     its console output
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hil.config import load_config
from hil.live import FollowedRun, find_runs
from hil.progress import progress_bar
from hil.recorder import RunDirectory

POLL_S = 0.5
LINE_EVERY_S = 30.0


@dataclass
class Member:
    """One testbed of the lab: its config, its folder and log, and its process."""

    name: str
    config: Path
    folder: Path
    log: Path
    process: subprocess.Popen | None = None
    followed: FollowedRun | None = None
    total: int | None = None
    """Rows it will record (its run's rounds, its sweep's cells), read once it is found."""

    def follow(self) -> FollowedRun | None:
        """Its run (or sweep), once the process has created it."""
        if self.followed is None and (found := find_runs([self.folder])):
            self.followed = FollowedRun(found[-1])
            meta = RunDirectory(found[-1]).read_meta()
            self.total = meta.get("cells_total", meta.get("config", {}).get("rounds"))
        return self.followed


def members(configs: list[Path], out: Path) -> list[Member]:
    """One member per config, named by its `name` (made unique with -2, -3, ...); every
    config is loaded first, so a bad one stops the lab before anything starts."""
    result: list[Member] = []
    for config in configs:
        name = base = load_config(config).name
        while name in {m.name for m in result}:
            name = f"{base}-{sum(m.name.startswith(base) for m in result) + 1}"
        result.append(Member(name, config, out / name, out / f"{name}.log"))
    return result


def run_lab(command: str, lab: list[Member], options: list[str], console: Console,
            serve: str | None = None) -> int:
    """`hil COMMAND CONFIG OPTIONS --out FOLDER` for every member at once; the table of
    results when all have ended. Exit status: 0 if every member's was 0, else the first
    other one (130 when interrupted)."""
    for member in lab:
        member.folder.parent.mkdir(parents=True, exist_ok=True)
        with member.log.open("ab") as log:  # the child keeps its own copy of the handle
            member.process = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", command, str(member.config), *options,
                 "--out", str(member.folder)], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # a terminal's Ctrl-C reaches this process only
        console.print(f"{member.name}: {command} {member.config} -> {member.folder} "
                      f"(log: {member.log})", highlight=False, soft_wrap=True)
    with _live_view(lab, serve, console), _forward_signals(lab):
        _show_progress(lab, console)
    console.print(results_table(lab))
    codes = [m.process.returncode for m in lab if m.process is not None]
    return next((c for c in codes if c != 0), 0)


@contextmanager
def _forward_signals(lab: list[Member]) -> Iterator[None]:
    """SIGINT or SIGTERM here reaches every member once: each stops after its round in
    flight and restores its defaults (a second signal stops them at once)."""
    def forward(signum: int, _frame: object) -> None:
        for member in lab:
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _live_view(lab: list[Member], address: str | None, console: Console) -> Iterator[None]:
    """One `hil serve` following every member's folder, when asked (--serve)."""
    if address is None:
        yield
        return
    from hil.serve import ServeError, spawn

    for member in lab:
        member.folder.mkdir(parents=True, exist_ok=True)
    try:
        process, url = spawn([m.folder for m in lab], address)
    except ServeError as exc:
        console.print(f"[yellow]no live view: {escape(str(exc))}", soft_wrap=True)
        yield
        return
    console.print(f"live view of the lab: [bold]{url}[/]", soft_wrap=True, highlight=False)
    try:
        yield
    finally:
        process.terminate()
        process.wait()


def _show_progress(lab: list[Member], console: Console) -> None:
    """A bar per member (rows recorded of its total) until every process has ended; a plain
    line every LINE_EVERY_S without a terminal."""
    last_line = time.monotonic()
    with progress_bar(console, "lab") as bar:
        tasks = {m.name: bar.add_task(m.name, total=None, note=m.name) for m in lab}
        while True:
            running = [m for m in lab if m.process is not None and m.process.poll() is None]
            counts = {m.name: _rows(m) for m in lab}
            for name, (done, total) in counts.items():
                bar.update(tasks[name], completed=done, total=total)
            if not console.is_terminal and (time.monotonic() - last_line >= LINE_EVERY_S
                                            or not running):
                last_line = time.monotonic()
                console.print("lab: " + ", ".join(f"{name} {done}/{total or '?'}" for name,
                                                  (done, total) in counts.items()),
                              highlight=False)
            if not running:
                return
            time.sleep(POLL_S)


def _rows(member: Member) -> tuple[int, int | None]:
    """Rows recorded so far and the total the member will record (None: not known yet)."""
    followed = member.follow()
    if followed is None:
        return 0, None
    followed.refresh()
    return followed.totals.rows, member.total


def results_table(lab: list[Member]) -> Table:
    """The members side by side: how each ended, what it recorded, where."""
    table = Table(title="the lab's testbeds (folders above)")
    for column in ("testbed", "exit", "status", "rows", "mean power (W)", "mean reward"):
        table.add_column(column, no_wrap=column == "testbed")
    for member in lab:
        code = member.process.returncode if member.process is not None else None
        followed = member.follow()
        if followed is None:
            table.add_row(member.name, str(code), "nothing recorded: see its log", "0", "-",
                          "-")
            continue
        run_dir = RunDirectory(followed.path, followed.table)
        meta = run_dir.read_meta()
        status = meta.get("status") or meta.get("exit", {}).get("status", "?")
        rows = run_dir.read_rounds(pa.schema([])).to_pandas()
        table.add_row(member.name, str(code), status, str(len(rows)),
                      _mean(rows, "power_w"), _mean(rows, "reward"))
    return table


def _mean(rows: pd.DataFrame, column: str) -> str:
    if column not in rows or not len(rows):
        return "-"
    values = rows[column].to_numpy(dtype=float)
    if "valid" in rows:
        values = values[rows["valid"].to_numpy(dtype=bool)]
    return f"{np.nanmean(values):.3f}" if np.isfinite(values).any() else "-"
