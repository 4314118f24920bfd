"""Fixtures shared across test files, and when the real-srsRAN tests run."""

from __future__ import annotations

import pytest
from real_srsran import PREFIX, build_missing
from sshd_fixture import sshd  # noqa: F401  (a real OpenSSH server: tests/sshd_fixture.py)

_DESELECTED: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `srsran` tests run whenever this checkout's patched build is installed; without
    it they are deselected (never skipped one by one), and the summary says why."""
    why = build_missing()
    if why is None:
        return
    srsran = [item for item in items if item.get_closest_marker("srsran")]
    if srsran:
        config.hook.pytest_deselected(items=srsran)
        items[:] = [item for item in items if not item.get_closest_marker("srsran")]
        _DESELECTED.append(f"srsran tests: {len(srsran)} deselected: {why}; build it with "
                           f"`hil srsran build --source <srsRAN_4G checkout> --prefix {PREFIX}`")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _DESELECTED:
        terminalreporter.write_line(line)
