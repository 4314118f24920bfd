"""A real OpenSSH sshd on 127.0.0.1 for tests: throw-away host and user keys, a free port.

Request the `sshd` fixture (registered in tests/conftest.py) and connect with
`sshd.host_params()`, e.g. `SshHost("bbu", **sshd.host_params())`. The server lets the
current user in with `sshd.user_key` only; `sshd.known_hosts` already trusts its host key;
the host's state directory is in the test's tmp_path, never in the real home.
`kill()` and `start()` let a test drop every connection and bring the server back on the
same port.

As root (as in containers), sshd needs /run/sshd for privilege separation; the fixture
creates it. Without /usr/sbin/sshd the tests that use it skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
READY_TIMEOUT_S = 5.0
INSTALL_HINT = "apt-get install openssh-server"


@dataclass
class Sshd:
    """One sshd listening on 127.0.0.1:port, configured from files in `root`."""

    root: Path
    port: int = 0
    username: str = field(default_factory=lambda: pwd.getpwuid(os.getuid()).pw_name)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def user_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def log_path(self) -> Path:
        return self.root / "sshd.log"

    def host_params(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for SshHost that reach this server, `overrides` applied."""
        params: dict[str, Any] = {
            "hostname": "127.0.0.1", "port": self.port, "username": self.username,
            "key_path": str(self.user_key), "use_agent": False,
            "known_hosts_path": str(self.known_hosts), "connect_timeout_s": 5.0,
            "state_dir": str(self.root / "state")}
        params.update(overrides)
        return params

    def host_key_line(self) -> str:
        """This server's host key as a known_hosts line (what a client should store)."""
        key_type, key_b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key_b64}"

    def setup(self) -> None:
        """Keys, authorized_keys, known_hosts and sshd_config; then start on a free port."""
        _keygen(self.host_key)
        _keygen(self.user_key)
        shutil.copy(self.user_key.with_suffix(".pub"), self.root / "authorized_keys")
        if os.getuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        for _attempt in range(3):  # another process may grab the free port before sshd binds
            self.port = _free_port()
            self.known_hosts.write_text(self.host_key_line() + "\n")
            self._write_config()
            try:
                self.start()
                return
            except RuntimeError:
                if "Address already in use" not in self.log_path.read_text():
                    raise
        raise RuntimeError(f"sshd found no free port; see {self.log_path}")

    def start(self) -> None:
        """Start sshd on `self.port` and wait until it accepts connections."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"sshd did not listen on port {self.port} within "
                           f"{READY_TIMEOUT_S} s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the listener and every session process under it: all connections drop.

        The tree is frozen (SIGSTOP) until it stops growing, then killed: a process forked
        between a look at the tree and its parent's death would be orphaned and missed.
        """
        if self.process is None:
            return
        listener = psutil.Process(self.process.pid)
        frozen: dict[int, psutil.Process] = {}
        while new := [process for process in [listener, *listener.children(recursive=True)]
                      if process.pid not in frozen]:
            for process in new:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.suspend()
                frozen[process.pid] = process
        for process in frozen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(timeout=5)
        self.process = None
        # Orphans are reaped by PID 1, which may take its time: dead is enough.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while any(_alive(process) for process in frozen.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("sshd's session processes survived SIGKILL")
            time.sleep(0.01)

    def _write_config(self) -> None:
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            # bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is nested;
            # the tests must not depend on (or wait for) the tester's own shell set-up.
            "SetEnv SHLVL=1",
        ]
        if _openssh_version() >= (9, 8):
            # Newer sshd penalises a source after refused logins and killed sessions, which
            # these tests cause on purpose from 127.0.0.1.
            lines.append("PerSourcePenalties no")
        (self.root / "sshd_config").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running sshd for this test; killed (with its sessions) at teardown."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip(f"needs OpenSSH's sshd and ssh-keygen: {INSTALL_HINT}")
    root = tmp_path / "sshd"
    root.mkdir()
    server = Sshd(root)
    server.setup()
    try:
        yield server
    finally:
        server.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vbs-hil-test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _openssh_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, from `sshd -V` (which prints to stderr)."""
    banner = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)
