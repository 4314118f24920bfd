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
from hil.config import apply_overrides

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


# The gains and the UL noise floor under which a UE's power cap reaches the eNB: the ZMQ radio
# multiplies samples by its gains (dB), so powers are relative to these. The UE's
# rx_gain_offset turns its RSRP into about -80 dBm (path loss ~80 dB with rs_power 0); the
# noise floor, at +42 dBFS after the eNB's rx gain, leaves ~25 dB of UL SNR uncapped
# (patches/srsRAN_4G/README.md, "srsUE: verification").
UE_GAINS = {"enb_tx_gain_db": 80.0, "enb_rx_gain_db": 40.0, "ue_tx_gain_db": 0.0,
            "ue_rx_gain_db": 40.0}
UL_NOISE = {"ul_awgn_signal_power_dbfs": 30.0, "ul_awgn_snr_db": -12.0}
UE_RX_GAIN_OFFSET_DB = 205.0
ACCEPTANCE_SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [10, 27], "dl_prb_ratio": [0.5, 1.0],
                    "ul_max_mcs": [10, 23], "ul_prb_ratio": [0.3, 1.0]}
"""Two values a cap: the suite holds each for 5 s, and one tight value shows a cap binding."""


def acceptance_data(host_entry: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The shipped zmq-srsran.yaml as the acceptance suite runs it here: everything a ZMQ
    testbed can serve turned on (CURVE on the eNB's rtctl, the UE's power reaching the
    eNB), two values a cap, a checkpoint every 10 rounds (the suite kills a run after one)."""
    return real_testbed_data(host_entry, tmp_path / "runs", **{
        "vbs.curve_dir": str(tmp_path / "keys"),
        **{f"vbs.srsran.{key}": value for key, value in UL_NOISE.items()},
        **{f"vbs.srsran.radio.{key}": value for key, value in UE_GAINS.items()},
        "vbs.srsran.ue.args": [f"--phy.rx_gain_offset={UE_RX_GAIN_OFFSET_DB}"],
        "policy_space": ACCEPTANCE_SPACE, "recording.checkpoint_every": 10})
