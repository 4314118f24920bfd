"""CURVE on rtctl for lab networks: only a controller holding an authorized key gets in, and
no secret reaches a run directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq.auth
from test_emulated_vbs import CALIBRATION
from testbed_yaml import write_config

from drivers.emulated.vbs import EmulatedVbs, serve
from drivers.rtctl.client import RtctlClient
from drivers.rtctl.curve import ClientCurve, CurveKeyError, ServerCurve, create_keys
from hil.base.errors import VbsUnreachableError
from hil.base.scenarios import make_scenario
from tools.cli import main


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    create_keys(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
def secured_vbs(keys: Path):
    """An emulated vBS in a thread whose control socket takes only authorized CURVE clients."""
    ready: dict = {}
    got_ready, stop = threading.Event(), threading.Event()
    vbs = EmulatedVbs(CALIBRATION, make_scenario("A", 0), seed=0)

    def on_ready(bound: dict) -> None:
        ready.update(bound)
        got_ready.set()

    thread = threading.Thread(target=serve, args=(vbs, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0",
                                                  stop, on_ready),
                              kwargs={"curve": ServerCurve(keys)}, daemon=True)
    thread.start()
    assert got_ready.wait(10)
    yield ready["control"]
    stop.set()
    thread.join(5)


def client(endpoint: str, curve: ClientCurve | None) -> RtctlClient:
    return RtctlClient(endpoint, timeout_s=0.3, retries=0, curve=curve)


def test_a_controller_with_the_authorized_key_is_served(secured_vbs, keys):
    with client(secured_vbs, ClientCurve.from_dir(keys)) as ran:
        assert ran.ping().ok


def test_a_controller_without_keys_gets_no_reply(secured_vbs):
    with client(secured_vbs, None) as ran, pytest.raises(VbsUnreachableError):
        ran.ping()


def test_a_keypair_the_vbs_does_not_know_is_refused(secured_vbs, keys, tmp_path):
    public, secret = zmq.auth.create_certificates(str(tmp_path), "intruder")
    intruder = ClientCurve(*zmq.auth.load_certificate(secret),
                           server_public=ClientCurve.from_dir(keys).server_public)
    with client(secured_vbs, intruder) as ran, pytest.raises(VbsUnreachableError):
        ran.ping()


def test_a_missing_key_file_is_named_with_how_to_make_one(tmp_path):
    with pytest.raises(CurveKeyError, match=r"client\.key_secret.*hil keys"):
        ClientCurve.from_dir(tmp_path)
    (tmp_path / "server.key_secret").write_text("")
    with pytest.raises(CurveKeyError, match="server.key_secret"):
        ServerCurve(tmp_path)


def test_secret_keys_are_private_files(keys):
    for name in ("server.key_secret", "client.key_secret"):
        assert (keys / name).stat().st_mode & 0o077 == 0


@pytest.mark.e2e
def test_a_run_over_curve_completes_and_its_run_directory_holds_no_secret(tmp_path, keys):
    config = write_config(tmp_path, rounds=30, **{"clock.speedup": 200.0,
                                                  "vbs.curve_dir": str(keys)})
    assert main(["run", str(config)]) == 0
    secrets = [zmq.auth.load_certificate(str(keys / f"{n}.key_secret"))[1]
               for n in ("server", "client")]
    (run_dir,) = (tmp_path / "runs").iterdir()
    for path in [p for p in run_dir.rglob("*") if p.is_file()] + [config]:
        data = path.read_bytes()
        assert not any(secret in data for secret in secrets), path
