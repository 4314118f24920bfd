"""What can go wrong on an SSH host. Every message names the host, what happened and what to do."""

from __future__ import annotations

from drivers.protocols import CommandResult
from hil.base.errors import HilError


class SshError(HilError):
    """An SSH host could not do what was asked."""


class HostKeyError(SshError):
    """The host's key is unknown (and not trusted by config) or has changed since it was known."""


class AuthError(SshError):
    """The host refused our key or agent, or there was no usable key to offer."""


class ConnectionLostError(SshError):
    """The connection dropped; every call raises this until `SshHost.reconnect()`."""


class CommandError(SshError):
    """A command exited non-zero under `check=True`; `result` holds its output."""

    def __init__(self, message: str, result: CommandResult) -> None:
        self.result = result
        super().__init__(message)


class CommandTimeoutError(SshError):
    """A command outlived its `timeout_s`; it is killed on the host."""
