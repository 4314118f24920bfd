"""One run per testbed: a claim on the vBS host that a run holds for its whole life.

Two runs on one testbed would push each other's thresholds and measure each other's power;
the second one to start is refused, told who holds the testbed, since when and in which run
directory.

Why a file with a heartbeat and not an OS lock: the vBS host is reached over SSH and a run
outlives a dropped connection (the watchdog reconnects), so a lock tied to a connection
would be lost with it. The claim is a file ``testbed.json`` in the vBS host's state folder
(where that host keeps the processes runs start on it, ``~/.vbs-hil/<host name>``), or
``~/.vbs-hil/locks/<endpoint>.json`` on this machine for a local testbed, created only if
absent (O_EXCL, or the shell's noclobber over SSH) so that of two runs starting together
one wins. It names its holder, and the holder touches it every HEARTBEAT_S. A claim whose
holder is gone is taken over by the next run, with a warning: one made from this machine by
a process that no longer exists (a SIGKILLed run), or one untouched for STALE_S by the
host's own clock (a lost machine).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from drivers.ssh.errors import ConnectionLostError
from hil.base.errors import HilError

if TYPE_CHECKING:
    from drivers.protocols import CommandResult
    from drivers.ssh import SshHost
    from hil.config import HilConfig

log = logging.getLogger(__name__)

LOCAL_LOCKS = Path.home() / ".vbs-hil" / "locks"
HEARTBEAT_S = 5.0
STALE_S = 30.0
"""Six missed heartbeats: a claim this old was left by a run that is gone."""


class TestbedBusyError(HilError):
    """Another run holds the testbed."""


class LockFiles(Protocol):
    """Where the claims live: this machine's files, or the vBS host's over SSH."""

    where: str

    def create(self, name: str, text: str) -> bool:
        """Write the claim if there is none; False if there is."""
        ...

    def read(self, name: str) -> tuple[str, float] | None:
        """The claim's text and its age in seconds since last touched; None if none."""
        ...

    def touch(self, name: str) -> None: ...

    def remove(self, name: str) -> None: ...

    def close(self) -> None: ...


class LocalLockFiles:
    """Claims in a folder of this machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where = str(directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def create(self, name: str, text: str) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            file.write(text)
        return True

    def read(self, name: str) -> tuple[str, float] | None:
        try:
            path = self._path(name)
            return path.read_text(), time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None

    def touch(self, name: str) -> None:
        os.utime(self._path(name))

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to release."""


class SshLockFiles:
    """Claims on the vBS host, over its SSH connection, in the folder where the host keeps
    the processes a run starts there (its `state_dir`): what two runs would fight over."""

    def __init__(self, host: SshHost) -> None:
        self.host = host
        self.directory = host.state_dir.replace("~", "$HOME", 1)
        self.where = f"{host.where}:{host.state_dir}"

    def _path(self, name: str) -> str:
        return f'"{self.directory}/{name}.json"'

    def create(self, name: str, text: str) -> bool:
        result = self._run(f'mkdir -p "{self.directory}" && (set -C; printf %s '
                           f"{shlex.quote(text)} > {self._path(name)}) 2>/dev/null")
        return result.exit_code == 0

    def read(self, name: str) -> tuple[str, float] | None:
        path = self._path(name)
        result = self._run(f"[ -f {path} ] || exit 3; "
                           f"echo $(( $(date +%s) - $(stat -c %Y {path}) )); cat {path}")
        if result.exit_code != 0:
            return None
        age, _, text = result.stdout.partition("\n")
        return text, float(age)

    def touch(self, name: str) -> None:
        self._run(f"touch -c {self._path(name)}")

    def remove(self, name: str) -> None:
        self._run(f"rm -f {self._path(name)}")

    def close(self) -> None:
        self.host.close()

    def _run(self, command: str) -> CommandResult:
        """`command` on the host, once more after reconnecting if the connection dropped
        (a run outlives a dropped connection, and so must its claim)."""
        try:
            return self.host.run(command, check=False)
        except ConnectionLostError:
            self.host.reconnect()
            return self.host.run(command, check=False)


