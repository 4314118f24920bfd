"""A test whose prerequisite is missing is skipped on a developer's machine and fails
under CI (tests/prerequisites.py)."""

import pytest
from prerequisites import missing


def test_a_missing_prerequisite_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="iperf3 not installed"):
        missing("iperf3 not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing under CI: iperf3 not installed"):
        missing("iperf3 not installed")
