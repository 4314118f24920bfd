"""`SshHost`: a testbed machine that runs our processes, over one paramiko SSH connection.

The connection opens on first use. Once it drops, every call raises ConnectionLostError
naming the host until `reconnect()`: the caller decides what a lost host means for the run
(processes started there keep running and are found again after reconnecting).

Remote commands run with the login directory as working directory, so relative paths and
paths starting with "~/" are relative to the user's home there. Needs on the host: a POSIX
login shell, coreutils (`timeout`, `setsid`), awk and /proc; `ip netns` needs root.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
import select
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from shlex import quote
from types import TracebackType
from typing import Self

import paramiko

from drivers.protocols import CommandResult
from drivers.ssh import scripts
from drivers.ssh.connect import DEFAULT_KNOWN_HOSTS, SshTarget, connect
from drivers.ssh.errors import (
    CommandError,
    CommandTimeoutError,
    ConnectionLostError,
    SshError,
)

log = logging.getLogger(__name__)

# A process name becomes a file name on the host.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# On expiry `timeout` sends SIGTERM, then SIGKILL this much later.
_KILL_AFTER_S = 2.0
# How long start() may take to see the process running.
_START_TIMEOUT_S = 10.0
# paramiko closes a dropped connection's channels a moment before it marks the transport
# inactive; a failed call waits this long to tell a lost connection from a plain error.
_DROP_GRACE_S = 0.2
_STDERR_TAIL_CHARS = 800


class SshHost:
    """`ProcessHost` over SSH (key or ssh-agent authentication). Not thread-safe.

    Processes started under a name keep their log and pid files in `state_dir` on the host
    (default `~/.vbs-hil/<host name>`); see `drivers.ssh.scripts` for the layout.
    """

    def __init__(self, name: str, hostname: str, *, port: int = 22, username: str,
                 key_path: str | None = None, use_agent: bool = True,
                 known_hosts_path: str | None = None, trust_unknown_host: bool = False,
                 connect_timeout_s: float = 10.0, keepalive_s: float = 5.0,
                 state_dir: str | None = None) -> None:
        _check_name("host", name)
        self.name = name
        self.target = SshTarget(
            name=name, hostname=hostname, port=port, username=username, key_path=key_path,
            use_agent=use_agent, known_hosts_path=known_hosts_path or DEFAULT_KNOWN_HOSTS,
            trust_unknown_host=trust_unknown_host, connect_timeout_s=connect_timeout_s,
            keepalive_s=keepalive_s)
        self.state_dir = state_dir or f"~/.vbs-hil/{name}"
        self._client: paramiko.SSHClient | None = None
        self._lost_reason: str | None = None

    @property
    def where(self) -> str:
        return self.target.where

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection now (calls otherwise open it on first use)."""
        self._transport()

    def reconnect(self) -> None:
        """Drop whatever is left of the connection and open a new one."""
        self._close_client()
        self._lost_reason = None
        self._transport()

    def close(self) -> None:
        """Release the connection; safe to call twice. Remote processes keep running."""
        self._close_client()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- ProcessHost ------------------------------------------------------------------------

    def run(self, command: str, *, timeout_s: float = 30.0, check: bool = True) -> CommandResult:
        """Run `command` with sh on the host; its whole process group is killed after timeout_s.

        Raises CommandTimeoutError on timeout, CommandError on a non-zero exit with `check`.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        with self._session(f"running `{command}`") as transport:
            channel = transport.open_session(timeout=self.target.connect_timeout_s)
            try:
                channel.exec_command(scripts.with_timeout(command, timeout_s, _KILL_AFTER_S))
                channel.shutdown_write()  # a command reading stdin gets EOF, not a hang
                exit_code, stdout, stderr = self._collect(channel, command, timeout_s)
            finally:
                channel.close()
        result = CommandResult(command=command, exit_code=exit_code,
                               stdout=stdout.decode(errors="replace"),
                               stderr=stderr.decode(errors="replace"))
        if check and exit_code != 0:
            raise CommandError(
                f"`{command}` failed on {self.where} with exit code {exit_code}; "
                f"stderr: {_tail_text(result.stderr) or '(empty)'}", result)
        return result

    def put_text(self, text: str, remote_path: str, *, mode: int = 0o644) -> None:
        """Write `text` (UTF-8) to a temporary file beside `remote_path`, then rename it over.

        Readers see the old file or the new one, never half of it; parents are created.
        """
        path = _home_relative(remote_path)
        directory, base = posixpath.split(path)
        if directory:
            self.run(f"mkdir -p -- {quote(directory)}", timeout_s=self.target.connect_timeout_s)
        tmp_path = posixpath.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        with self._session(f"writing {remote_path}") as transport:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None  # from_transport returns None only without a channel
            try:
                with sftp.open(tmp_path, "wb") as file:
                    file.chmod(mode)  # before the content: a secret is never world-readable
                    file.write(text.encode())
                sftp.posix_rename(tmp_path, path)
            except BaseException:
                _remove_quietly(sftp, tmp_path)
                raise
            finally:
                sftp.close()

    def start(self, name: str, command: str, *, netns: str | None = None,
              env: Mapping[str, str] | None = None) -> int:
        """Start `command` detached (setsid) in network namespace `netns` if given.

        Its stdout and stderr go to `<state_dir>/<name>.log`. Raises SshError if a process
        of that name is still running, or if it could not even be launched.
        """
        _check_name("process", name)
        for key in env or {}:
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"environment variable name {key!r} for {name} is not valid")
        files = self._files(name)
        script = scripts.start(files, command, netns=netns, env=env or {})
        result = self.run(script, timeout_s=_START_TIMEOUT_S, check=False)
        if result.exit_code == scripts.EXIT_ALREADY_RUNNING:
            raise SshError(f"process {name} is {result.stdout.strip()} on {self.where}: stop "
                           "it first")
        if result.exit_code != 0:
            netns_hint = f" and that network namespace {netns} exists (ip netns list)"
            raise SshError(
                f"process {name} did not start on {self.where} (exit code "
                f"{result.exit_code}): {_tail_text(result.stderr + self.tail(name, 10))}; "
                f"check the command{netns_hint if netns else ''}")
        pid = int(result.stdout.split()[0])
        log.info("started %s on %s as PID %d: %s", name, self.where, pid, command)
        return pid

    def is_running(self, name: str) -> bool:
        """Whether the process started as `name` is alive (its PID and start time match)."""
        _check_name("process", name)
        result = self.run(scripts.is_running(self._files(name)),
                          timeout_s=self.target.connect_timeout_s, check=False)
        if result.exit_code not in (0, 1):
            raise SshError(f"cannot tell whether {name} runs on {self.where}: "
                           f"{_tail_text(result.stderr)}")
        return result.exit_code == 0

    def stop(self, name: str, *, timeout_s: float = 10.0) -> None:
        """SIGTERM the process's group, SIGKILL it after timeout_s; returns once none of the
        group runs; nothing if not running."""
        _check_name("process", name)
        files = self._files(name)
        budget_s = timeout_s + scripts.KILL_WAIT_S + self.target.connect_timeout_s
        result = self.run(scripts.stop(files, timeout_s), timeout_s=budget_s, check=False)
        outcome = result.stdout.strip()
        if result.exit_code != 0:
            raise SshError(f"process {name} on {self.where} survived SIGTERM and SIGKILL "
                           f"(exit code {result.exit_code}, {outcome or 'no output'}); it may "
                           "be stuck in the kernel (state D): check the host")
        if outcome == "killed":
            log.warning("%s on %s ignored SIGTERM for %g s and was killed", name, self.where,
                        timeout_s)
        else:
            log.info("%s on %s: %s", name, self.where, outcome)

    def kill(self, name: str) -> None:
        """SIGKILL the process's group at once, as a crash would end it (what a fault test
        injects); nothing if not running."""
        _check_name("process", name)
        budget_s = scripts.KILL_WAIT_S + self.target.connect_timeout_s
        result = self.run(scripts.kill(self._files(name)), timeout_s=budget_s, check=False)
        if result.exit_code != 0:
            raise SshError(f"process {name} on {self.where} survived SIGKILL (exit code "
                           f"{result.exit_code}): it may be stuck in the kernel (state D)")
        log.info("%s on %s: %s", name, self.where, result.stdout.strip())

    def tail(self, name: str, lines: int = 50) -> str:
        """The last `lines` lines of the process's log ("" if it never ran)."""
        _check_name("process", name)
        return self.run(scripts.tail(self._files(name), lines),
                        timeout_s=self.target.connect_timeout_s).stdout

    # -- internals --------------------------------------------------------------------------

    def _files(self, name: str) -> scripts.ProcessFiles:
        return scripts.ProcessFiles.in_dir(_home_relative(self.state_dir), name)

    def _transport(self) -> paramiko.Transport:
        """The live transport, connecting on first use; ConnectionLostError once it dropped."""
        if self._lost_reason is not None:
            raise self._lost_error()
        if self._client is None:
            self._client = connect(self.target)
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self._mark_lost("the SSH transport closed")
        return transport

    @contextmanager
    def _session(self, doing: str) -> Iterator[paramiko.Transport]:
        """Yield the transport; turn paramiko and socket failures into SshError subclasses."""
        transport = self._transport()
        try:
            yield transport
        except (paramiko.SSHException, EOFError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            if _dropped(transport):
                raise self._mark_lost(f"while {doing}: {detail}") from exc
            raise SshError(f"{doing} on {self.where} failed: {detail}") from exc

    def _collect(self, channel: paramiko.Channel, command: str,
                 timeout_s: float) -> tuple[int, bytes, bytes]:
        """Read stdout and stderr until the command ends; CommandTimeoutError at the deadline."""
        deadline = time.monotonic() + timeout_s
        stdout, stderr = bytearray(), bytearray()

        def drain() -> None:
            while channel.recv_ready():
                stdout.extend(channel.recv(65536))
            while channel.recv_stderr_ready():
                stderr.extend(channel.recv_stderr(65536))

        # the channel's fileno becomes readable on output, EOF and close
        while not (channel.eof_received or channel.closed):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise self._timed_out(command, timeout_s)
            select.select([channel], [], [], remaining_s)
            drain()
        drain()
        # The exit status follows EOF. paramiko also sets status_event when the channel
        # closes without one (exit_status stays -1): a dropped connection, which _session
        # tells from a misbehaving server.
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise self._timed_out(command, timeout_s)
        if channel.exit_status < 0:
            raise EOFError(f"the channel closed without an exit status for `{command}`")
        return channel.exit_status, bytes(stdout), bytes(stderr)

    def _timed_out(self, command: str, timeout_s: float) -> CommandTimeoutError:
        return CommandTimeoutError(
            f"`{command}` did not finish within {timeout_s:g} s on {self.where}; it is killed "
            f"there (SIGTERM, SIGKILL {_KILL_AFTER_S:g} s later): raise timeout_s if it needs "
            "longer")

    def _mark_lost(self, reason: str) -> ConnectionLostError:
        self._lost_reason = reason
        self._close_client()
        return self._lost_error()

    def _lost_error(self) -> ConnectionLostError:
        return ConnectionLostError(
            f"SSH connection to {self.where} lost ({self._lost_reason}); processes started "
            "there keep running unless the host went down: check that the host is up and "
            "sshd runs, then reconnect()")

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _dropped(transport: paramiko.Transport) -> bool:
    if transport.is_active():
        transport.join(_DROP_GRACE_S)
    return not transport.is_active()


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '_', '.' or '-' "
                         "(it names files on the host)")


def _home_relative(path: str) -> str:
    """'~/x' -> 'x': commands and SFTP both start in the login directory, the user's home."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


def _tail_text(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    """Best effort: the original error matters more than a leftover temporary file."""
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException):
        log.debug("could not remove the temporary file %s", path)