class TestbedLock:
    """The claim of one run on one testbed: `acquire`, then `release` when the run ends
    (a context manager does both). A heartbeat thread touches the claim meanwhile."""

    def __init__(self, files: LockFiles, name: str, testbed: str, run: str) -> None:
        self.files, self.name, self.testbed = files, name, testbed
        self.holder = {"run": run, "controller": socket.gethostname(), "pid": os.getpid(),
                       "user": getpass.getuser(),
                       "since_utc": datetime.now(UTC).isoformat(timespec="seconds")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def check(self) -> str:
        """What a run would find, without taking anything: TestbedBusyError if a live run
        holds the testbed (`hil check`)."""
        try:
            found = self.files.read(self.name)
            if found is None:
                return f"testbed {self.testbed} is free"
            self._refuse_if_live(*found)
            return (f"testbed {self.testbed}: a claim untouched for {found[1]:.0f} s, left by a "
                    "run that is gone; the next run takes it over")
        finally:
            self.files.close()

    def acquire(self) -> None:
        """Take the testbed; TestbedBusyError naming the holder if a live run has it."""
        text = json.dumps(self.holder)
        for _ in range(3):  # a claim released or taken over between our steps: try again
            if self.files.create(self.name, text):
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name=f"lock:{self.name}")
                self._thread.start()
                return
            found = self.files.read(self.name)
            if found is None:
                continue
            self._refuse_if_live(*found)
            holder, age_s = _holder(found[0]), found[1]
            log.warning("testbed %s: taking over the claim of run %s (pid %s on %s, untouched "
                        "for %.0f s): that run is gone", self.testbed, holder.get("run", "?"),
                        holder.get("pid", "?"), holder.get("controller", "?"), age_s)
            self.files.remove(self.name)
        raise TestbedBusyError(f"testbed {self.testbed}: could not take its claim "
                               f"({self.files.where}/{self.name}.json); try again")

    def _refuse_if_live(self, text: str, age_s: float) -> None:
        """TestbedBusyError unless the claim was left by a run that is gone: untouched for
        STALE_S, or held from this machine by a process that no longer exists."""
        holder = _holder(text)
        if age_s > STALE_S or _gone(holder):
            return
        raise TestbedBusyError(
            f"testbed {self.testbed} is in use by run {holder.get('run', '?')} (pid "
            f"{holder.get('pid', '?')} on {holder.get('controller', '?')}, user "
            f"{holder.get('user', '?')}) since {holder.get('since_utc', '?')}; wait for it to "
            f"end or stop it (its claim: {self.files.where}/{self.name}.json)")

    def release(self) -> None:
        """Stop the heartbeat and remove the claim, if it is still ours."""
        try:
            if self._thread is None:
                return
            self._stop.set()
            self._thread.join()
            self._thread = None
            found = self.files.read(self.name)
            if found is not None and _holder(found[0]) == self.holder:
                self.files.remove(self.name)
        except (HilError, OSError) as exc:
            log.warning("testbed %s: could not remove the claim (%s); the next run will take "
                        "it over after %.0f s", self.testbed, exc, STALE_S)
        finally:
            self.files.close()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.files.touch(self.name)
            except (HilError, OSError) as exc:  # a dropped connection: the next beat retries
                log.warning("testbed %s: cannot touch the claim: %s", self.testbed, exc)


def _gone(holder: dict) -> bool:
    """Whether the claim's holder ran on this machine and its process has ended."""
    pid = holder.get("pid")
    if holder.get("controller") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def testbed_lock(cfg: HilConfig, run: str) -> TestbedLock | None:
    """The claim a run of `cfg` must hold: on the vBS host (the emulator's, or srsENB's)
    over SSH, on this machine for a local srsRAN testbed or an emulator on a fixed port;
    none for a local emulator on a free port (each run starts its own)."""
    from hil.testbeds import kind_of
    from hil.testbeds.common import connect_host

    kind = kind_of(cfg)
    host_name = kind.lock_host(cfg)
    if host_name is not None:
        host = connect_host(host_name, cfg.hosts[host_name])  # same state_dir as its processes
        return TestbedLock(SshLockFiles(host), "testbed", f"{host_name} ({host.where})", run)
    if not kind.shared_locally(cfg):
        return None
    endpoint = cfg.vbs.control_endpoint
    name = "vbs-" + "".join(c if c.isalnum() else "_" for c in endpoint)
    return TestbedLock(LocalLockFiles(LOCAL_LOCKS), name, f"{endpoint} on this machine", run)
