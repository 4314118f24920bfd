"""A local OpenSSH sshd on 127.0.0.1: the SSH twin of a testbed host.

The emulated testbed reaches "its" BBU host over SSH like a lab does, so the SSH driver
(`drivers/ssh`) runs for real in CI and in `make run`. This module starts OpenSSH's own
`sshd` (Debian: openssh-server) as the current user, with a throw-away host key and user key
in one folder, listening on loopback only, letting in only that user key:

    python -m drivers.emulated.sshd start .hil/sshd 2222   # idempotent; prints the host entry
    python -m drivers.emulated.sshd stop .hil/sshd

The tests start one per test on a free port (`tests/sshd_fixture.py`). As root (as in
containers) sshd needs /run/sshd for privilege separation; it is created.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from hil.base.errors import HilError

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
READY_TIMEOUT_S = 5.0
INSTALL_HINT = "apt-get install openssh-server"


class LocalSshdError(HilError):
    """The local sshd could not be started."""


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

    def setup(self, *, detach: bool = False) -> None:
        """Keys (kept if present), authorized_keys, known_hosts and sshd_config; then start.

        Port 0 picks a free port (tests); a fixed port must be free. `detach` leaves sshd
        running in its own session after this process exits (`make run`).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key, self.user_key):
            if not key.exists():
                _keygen(key)
        shutil.copy(self.user_key.with_suffix(".pub"), self.root / "authorized_keys")
        if os.getuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        fixed_port = self.port
        if fixed_port and _listening(fixed_port):
            raise LocalSshdError(
                f"port {fixed_port} on 127.0.0.1 is taken by another program (another "
                "checkout's local sshd? `make stop-sshd` there); or choose a free port with "
                "`make run SSHD_PORT=...` and set hosts.bbu.port in the config to match")
        for _attempt in range(3):  # another process may grab the free port before sshd binds
            self.port = fixed_port or free_port()
            self.known_hosts.write_text(self.host_key_line() + "\n")
            self._write_config()
            try:
                self.start(detach=detach)
                return
            except LocalSshdError:
                if fixed_port or "Address already in use" not in self.log_path.read_text():
                    raise
        raise LocalSshdError(f"sshd found no free port; see {self.log_path}")

    def start(self, *, detach: bool = False) -> None:
        """Start sshd on `self.port` and wait until it accepts connections."""
        if not SSHD.exists():
            raise LocalSshdError(f"{SSHD} is missing: {INSTALL_HINT}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalSshdError(f"sshd on 127.0.0.1:{self.port} exited with "
                                     f"{self.process.returncode}: {self._log_tail()}")
            if _listening(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise LocalSshdError(f"sshd did not listen on port {self.port} within "
                             f"{READY_TIMEOUT_S} s: {self._log_tail()}")

    def running_pid(self) -> int | None:
        """PID of a (detached) sshd started from this folder and still serving, else None."""
        try:
            pid = int((self.root / "sshd.pid").read_text())
            cmdline = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if str(self.root / "sshd_config") in cmdline else None

    def _log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no log"

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
                raise LocalSshdError("sshd's session processes survived SIGKILL")
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


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vbs-hil-test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _openssh_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, from `sshd -V` (which prints to stderr)."""
    banner = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def ensure_running(root: Path, port: int) -> Sshd:
    """The sshd serving `root` on `port`, started detached unless it already runs."""
    server = Sshd(root.resolve(), port=port)
    if server.running_pid() is not None and _listening(port):
        return server
    server.setup(detach=True)
    return server


def stop(root: Path) -> bool:
    """Stop the detached sshd of `root`; False if none was running."""
    pid = Sshd(root.resolve()).running_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.emulated.sshd",
                                     description="the local sshd of the emulated testbed")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("root", type=Path, help="folder for keys, config, log and PID file")
    parser.add_argument("port", type=int, nargs="?", default=2222)
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            print("stopped" if stop(args.root) else "not running")
            return 0
        server = ensure_running(args.root, args.port)
    except (LocalSshdError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: local sshd: {exc}", file=sys.stderr)
        return 2
    print(f"local sshd on 127.0.0.1:{server.port} for {server.username}, keys in {server.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
