"""rtctl's CURVE keys on a lab network: the vBS's half installed on its host, and every
control socket checked by `hil check`.

`hil keys DIR` makes both keypairs in one folder on the controller (`vbs.curve_dir`). The
controller needs its own keypair and the vBS's public key, which it pins: a vBS holding any
other server key never completes the handshake. The vBS's host needs only its half, in
`vbs.server_curve_dir`: the server keypair (the secret 0600, in a 0700 folder) and
`authorized_clients/` with the controller's public key. `install` copies that half over
SFTP and then deletes the server's secret from the controller, so each secret lives on one
machine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from drivers.rtctl.curve import AUTHORIZED
from drivers.ssh import SshHost
from hil.base.errors import HilError
from hil.base.network import endpoint_host, is_loopback_host, is_network_endpoint
from hil.config import CURVE_FIX, PLAINTEXT_FIX, ControlSocket, HilConfig
from hil.testbeds import Check, Warn
from hil.testbeds.common import connect_host, home_of

SERVER_PUBLIC, SERVER_SECRET = "server.key", "server.key_secret"
CLIENT_SECRET = "client.key_secret"
_PUBLIC_LINE = re.compile(r'^\s*public-key\s*=\s*"(.+)"\s*$', re.MULTILINE)


class KeySetupError(HilError):
    """The keys are missing, cannot be installed, or do not match; says what to run."""


def public_key(certificate_text: str, where: str) -> str:
    """The Z85 public key of a ZeroMQ certificate file's text."""
    match = _PUBLIC_LINE.search(certificate_text)
    if match is None:
        raise KeySetupError(f"{where} holds no public key: make the keys again with "
                            "`hil keys DIR`")
    return match.group(1)


def _local_keys(cfg: HilConfig) -> Path:
    if cfg.vbs.curve_dir is None:
        raise KeySetupError(f"vbs.curve_dir is not set: {PLAINTEXT_FIX}")
    return cfg.vbs.curve_dir


def install(cfg: HilConfig) -> list[str]:
    """The vBS's half of `vbs.curve_dir` into `vbs.server_curve_dir` on the vBS's host, over
    SFTP; then the server's secret deleted here unless that folder is this very one.
    Returns what was written, as host:path."""
    keys = _local_keys(cfg)
    host_name = cfg.vbs.server_host()
    if host_name is None:
        raise KeySetupError("the vBS runs on this machine and reads vbs.curve_dir itself: "
                            "there is nothing to install")
    secret = keys / SERVER_SECRET
    if not secret.exists():
        raise KeySetupError(f"{secret} is not here (installed already, and deleted here?): "
                            f"make new keys with `hil keys {keys}`, then install them")
    authorized = sorted((keys / AUTHORIZED).glob("*.key"))
    files = [(SERVER_PUBLIC, keys / SERVER_PUBLIC, 0o644), (SERVER_SECRET, secret, 0o600),
             *((f"{AUTHORIZED}/{p.name}", p, 0o644) for p in authorized)]
    with connect_host(host_name, cfg.hosts[host_name]) as host:
        folder = cfg.vbs.server_keys_at(home_of(host))
        assert folder is not None  # curve_dir is set
        q = shlex.quote(folder)
        host.run(f"mkdir -p {q}/{AUTHORIZED} && chmod 700 {q}", timeout_s=10)
        for name, local, mode in files:
            host.put_text(local.read_text(), f"{folder}/{name}", mode=mode)
        _check_server_keys(cfg, host, folder)
        same_folder = (is_loopback_host(cfg.hosts[host_name].hostname)
                       and Path(folder).resolve() == keys.resolve())
        where = host.where
    if not same_folder:
        secret.unlink()
    return [f"{where}:{folder}/{name}" for name, _, _ in files]


