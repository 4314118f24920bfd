"""The patched srsENB, srsEPC and srsUE over the ZMQ radio, through the project's own drivers.

Runs where this checkout's patched build is installed (`hil srsran build`; where it is
and when the tests run: tests/real_srsran.py):

    make test PYTEST_ARGS="-m srsran"

The tests need root (srsEPC makes its SGi interface, srsUE its network namespace) and
iperf3.

The testbed is brought up exactly as `hil run testbed_configs/zmq-srsran.yaml` does (the
shipped templates, rendered and uploaded over SSH to the test's sshd; the bring-up chain;
iperf3 at the paper's scenario A demand), then the caps are swept through rtctl and every
window is checked against the caps in force.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
import zmq
import zmq.auth
from real_srsran import MARKS, real_testbed_data
from testbed_yaml import ssh_host_entry

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.curve import ClientCurve, create_keys
from drivers.rtctl.messages import WindowReply
from hil import testbeds as hil_testbed
from hil.base.errors import VbsUnreachableError
from hil.config import load_config
from hil.probes import TrafficProbe
from hil.recorder import read_rounds
from hil.testbeds.srsran import control_endpoint
from tools.acceptance.windows import UNCAPPED, cap_breaches, rate_mbps
from tools.cli import main

pytestmark = MARKS
N_PRB = 50
WINDOW_S = 5.0
"""Each cap setting is held this long: long enough for link adaptation to settle."""


def real_srsran_config(tmp_path: Path, sshd: Any, **changes: Any) -> Path:
    """The shipped zmq-srsran.yaml with the build and the test's sshd."""
    data = real_testbed_data(ssh_host_entry(sshd), tmp_path / "runs", **changes)
    path = tmp_path / "zmq-srsran.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def testbed(tmp_path: Path, sshd: Any) -> Iterator[hil_testbed.Testbed]:
    """EPC, eNB and UE attached, iperf3 offering scenario A (32 / 23 Mb/s)."""
    cfg = load_config(real_srsran_config(tmp_path, sshd))
    with hil_testbed.start_testbed(cfg, tmp_path) as bed:
        (traffic,) = [probe for probe in bed.probes if isinstance(probe, TrafficProbe)]
        traffic.before_round(0)
        bed.ran.set({})
        time.sleep(WINDOW_S)  # traffic and link adaptation settle
        yield bed


def hold(bed: hil_testbed.Testbed, thresholds: dict[str, Any]) -> WindowReply:
    """Put `thresholds` in force (all others uncapped), hold them, return their window."""
    bed.ran.set({**UNCAPPED, **thresholds})
    time.sleep(WINDOW_S)
    return bed.ran.get()


def assert_within_caps(window: WindowReply) -> None:
    """MCS and PRBs used stay within every cap in force, and nothing violated one."""
    assert not cap_breaches(window, N_PRB)


def raw_get(endpoint: str) -> dict[str, Any]:
    """One `get` on a socket of its own: the window reply as the eNB wrote it, unparsed."""
    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.linger = 0
        socket.connect(endpoint)
        socket.send_json({"v": 1, "sid": "raw-json", "seq": 1, "op": "get"})
        assert socket.poll(5000), f"no reply from {endpoint}"
        return socket.recv_json()


