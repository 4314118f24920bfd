"""Fixtures shared across test files."""

from sshd_fixture import sshd  # noqa: F401  (a real OpenSSH server: tests/sshd_fixture.py)
