"""One exception family for everything an operator may have to act on.

Every message says what went wrong, where (file, key, host or endpoint) and what to do.
Catch `HilError` at the CLI boundary; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class HilError(Exception):
    """Base of all errors that vbs-hil reports to the operator."""


class ConfigError(HilError):
    """A config file is missing, unreadable or invalid; names the file and the key."""

    def __init__(self, path: str | PathLike[str], key: str, message: str) -> None:
        self.path, self.key = path, key
        where = ": ".join(str(part) for part in (path, key) if part)
        super().__init__(f"{where}: {message}")


class ProtocolError(HilError):
    """A control message broke the rtctl protocol (bad JSON, wrong version, bad field)."""


class ThresholdError(ProtocolError):
    """A threshold is out of range or unknown; nothing was applied."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"threshold {key}: {message}")


class VbsUnreachableError(HilError):
    """The vBS control endpoint did not answer after all retries."""


class VbsRejectedError(HilError):
    """The vBS answered `ok: false`; its error text is included."""


class MeterError(HilError):
    """The power meter did not give a usable reading."""


class RecorderError(HilError):
    """The run directory cannot be written or read back."""


class ResumeError(HilError):
    """A run directory cannot be resumed (missing checkpoint, config mismatch)."""