def test_caps_bind_in_the_real_scheduler_and_throughput_follows_them(testbed: hil_testbed.Testbed):
    # the UE's entry names its default bearer's QCI (patch 0010; user_db.csv gives QCI 9);
    # this get closes the settle window, which the first hold() would discard anyway
    assert isinstance(testbed.ran, RtctlClient)
    raw = raw_get(testbed.ran.endpoint)
    active = [entry for entry in raw["ue"].values() if entry["dl_bits_acked"] > 0]
    assert active and all(entry.get("qci") == 9 for entry in active), raw["ue"]
    assert "qci" not in raw["cell"]

    uncapped = hold(testbed, {})
    dl_mcs = hold(testbed, {"dl_max_mcs": 10})
    dl_mcs_prb = hold(testbed, {"dl_max_mcs": 10, "dl_prb_ratio": 0.5})
    ul_mcs = hold(testbed, {"ul_max_mcs": 10})
    ul_mcs_prb = hold(testbed, {"ul_max_mcs": 10, "ul_prb_ratio": 0.3})
    gain = hold(testbed, {"dl_gain_db": -10.0})
    reset = testbed.ran.reset()
    time.sleep(WINDOW_S)
    restored = testbed.ran.get()

    windows = [uncapped, dl_mcs, dl_mcs_prb, ul_mcs, ul_mcs_prb, gain, restored]
    for window in windows:
        assert window.window.nof_tti > 0 and window.ue, "the UE stayed attached"
        assert_within_caps(window)
    assert rate_mbps(uncapped, "dl") > 15 and rate_mbps(uncapped, "ul") > 10
    assert dl_mcs.cell.cap_hits.dl_mcs > 0 and dl_mcs_prb.cell.cap_hits.dl_prb > 0
    assert rate_mbps(dl_mcs, "dl") < 0.5 * rate_mbps(uncapped, "dl")
    assert rate_mbps(dl_mcs_prb, "dl") < 0.7 * rate_mbps(dl_mcs, "dl")
    assert rate_mbps(ul_mcs, "ul") < 0.6 * rate_mbps(uncapped, "ul")
    assert rate_mbps(ul_mcs_prb, "ul") < 0.7 * rate_mbps(ul_mcs, "ul")
    assert gain.cell.dl_cqi_mean < uncapped.cell.dl_cqi_mean - 1  # the AWGN link sees it
    assert reset.applied.dl_max_mcs is None and reset.applied.dl_prb_ratio is None
    assert rate_mbps(restored, "dl") > 0.8 * rate_mbps(uncapped, "dl")


def test_starving_caps_keep_the_ue_attached_and_lifting_them_brings_traffic_back(
        testbed: hil_testbed.Testbed):
    """The paper's smallest ratios (0 DL, 0.01 UL) leave no PRB for user data; signalling
    is exempt (PROTOCOL.md 5.2), so the UE survives them and carries traffic after."""
    starved = hold(testbed, {"dl_prb_ratio": 0.0, "ul_prb_ratio": 0.01})
    after = hold(testbed, {})

    assert_within_caps(starved)
    assert rate_mbps(starved, "dl") < 1.0 and rate_mbps(starved, "ul") < 1.0
    assert after.ue, "the UE is still attached"
    assert rate_mbps(after, "dl") > 15


def test_a_bsvbs_run_of_the_shipped_config_runs_to_the_end(tmp_path: Path, sshd: Any):
    rounds = int(os.environ.get("HIL_SRSRAN_ROUNDS", "30"))
    config = real_srsran_config(tmp_path, sshd, rounds=rounds)

    assert main(["run", str(config), "--agent", "bsvbs"]) == 0

    (run_dir,) = (tmp_path / "runs").iterdir()
    table = read_rounds(run_dir)
    assert len(table) == rounds
    assert table["valid"].mean() >= 0.9, table["invalid_reason"].dropna().value_counts()
    assert (table["violations"].dropna() == 0).all()
    assert (run_dir / "summary.png").exists()


def test_the_patched_enb_serves_curve_only_to_the_authorized_controller(tmp_path: Path,
                                                                        sshd: Any):
    """`vbs.curve_dir` on srsRAN: the eNB (patch 0009) encrypts rtctl with the folder's
    server key and answers only controllers whose public key is in authorized_clients/."""
    keys = tmp_path / "keys"
    create_keys(keys)
    cfg = load_config(real_srsran_config(tmp_path, sshd, **{"vbs.curve_dir": str(keys)}))
    with hil_testbed.start_testbed(cfg, tmp_path) as bed:  # its client holds the keys
        assert bed.ran.ping().ok
        endpoint = control_endpoint(cfg)
        public, secret = zmq.auth.create_certificates(str(tmp_path), "intruder")
        intruder = ClientCurve(*zmq.auth.load_certificate(secret),
                               server_public=ClientCurve.from_dir(keys).server_public)
        for curve in (None, intruder):
            with RtctlClient(endpoint, timeout_s=0.5, retries=0, curve=curve) as ran, \
                    pytest.raises(VbsUnreachableError):
                ran.ping()
        assert bed.ran.set({"dl_max_mcs": 10}).applied.dl_max_mcs == 10  # still served
