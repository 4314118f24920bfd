"""Secure by default on a lab network: a control socket another machine can reach takes
commands only over CURVE, the vBS's half of the keys goes to its host with its secret 0600,
and `hil check` verifies every control socket (hil/testbeds/keys.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from testbed_yaml import REPO, write_config

from drivers.rtctl.curve import create_keys
from drivers.ssh import SshHost
from hil.base.errors import ConfigError
from hil.base.network import is_network_endpoint
from hil.config import load_config
from tools.cli import main

LAB = REPO / "testbed_configs" / "b210-lab.yaml"


@pytest.mark.parametrize("endpoint, networked", [
    ("tcp://127.0.0.1:5555", False), ("tcp://127.0.0.2:5555", False),
    ("tcp://localhost:0", False), ("tcp://[::1]:5555", False), ("tcp://lo:5555", False),
    ("ipc:///tmp/rtctl", False), ("inproc://rtctl", False),
    ("tcp://192.168.10.11:5555", True), ("tcp://0.0.0.0:5555", True), ("tcp://*:5555", True),
    ("tcp://[::]:5555", True), ("tcp://bbu.lab:5555", True), ("tcp://eth0:5555", True),
])
def test_only_loopback_ipc_and_inproc_are_out_of_the_networks_reach(endpoint, networked):
    assert is_network_endpoint(endpoint) is networked


def lab_config(tmp_path: Path, **changes: object) -> Path:
    """b210-lab.yaml with `changes` at dotted keys (None deletes the key)."""
    data = yaml.safe_load(LAB.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes, key, fix", [
    ({"vbs.curve_dir": None}, "vbs.srsran.rtctl_bind tcp://192.168.10.11:5555", "hil keys DIR"),
    ({"vbs.srsran.ue.rtctl_bind": "tcp://0.0.0.0:5556"}, "vbs.srsran.ue.rtctl_bind",
     "has no CURVE: bind it to 127.0.0.1"),
])
def test_a_control_socket_on_the_network_without_curve_is_refused_naming_key_and_fix(
        tmp_path, changes, key, fix):
    with pytest.raises(ConfigError) as refused:
        load_config(lab_config(tmp_path, **changes))
    assert key in str(refused.value) and fix in str(refused.value)
    assert "allow_plaintext_control" in str(refused.value)


def test_an_emulated_vbs_bound_on_the_network_needs_curve_too(tmp_path):
    with pytest.raises(ConfigError, match=r"vbs\.control_endpoint tcp://0\.0\.0\.0:0 .*hil keys"):
        load_config(write_config(tmp_path, **{"vbs.control_endpoint": "tcp://0.0.0.0:0"}))


def test_the_shipped_lab_config_asks_for_curve_and_loads():
    cfg = load_config(LAB)
    assert cfg.vbs.curve_dir is not None and cfg.vbs.server_curve_dir == "~/.vbs-hil/curve"
    assert not cfg.vbs.allow_plaintext_control


@pytest.mark.e2e
def test_plaintext_allowed_in_so_many_words_loads_and_check_and_run_warn(tmp_path, capsys):
    config = write_config(tmp_path, **{"vbs.control_endpoint": "tcp://0.0.0.0:0",
                                       "vbs.allow_plaintext_control": True})
    assert main(["check", str(config)]) == 0  # a warning is not a failure
    lines = capsys.readouterr().err.splitlines()
    (warning,) = [line for line in lines if line.startswith("WARN")]
    assert "control vbs.control_endpoint: tcp://0.0.0.0:0 (the network): plaintext" in warning
    assert any(line.startswith("ok    vbs: emulated-srsenb") for line in lines)
    assert main(["run", str(config), "--rounds", "20"]) == 0  # and every run says so
    assert ("warning: vbs.control_endpoint tcp://0.0.0.0:0 takes commands in plaintext"
            in " ".join(capsys.readouterr().err.split()))


def emulated_on_host(tmp_path: Path, sshd, keys: Path, host_keys: Path) -> Path:
    """The shipped emulated testbed, its vBS on the `sshd` host, CURVE on: the controller's
    keys in `keys`, the vBS's half in `host_keys` on that host."""
    return write_config(tmp_path, sshd=sshd, **{"vbs.curve_dir": str(keys),
                                                "vbs.server_curve_dir": str(host_keys)})


def host_mode(host: SshHost, path: Path) -> str:
    return host.run(f"stat -c %a {shlex.quote(str(path))}", timeout_s=10).stdout.strip()


@pytest.mark.e2e
def test_installed_keys_reach_the_vbs_host_with_private_modes_over_ssh(tmp_path, sshd, capsys):
    keys, host_keys = tmp_path / "keys", tmp_path / "bbu-home" / "curve"
    create_keys(keys)
    config = emulated_on_host(tmp_path, sshd, keys, host_keys)
    assert main(["keys", "--install", str(config)]) == 0
    with SshHost("bbu", **sshd.host_params()) as host:
        assert host_mode(host, host_keys / "server.key_secret") == "600"
        assert host_mode(host, host_keys) == "700"
        assert host.run(f"ls {shlex.quote(str(host_keys))}/authorized_clients",
                        timeout_s=10).stdout.split() == ["client.key"]
    assert not (host_keys / "client.key_secret").exists()  # the controller's secret stays home
    assert not (keys / "server.key_secret").exists()  # the server's lives on its host only
    assert (keys / "client.key_secret").exists()
    capsys.readouterr()
    # the vBS on that host now serves this controller over CURVE, and hil check says so
    assert main(["check", str(config)]) == 0
    lines = capsys.readouterr().err.splitlines()
    (control,) = [line for line in lines if "control vbs.control_endpoint" in line]
    assert control.startswith("ok") and "CURVE: the pinned server key" in control
    assert any(line.startswith("ok    vbs: emulated-srsenb") for line in lines)


@pytest.mark.e2e
def test_hil_check_catches_a_server_key_other_than_the_pinned_one_and_a_readable_secret(
        tmp_path, sshd, capsys):
    keys, other, host_keys = tmp_path / "keys", tmp_path / "other", tmp_path / "bbu" / "curve"
    create_keys(keys)
    create_keys(other)
    assert main(["keys", "--install", str(emulated_on_host(tmp_path, sshd, other,
                                                              host_keys))]) == 0
    capsys.readouterr()
    config = emulated_on_host(tmp_path, sshd, keys, host_keys)
    assert main(["check", str(config)]) == 1
    (control,) = [line for line in capsys.readouterr().err.splitlines()
                  if "control vbs.control_endpoint" in line]
    assert control.startswith("FAIL") and "the key of another server" in control
    assert "hil keys --install" in control

    assert main(["keys", "--install", str(config)]) == 0
    (host_keys / "server.key_secret").chmod(0o644)
    capsys.readouterr()
    assert main(["check", str(config)]) == 1
    (control,) = [line for line in capsys.readouterr().err.splitlines()
                  if "control vbs.control_endpoint" in line]
    assert "has mode 644" in control and "chmod 600" in control