def _check_server_keys(cfg: HilConfig, host: SshHost | None, folder: str) -> str:
    """The vBS's key folder (on `host`, or here) holds the server key the controller pins,
    its secret at 0600."""
    pinned = public_key(_read_local(_local_keys(cfg) / SERVER_PUBLIC), "vbs.curve_dir")
    secret = f"{folder}/{SERVER_SECRET}"
    script = (f"stat -c %a {shlex.quote(secret)} && "
              f"grep -E '^[[:space:]]*public-key' {shlex.quote(secret)}")  # never the secret
    if host is None:
        path = Path(secret)
        if not path.exists():
            raise KeySetupError(f"{secret} is missing: make the keys with `hil keys "
                                f"{Path(folder)}`")
        mode, text, where = f"{path.stat().st_mode & 0o777:o}", path.read_text(), secret
    else:
        result = host.run(script, timeout_s=10, check=False)
        where = f"{host.where}:{secret}"
        if result.exit_code != 0:
            raise KeySetupError(f"{where} is missing or unreadable: install the keys with "
                                "`hil keys --install CONFIG`")
        mode, _, text = result.stdout.partition("\n")
    found = public_key(text, where)
    if found != pinned:
        raise KeySetupError(
            f"{where} is the key of another server ({found[:8]}...), not the one the "
            f"controller pins in vbs.curve_dir/server.key ({pinned[:8]}...): install this "
            "controller's keys with `hil keys --install CONFIG` (or point vbs.curve_dir at "
            "the folder they were made in)")
    if mode.strip() != "600":
        raise KeySetupError(f"{where} has mode {mode.strip()}, so others on that host can "
                            f"read it: chmod 600 {secret}")
    return f"the pinned server key ({pinned[:8]}...), secret 0600"


def _read_local(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise KeySetupError(f"{path}: {exc.strerror}; make the keys with `hil keys "
                            f"{path.parent}`") from None


def control_checks(cfg: HilConfig) -> list[tuple[str, Check]]:
    """One `hil check` line per control socket."""
    return [(f"control {s.key}", lambda s=s: _control(cfg, s)) for s in cfg.vbs.control_sockets()]


def _control(cfg: HilConfig, socket: ControlSocket) -> str | Warn:
    """Bound where its host can bind it; CURVE on when another machine can reach it; the
    server key the one pinned, its secret 0600 on its host."""
    networked = is_network_endpoint(socket.endpoint)
    if networked:
        _bound_on_host(cfg, socket)
    where = f"{socket.endpoint} ({'the network' if networked else 'loopback only'})"
    if socket in cfg.vbs.plaintext_on_network():
        return Warn(f"{where}: plaintext, allowed by vbs.allow_plaintext_control: "
                    f"anyone who reaches it can set or reset the vBS; {CURVE_FIX}")
    if cfg.vbs.curve_dir is None or not socket.curve:
        return f"{where}, no CURVE"
    client_secret = _local_keys(cfg) / CLIENT_SECRET
    if client_secret.exists() and client_secret.stat().st_mode & 0o077:
        raise KeySetupError(f"{client_secret} is readable by others: chmod 600 {client_secret}")
    server = cfg.vbs.server_host()
    if server is None:
        folder = cfg.vbs.server_keys_at(str(Path.home()))
        assert folder is not None
        return f"{where}, CURVE: {_check_server_keys(cfg, None, folder)}"
    with connect_host(server, cfg.hosts[server]) as host:
        folder = cfg.vbs.server_keys_at(home_of(host))
        assert folder is not None
        return f"{where}, CURVE: {_check_server_keys(cfg, host, folder)} on {server}"


def _bound_on_host(cfg: HilConfig, socket: ControlSocket) -> None:
    """A concrete address in the endpoint is one of its host's own (else the program
    cannot bind it, and stops at start)."""
    address = (endpoint_host(socket.endpoint) or "").strip("[]")
    if address in ("*", "0.0.0.0", "::") or socket.host is None:
        return
    with connect_host(socket.host, cfg.hosts[socket.host]) as host:
        found = host.run("ip -o addr show 2>/dev/null || hostname -I", timeout_s=10,
                         check=False).stdout
    if not re.search(rf"(^|[\s/]){re.escape(address)}([\s/]|$)", found):
        raise KeySetupError(f"{socket.key} {socket.endpoint}: {address} is not an address "
                            f"of host {socket.host}, so it cannot bind there; give one of "
                            "its own (ip addr on that host lists them)")
