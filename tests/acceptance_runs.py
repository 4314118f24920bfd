"""Running `hil acceptance` from a test and reading its report: the suite runs in a process
of its own (pytest inside pytest would share state)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def acceptance(*args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """`hil acceptance ARGS`, its output captured."""
    return subprocess.run([sys.executable, "-c", "from tools.cli import main; "
                           "raise SystemExit(main())", "acceptance", *args],
                          capture_output=True, text=True, timeout=timeout_s)


def outcomes(report: Path) -> dict[str, dict]:
    """The report's outcomes by test name."""
    data = json.loads((report / "report.json").read_text())
    return {o["test"].rsplit("::", 1)[-1]: o for o in data["outcomes"]}
