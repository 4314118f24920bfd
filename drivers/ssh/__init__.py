"""SSH: the `ProcessHost` driver for testbed machines (paramiko; tested against OpenSSH sshd)."""

from drivers.ssh.errors import (
    AuthError,
    CommandError,
    CommandTimeoutError,
    ConnectionLostError,
    HostKeyError,
    SshError,
)
from drivers.ssh.host import SshHost

__all__ = ["AuthError", "CommandError", "CommandTimeoutError", "ConnectionLostError",
           "HostKeyError", "SshError", "SshHost"]
