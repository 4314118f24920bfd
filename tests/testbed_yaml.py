"""Testbed configs for tests: the shipped emulated one, changed by dotted keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hil.config import apply_overrides

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "testbed_configs" / "zmq-emulated.yaml"


def write_config(tmp_path: Path, *, sshd: Any = None, **changes: Any) -> Path:
    """`testbed_configs/zmq-emulated.yaml` with runs under tmp_path and `changes` applied
    (keys may be dotted: ``**{"clock.speedup": 500.0}``); returns the new file's path.

    With an `sshd` fixture, the shipped testbed as it is, its BBU host being that server.
    Without, the lighter local variant most tests use: the emulator a child process of the
    controller, its own meter socket instead of the GPM-8213 twin.
    """
    data = yaml.safe_load(SHIPPED.read_text())
    data["vbs"]["emulator"]["calibration"] = str(
        REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml")
    data["recording"]["out_dir"] = str(tmp_path / "runs")
    if sshd is not None:
        data["hosts"][data["vbs"]["host"]] = ssh_host_entry(sshd)
    else:
        del data["hosts"], data["vbs"]["host"]
        data["meter"] = {"kind": "emulated"}
    apply_overrides(data, changes)
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ssh_host_entry(sshd: Any) -> dict[str, Any]:
    """A `hosts:` entry reaching the `sshd` fixture's server."""
    params = sshd.host_params()
    keys = ("hostname", "port", "username", "key_path", "known_hosts_path", "state_dir")
    return {**{key: params[key] for key in keys}, "use_agent": False}
