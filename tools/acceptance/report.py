"""The report of one suite run: the testbed's identity, each test's outcome (a skipped test
with its reason), and what each test measured (tables, figures), as Markdown, so a lab can
put its testbed beside another's."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


@dataclass
class Measured:
    """What one test measured: tables (rows of figures) and figures, in the order taken."""

    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)

    def table(self, title: str, rows: list[dict[str, Any]]) -> None:
        self.tables.append((title, rows))


@dataclass
class Outcome:
    test: str
    outcome: str  # passed, failed, skipped
    duration_s: float
    detail: str = ""


@dataclass
class SuiteReport:
    config: Path
    out_dir: Path
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    identity: dict[str, Any] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    measured: dict[str, Measured] = field(default_factory=dict)

    def measured_by(self, test: str) -> Measured:
        return self.measured.setdefault(test, Measured())

    def save_figure(self, test: str, title: str, figure: Figure) -> None:
        """The figure as a PNG beside the report, listed under its test."""
        name = re.sub(r"[^a-z0-9]+", "-", f"{_short(test)}-{title}".lower()).strip("-") + ".png"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.out_dir / name, dpi=110, bbox_inches="tight")
        self.measured_by(test).figures.append((title, name))

    def write(self) -> Path:
        """report.md (and report.json: the outcomes and identity) in `out_dir`."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        counts = {kind: sum(o.outcome == kind for o in self.outcomes)
                  for kind in ("passed", "failed", "skipped")}
        lines = [f"# Acceptance of `{self.config}`", "",
                 f"Run {self.started:%Y-%m-%d %H:%M} UTC: {counts['passed']} passed, "
                 f"{counts['failed']} failed, {counts['skipped']} skipped.", "",
                 "## The testbed", "", "| what | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in self.identity.items()]
        lines += ["", "## Tests", "", "| test | outcome | s | why |", "|---|---|---|---|"]
        lines += [f"| `{_short(o.test)}` | {o.outcome} | {o.duration_s:.1f} | "
                  f"{_cell(o.detail)} |" for o in self.outcomes]
        for test, measured in self.measured.items():
            lines += ["", f"## `{_short(test)}`"]
            for title, rows in measured.tables:
                lines += ["", f"**{title}**", "", *_markdown_table(rows)]
            for title, name in measured.figures:
                lines += ["", f"![{title}]({name})"]
        path = self.out_dir / "report.md"
        path.write_text("\n".join(lines) + "\n")
        (self.out_dir / "report.json").write_text(json.dumps({
            "config": str(self.config), "started": self.started.isoformat(),
            "identity": self.identity,
            "outcomes": [o.__dict__ for o in self.outcomes]}, indent=1, default=str))
        return path


def _short(test: str) -> str:
    return test.rsplit("::", 1)[-1]


def _cell(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    keys = list(rows[0])
    return (["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            + ["| " + " | ".join(_figure(row.get(k)) for k in keys) + " |" for row in rows])


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _cell(value)
