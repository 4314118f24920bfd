"""Progress for long work: a live bar with ETA on a terminal, plain lines in logs.

Without a terminal (CI, nohup, a pipe) a live bar cannot show, so `LineLog` prints one line
every `every_s` seconds and at the end instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console, label: str) -> Progress:
    """A bar with done/total, elapsed time, ETA and a task's `note` (e.g. jobs running);
    off when `console` is not a terminal."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    TextColumn("{task.fields[note]}"), console=console,
                    disable=not console.is_terminal)


class LineLog:
    """Plain progress lines (`label: done/total unit (x %), t s`) where no bar can show."""

    def __init__(self, console: Console, total: int, label: str, unit: str,
                 every_s: float = 30.0) -> None:
        self.console, self.total, self.label, self.unit = console, total, label, unit
        self.every_s, self.done = every_s, 0
        self.note = ""
        self.on = not console.is_terminal
        self.t0 = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and (now - self.last >= self.every_s or self.done >= self.total):
            self.last = now
            note = f"; {self.note}" if self.note else ""
            self.console.print(f"{self.label}: {self.done}/{self.total} {self.unit} "
                               f"({100 * self.done / max(self.total, 1):.0f} %), "
                               f"{now - self.t0:.0f} s{note}", highlight=False)


class Tracker:
    """One count of long work shown both ways: the live bar and, without a terminal, lines."""

    def __init__(self, progress: Progress, task: TaskID, log: LineLog) -> None:
        self.progress, self.task, self.log = progress, task, log
        self.console = progress.console  # prints above the live bar

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
        self.log.advance(n)

    def note(self, what: object) -> None:
        """Show `what` (e.g. jobs done/running/failed) beside the count."""
        self.progress.update(self.task, note=str(what))
        self.log.note = str(what)


@contextmanager
def tracked(console: Console, label: str, unit: str, total: int,
            completed: int = 0) -> Iterator[Tracker]:
    """A bar and a `LineLog` counting `total` `unit` (of which `completed` were done before:
    the bar starts there, the lines count what is left)."""
    with progress_bar(console, f"{label} {unit}") as progress:
        task = progress.add_task(label, total=total, completed=completed, note="")
        yield Tracker(progress, task, LineLog(console, total - completed, label, unit))
