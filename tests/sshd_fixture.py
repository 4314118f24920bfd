"""The `sshd` fixture: a real OpenSSH sshd on 127.0.0.1 per test (drivers/emulated/sshd.py).

Request the `sshd` fixture (registered in tests/conftest.py) and connect with
`sshd.host_params()`, e.g. `SshHost("bbu", **sshd.host_params())`. The server lets the
current user in with `sshd.user_key` only; `sshd.known_hosts` already trusts its host key;
the host's state directory is in the test's tmp_path, never in the real home.
`kill()` and `start()` let a test drop every connection and bring the server back on the
same port. Without /usr/sbin/sshd the tests that use it skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prerequisites import missing

from drivers.emulated.sshd import INSTALL_HINT, SSHD, Sshd

__all__ = ["Sshd", "sshd"]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running sshd for this test; killed (with its sessions) at teardown."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        missing(f"needs OpenSSH's sshd and ssh-keygen: {INSTALL_HINT}")
    root = tmp_path / "sshd"
    root.mkdir()
    server = Sshd(root)
    server.setup()
    try:
        yield server
    finally:
        server.kill()
