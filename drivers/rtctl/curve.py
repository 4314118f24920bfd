"""CURVE security for rtctl on a lab network (ZeroMQ's CurveZMQ with a ZAP handler).

By default rtctl listens on loopback only. When the controller and the vBS are on different
machines, `vbs.curve_dir` turns on CURVE: the link is encrypted, the controller checks it
talks to the vBS holding the server key, and the vBS lets in only clients whose public key
is in its `authorized_clients/` folder; any other client gets no reply at all.

A key folder (made by `hil keys DIR`) holds, in ZeroMQ's certificate format:

    server.key, server.key_secret     the vBS's keypair (the secret stays on the vBS host)
    client.key, client.key_secret     the controller's keypair (the secret stays with hil)
    authorized_clients/client.key     the public keys the vBS accepts

Secrets are files with mode 0600 and never go into configs, logs or run directories: a
config names the folder only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from hil.base.errors import HilError

AUTHORIZED = "authorized_clients"


class CurveKeyError(HilError):
    """A CURVE key file is missing or unreadable."""


def create_keys(directory: Path) -> list[Path]:
    """A server and a client keypair in `directory`, the client authorized; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(str(directory), name)
        Path(secret).chmod(0o600)
    authorized = directory / AUTHORIZED
    authorized.mkdir(exist_ok=True)
    shutil.copy(directory / "client.key", authorized / "client.key")
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"CURVE key {path}: cannot read it ({exc}); make a key folder with "
                            f"`hil keys {path.parent}`") from None
    if secret and secret_key is None:
        raise CurveKeyError(f"CURVE key {path} holds no secret key; give the *.key_secret file")
    return public, secret_key


@dataclass(frozen=True)
class ClientCurve:
    """What the controller needs: its own keypair and the vBS's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_dir(cls, directory: Path) -> ClientCurve:
        public, secret = _load(directory / "client.key_secret", secret=True)
        server_public, _ = _load(directory / "server.key", secret=False)
        assert secret is not None
        return cls(public, secret, server_public)

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.curve_serverkey = self.server_public


class ServerCurve:
    """What the vBS needs: its keypair and the authorized clients, checked by a ZAP thread."""

    def __init__(self, directory: Path) -> None:
        self.public, secret = _load(directory / "server.key_secret", secret=True)
        assert secret is not None
        self.secret = secret
        self.authorized = directory / AUTHORIZED
        if not self.authorized.is_dir():
            raise CurveKeyError(f"CURVE: {self.authorized} is missing; put the public keys of "
                                "the controllers allowed in (client.key) there")
        self._auth: ThreadAuthenticator | None = None

    def start(self, context: zmq.Context) -> ServerCurve:
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.authorized))
        return self

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
