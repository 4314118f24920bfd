"""One srsRAN program on one host: its files uploaded, started, watched for its ready line.

srsRAN says what state it is in on its console (stdout), which `ProcessHost.start` writes
to the process's log on the host. A program is *ready* when its log shows `ready` (e.g.
srsUE's ``Network attach successful``); it has *failed* when the log shows one of
`failures` (each with what to do about it) or the process is gone. Both are read with
`ProcessHost.tail`, so the same code watches a program on this machine (through the local
sshd) and on a lab host.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drivers.protocols import ProcessHost
from hil.base.errors import HilError

log = logging.getLogger(__name__)

_POLL_S = 0.2
_TAIL_LINES = 400
_SHOWN_LINES = 3


class SrsProcessError(HilError):
    """A srsRAN program did not start, did not become ready, or died."""


@dataclass
class SrsProcess:
    """`name` is the process name on its host (log: ``<state_dir>/<name>.log``)."""

    name: str
    host: ProcessHost
    binary: str
    conf_path: str
    files: Mapping[str, str]
    """Remote path -> text, uploaded before every start (the rendered configs)."""
    ready: re.Pattern[str]
    failures: Sequence[tuple[re.Pattern[str], str]] = ()
    """(log pattern, what to do about it; "" if the line says it all)."""
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 30.0

    @property
    def command(self) -> str:
        return shlex.join([self.binary, self.conf_path, *self.args])

    def start(self) -> None:
        """Upload the files, stop a leftover of the same name, start, wait until ready."""
        for remote_path, text in self.files.items():
            self.host.put_text(text, remote_path)
        if self.host.is_running(self.name):
            log.warning("stopping %s left running on %s", self.name, self._where)
            self.host.stop(self.name)
        self.host.start(self.name, self.command, env=dict(self.env))
        self.wait_for(self.ready, self.start_timeout_s, "ready")

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float, what: str) -> str:
        """The first log line matching `pattern`; SrsProcessError if it fails or times out."""
        deadline = time.monotonic() + timeout_s
        while True:
            log_text = self.host.tail(self.name, _TAIL_LINES)
            if match := pattern.search(log_text):
                return match.group(0)
            for failure, hint in self.failures:
                if failed := failure.search(log_text):
                    advice = f"; {hint}" if hint else ""
                    raise SrsProcessError(f"{self.name} on {self._where} failed: "
                                          f"{failed.group(0).strip()}{advice} ({self._log_hint})")
            if not self.host.is_running(self.name):
                raise SrsProcessError(f"{self.name} on {self._where} exited before it was "
                                      f"{what}: {self._last_lines(log_text)} ({self._log_hint})")
            if time.monotonic() > deadline:
                raise SrsProcessError(
                    f"{self.name} on {self._where} was not {what} within {timeout_s:.0f} s "
                    f"(waiting for /{pattern.pattern}/): {self._last_lines(log_text)} "
                    f"({self._log_hint})")
            time.sleep(_POLL_S)

    def is_running(self) -> bool:
        return self.host.is_running(self.name)

    def stop(self) -> None:
        self.host.stop(self.name)

    @property
    def _where(self) -> str:
        return getattr(self.host, "where", "its host")

    @property
    def _log_hint(self) -> str:
        return f"its log: `{self.name}.log` in the host's state directory"

    @staticmethod
    def _last_lines(log_text: str) -> str:
        lines = [line.strip() for line in log_text.strip().splitlines() if line.strip()]
        return " | ".join(lines[-_SHOWN_LINES:]) or "nothing logged"
