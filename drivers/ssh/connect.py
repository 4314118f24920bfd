"""Opening one authenticated SSH connection the way a careful operator would.

Host keys follow OpenSSH's rules for a lab: a known key must match (a changed key is never
accepted, whatever the config says); an unknown key is refused unless the config trusts
unknown hosts, and then it is appended to known_hosts with a warning, so it is checked on
every later connection. Authentication is by key file or ssh-agent only, never by password.

Dead peers are noticed by TCP keepalives and a TCP user timeout (the kernel closes the socket,
paramiko's transport stops), which also catches a host that vanished without closing the
connection; paramiko's own SSH keepalives keep NAT and firewall state fresh.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType

from drivers.ssh.errors import AuthError, HostKeyError, SshError
from hil.base.errors import HilError

log = logging.getLogger(__name__)

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# Unanswered TCP keepalive probes before the kernel declares the peer dead.
_KEEPALIVE_PROBES = 3


@dataclass(frozen=True)
class SshTarget:
    """Where and how to connect; `where` is how messages name the host."""

    name: str
    hostname: str
    port: int
    username: str
    key_path: str | None
    use_agent: bool
    known_hosts_path: str
    trust_unknown_host: bool
    connect_timeout_s: float
    keepalive_s: float

    @property
    def where(self) -> str:
        return f"host {self.name} ({self.username}@{self.hostname}:{self.port})"

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this host: "host" on port 22, else "[host]:port"."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def known_hosts_file(self) -> Path:
        return Path(self.known_hosts_path).expanduser()


def connect(target: SshTarget) -> paramiko.SSHClient:
    """An authenticated client with keepalives on; SshError subclasses otherwise."""
    pkey = _load_key(target) if target.key_path else None
    if pkey is None and not target.use_agent:
        raise AuthError(f"{target.where}: no way to authenticate: set key_path to a private "
                        "key file, or use_agent: true with the key loaded in ssh-agent")
    client = paramiko.SSHClient()
    if target.known_hosts_file.is_file():
        client.load_host_keys(str(target.known_hosts_file))
    client.set_missing_host_key_policy(_KnownHostsPolicy(target))
    try:
        client.connect(target.hostname, port=target.port, username=target.username, pkey=pkey,
                       allow_agent=target.use_agent, look_for_keys=False,
                       timeout=target.connect_timeout_s,
                       banner_timeout=target.connect_timeout_s,
                       auth_timeout=target.connect_timeout_s)
    except HilError:  # raised by _KnownHostsPolicy
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _changed_host_key(target, exc) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise _refused(target, str(exc)) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport = client.get_transport()
        handshake_done = transport is not None and transport.is_active()
        client.close()
        if handshake_done:  # e.g. "No authentication methods available": nothing to offer
            raise _refused(target, str(exc)) from None
        raise SshError(f"cannot connect to {target.where}: {exc or type(exc).__name__}; "
                       "check that the host is up, that sshd listens on this port, and that "
                       "no firewall is in the way") from None
    transport = client.get_transport()
    assert transport is not None  # connect() returned, so the transport is up
    if isinstance(transport.sock, socket.socket):  # not a proxy channel
        _tune_socket(transport.sock, target.keepalive_s)
    if target.keepalive_s > 0:
        transport.set_keepalive(max(1, round(target.keepalive_s)))
    return client


def fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint as `ssh-keygen -l` prints it, to compare by eye on the host."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host absent from known_hosts (a mismatch raises before)."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        # `hostname` is already in known_hosts form: "host", or "[host]:port" off port 22.
        target = self.target
        path = target.known_hosts_file
        if not target.trust_unknown_host:
            port_flag = f"-p {target.port} " if target.port != 22 else ""
            raise HostKeyError(
                f"host key of {target.where} is not in {path} (the host presents "
                f"{key.get_name()} {fingerprint(key)}): verify that fingerprint on the host "
                "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and add the key with "
                f"`ssh-keyscan {port_flag}{target.hostname} >> {path}`, "
                "or set trust_unknown_host: true")
        _append_known_host(path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusting the unknown host key of %s (%s %s) and adding it to %s, because "
                    "trust_unknown_host is set; later connections will require this key",
                    target.where, key.get_name(), fingerprint(key), path)


def _append_known_host(path: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append one OpenSSH known_hosts line (appending keeps the user's other entries as-is)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as file:
        file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _changed_host_key(target: SshTarget, exc: paramiko.BadHostKeyException) -> HostKeyError:
    return HostKeyError(
        f"host key of {target.where} has CHANGED: it presents {exc.key.get_name()} "
        f"{fingerprint(exc.key)} but {target.known_hosts_file} holds "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}. Someone may be "
        "intercepting the connection, or the host was reinstalled; only if you are sure it is "
        f"the latter, remove the old key with `ssh-keygen -R '{target.known_hosts_name}' -f "
        f"{target.known_hosts_file}` and add the new one (trust_unknown_host never "
        "overrides a changed key)")


def _refused(target: SshTarget, detail: str) -> AuthError:
    offered = " and ".join(filter(None, [
        f"key {target.key_path}" if target.key_path else "",
        "ssh-agent" if target.use_agent else ""]))
    agent_note = ("" if not target.use_agent or os.environ.get("SSH_AUTH_SOCK")
                  else " (SSH_AUTH_SOCK is not set, so no agent is reachable)")
    return AuthError(
        f"authentication as {target.username} to {target.where} was refused ({detail}; "
        f"offered: {offered}{agent_note}): put the public key in "
        f"~{target.username}/.ssh/authorized_keys on the host (ssh-copy-id does it), or fix "
        "key_path / load the key into ssh-agent")


def _load_key(target: SshTarget) -> paramiko.PKey:
    """Read the key file here, so a missing, encrypted or unreadable key says so plainly."""
    path = Path(target.key_path or "").expanduser()
    try:
        return paramiko.PKey.from_path(path)
    # without a password, an encrypted OpenSSH-format key raises TypeError in cryptography
    except (paramiko.PasswordRequiredException, TypeError):
        raise AuthError(f"{target.where}: key {path} is protected by a passphrase: load it "
                        "into ssh-agent (ssh-add) and set use_agent: true without key_path"
                        ) from None
    except (paramiko.SSHException, UnknownKeyType, OSError, ValueError) as exc:
        raise AuthError(f"{target.where}: cannot read the private key {path}: {exc}; set "
                        "key_path to an OpenSSH private key file (ssh-keygen -t ed25519)"
                        ) from None


def _tune_socket(sock: socket.socket, keepalive_s: float) -> None:
    """No Nagle delay, and (keepalive_s > 0) let the kernel drop a silent peer.

    Each call is a few small request/reply messages; with Nagle's algorithm against the
    peer's delayed ACKs, each would wait about 40 ms. A silent peer is declared dead after
    about keepalive_s * (1 + probes) seconds.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive_s <= 0:
        return
    period_s = max(1, round(keepalive_s))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    linux_options = {"TCP_KEEPIDLE": period_s, "TCP_KEEPINTVL": period_s,
                     "TCP_KEEPCNT": _KEEPALIVE_PROBES,
                     # unacknowledged data (e.g. a keepalive packet) also gives up in time
                     "TCP_USER_TIMEOUT": period_s * (1 + _KEEPALIVE_PROBES) * 1000}
    for option, value in linux_options.items():
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
