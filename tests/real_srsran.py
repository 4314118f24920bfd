"""What the tests against the real patched srsRAN share: where the build is, whether it is
this checkout's, the configs the tests run it with, and the environment each program needs.

The build is the prefix `hil srsran build` installs (default ``~/.vbs-hil/srsran``; another
with `HIL_SRSRAN_PREFIX`). The `srsran` tests run whenever its stamp matches this
checkout's patch series, and are deselected with one line saying why otherwise (tests/
conftest.py); once selected, a missing prerequisite (root, iperf3) fails them.
`HIL_SRSRAN_PRELOAD`, if set, is an LD_PRELOAD for srsepc and srsenb: a kernel without
SCTP (S1AP needs it) needs an SCTP-over-TCP shim; a lab host does not.

The configs are the shipped `testbed_configs/zmq-srsran.yaml` with only what a test must
change, rendered by `hil.testbeds.srsran_processes.template_values` like every bring-up: tests/
test_srsran_templates.py renders them in every CI run, so a template placeholder that one
of them lacks fails there, not only on a machine with the build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.srsran.series import DEFAULT_PREFIX, STAMP_FILE, Stamp, stale_reason
from hil.config import HilConfig, apply_overrides, load_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "testbed_configs" / "zmq-srsran.yaml"
PREFIX = Path(os.environ.get("HIL_SRSRAN_PREFIX", DEFAULT_PREFIX)).expanduser()
PRELOAD = os.environ.get("HIL_SRSRAN_PRELOAD")
MARKS = [pytest.mark.srsran]
"""`pytestmark` of a module of such tests."""


def build_missing() -> str | None:
    """Why the srsran tests cannot run here, or None when this checkout's build is there."""
    stamp_path = PREFIX / STAMP_FILE
    if not stamp_path.exists():
        return f"no patched srsRAN build at {PREFIX} (no {STAMP_FILE})"
    try:
        reason = stale_reason(Stamp.from_json(stamp_path.read_text()))
    except ValueError as exc:
        return f"{stamp_path}: unreadable ({exc})"
    return f"{PREFIX}: {reason}" if reason else None


def binary(program: str) -> str:
    """Path of `srs<program>` (epc, enb, ue) in the build."""
    return str(PREFIX / "bin" / f"srs{program}")


def program_env(program: str) -> dict[str, str]:
    """Extra environment of `srs<program>`: the SCTP shim, for the core and the eNB only
    (srsUE speaks no S1). The build's run path finds its own libraries."""
    return {"LD_PRELOAD": PRELOAD} if PRELOAD and program != "ue" else {}


def real_testbed_data(host_entry: dict[str, Any], out_dir: Path, **changes: Any) -> dict[str, Any]:
    """The shipped zmq-srsran.yaml for a test: the build, the test's sshd, its run folder."""
    data = yaml.safe_load(SHIPPED.read_text())
    srs = data["vbs"]["srsran"]
    srs["templates"] = str(REPO / "testbed_configs" / "srsran")
    srs["prefix"] = str(PREFIX)
    for program in ("epc", "enb", "ue"):
        srs[program]["env"] = program_env(program)
    data["hosts"] = {"bbu": host_entry}
    data["recording"]["out_dir"] = str(out_dir)
    return apply_overrides(data, changes)


# The UE test (tests/test_srsran_ue.py) reaches both rtctl sockets over ipc:// in its folder.
# The ZMQ radio multiplies samples by its gains (dB), so powers are relative to these. The
# UE's rx_gain_offset turns its RSRP into about -80 dBm (path loss ~80 dB with rs_power 0)
# (patches/srsRAN_4G/README.md, "srsUE: verification").
UE_TEST_GAINS = {"enb_tx_gain_db": 80.0, "enb_rx_gain_db": 40.0, "ue_tx_gain_db": 0.0,
                 "ue_rx_gain_db": 40.0}


UE_TEST_UL_NOISE = {"ul_awgn_signal_power_dbfs": 30.0, "ul_awgn_snr_db": -12.0}
"""A UL noise floor at +42 dBFS after the eNB's rx gain: ~25 dB of UL SNR uncapped."""


def ue_test_config(conf_dir: Path, ue_netns: str) -> HilConfig:
    """The shipped testbed as the UE test runs it: its own gains and UL noise floor, rtctl
    over ipc://."""
    data = real_testbed_data({"hostname": "127.0.0.1"}, conf_dir / "runs", **{
        **{f"vbs.srsran.{key}": value for key, value in UE_TEST_UL_NOISE.items()},
        "vbs.srsran.rtctl_bind": rtctl_endpoint(conf_dir, "enb"),
        "vbs.srsran.ue.rtctl_bind": rtctl_endpoint(conf_dir, "ue"),
        "vbs.srsran.ue.netns": ue_netns,
        **{f"vbs.srsran.radio.{key}": value for key, value in UE_TEST_GAINS.items()}})
    path = conf_dir / "ue-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def rtctl_endpoint(conf_dir: Path, program: str) -> str:
    return f"ipc://{conf_dir}/{program}.rtctl"
