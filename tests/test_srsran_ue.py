"""The patched srsUE's rtctl socket (PROTOCOL.md section 14) over the ZMQ radio.

Runs where this checkout's patched build is installed (`hil srsran build`; where it is
and when the tests run: tests/real_srsran.py):

    make test PYTEST_ARGS="-m srsran"

Needs root and iperf3.

EPC, eNB and UE run inside a network namespace of their own (the UE's tunnel in a second
one), so the test never meets another testbed on this host; the test reaches both rtctl
sockets through `ipc://` endpoints in its temporary folder, which the namespace does not
hide. The eNB's UL channel emulator adds a fixed noise floor: a lower UE tx power is then a
lower UL SNR at the eNB, which its link adaptation turns into a lower UL MCS.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from real_srsran import MARKS, binary, program_env, rtctl_endpoint, ue_test_config

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.messages import UE, UeKpis, UeWindowReply, WindowReply
from drivers.srsran.conf import TEMPLATES, render_program
from hil.testbeds.srsran_processes import template_values

pytestmark = MARKS
NETNS, UE_NETNS = "hil-uetest", "hil-uetest-ue"
SGI_ADDR = "172.16.0.1"
ATTACH_TIMEOUT_S = 180.0
"""A generous bound for the attach (23-35 s on an idle 2-core machine)."""
HOLD_S = 4.0
"""Each cap is held this long before its window is read: enough for link adaptation."""
CAP_BELOW_UNCAPPED_DB = 15.0
"""How far below its uncapped power the UE is capped: with the noise floor below, enough to
cost the eNB several MCS steps without losing the link."""

# The UE's rx_gain_offset turns its RSRP into about -80 dBm with the gains of
# real_srsran.UE_TEST_GAINS; its UL noise floor (UE_TEST_UL_NOISE) leaves ~25 dB of UL SNR
# uncapped (patches/srsRAN_4G/README.md, "srsUE: verification").
UE_RX_GAIN_OFFSET_DB = 205.0


@dataclass
class Windows:
    """One hold under one UE cap: what the UE and the eNB measured."""

    ue: UeWindowReply
    enb: WindowReply

    @property
    def kpis(self) -> UeKpis:
        return self.ue.kpis


class UeTestbed:
    """EPC, eNB and UE attached, the UE offering saturating UL traffic; rtctl to both."""

    def __init__(self, ue: RtctlClient, enb: RtctlClient) -> None:
        self.ue, self.enb = ue, enb

    def hold(self) -> Windows:
        """Close both windows, wait, and return the windows of the wait."""
        self.ue.get()
        self.enb.get()
        time.sleep(HOLD_S)
        ue, enb = self.ue.get(), self.enb.get()
        assert isinstance(ue, UeWindowReply) and isinstance(enb, WindowReply)
        return Windows(ue, enb)


def rendered_confs(conf_dir: Path) -> dict[str, Path]:
    """The project's srsRAN templates, rendered for this test; the conf path per program."""
    cfg = ue_test_config(conf_dir, UE_NETNS)
    assert cfg.vbs.srsran is not None
    confs = {}
    for program in TEMPLATES:
        files = render_program(cfg.vbs.srsran.templates, program,
                               template_values(cfg, program, str(conf_dir),
                                                               str(Path.home())))
        for name, text in files.items():
            (conf_dir / name).write_text(text)
        confs[program] = conf_dir / TEMPLATES[program][0]
    return confs


def start(program: str, args: list[str], log_dir: Path) -> subprocess.Popen[bytes]:
    """One srsRAN program in the test's namespace, stdin held open (srsenb/srsue quit on EOF)."""
    env = {**os.environ, **program_env(program)}
    command = ["ip", "netns", "exec", NETNS, binary(program), *args]
    with (log_dir / f"{program}.out").open("wb") as out:
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in {path}:\n{path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(2)  # SIGINT: srsRAN's clean shutdown
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UeTestbed]:
    conf_dir = tmp_path_factory.mktemp("srsran-ue")
    confs = rendered_confs(conf_dir)
    for namespace in (NETNS, UE_NETNS):
        subprocess.run(["ip", "netns", "add", namespace], check=True)
    subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
    running: list[subprocess.Popen[bytes]] = []
    try:
        running.append(start("epc", [str(confs["epc"])], conf_dir))
        wait_for_line(conf_dir / "epc.out", "SP-GW Initialized", running[-1])
        running.append(start("enb", [str(confs["enb"])], conf_dir))
        wait_for_line(conf_dir / "enb.out", "eNodeB started", running[-1])
        running.append(start("ue", [str(confs["ue"]),  # ue.conf turns its rtctl socket on
                                    f"--phy.rx_gain_offset={UE_RX_GAIN_OFFSET_DB}"], conf_dir))
        wait_for_line(conf_dir / "ue.out", "Network attach successful", running[-1])
        running.append(subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "iperf3", "-s", "-B", SGI_ADDR],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)  # iperf3 -s binds before the client connects
        running.append(subprocess.Popen(
            ["ip", "netns", "exec", UE_NETNS, "iperf3", "-c", SGI_ADDR, "-u", "-b", "30M",
             "-t", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with (RtctlClient(rtctl_endpoint(conf_dir, "ue"), peer=UE, timeout_s=3.0) as ue,
              RtctlClient(rtctl_endpoint(conf_dir, "enb"), timeout_s=3.0) as enb):
            yield UeTestbed(ue, enb)
    finally:
        for process in reversed(running):
            stop(process)
        for namespace in (UE_NETNS, NETNS):
            subprocess.run(["ip", "netns", "delete", namespace], check=False)


def test_ping_names_the_patched_srsue_and_shows_no_cap(testbed: UeTestbed) -> None:
    ping = testbed.ue.ping()
    assert (ping.node.name, ping.node.protocol) == ("srsue", 1)
    assert testbed.ue.reset().applied.ul_max_tx_power_dbm is None


def test_an_uncapped_window_holds_plausible_ue_figures(testbed: UeTestbed) -> None:
    testbed.ue.reset()
    k = testbed.hold().kpis
    assert k.rsrp_nof_meas > 0 and -140 <= k.rsrp_dbm_mean <= -44  # TS 36.133 RSRP range
    assert k.pusch_tti > 0 and -40 <= k.pusch_power_dbm_mean <= k.pusch_power_dbm_max <= 23
    assert k.ul_buffer_bytes > 0  # the UE has more to send than it is granted
    assert k.ul_power_cap_hits == 0


def test_a_cap_lowers_the_ue_power_and_the_enb_ul_mcs_and_reset_restores(
        testbed: UeTestbed) -> None:
    testbed.ue.reset()
    uncapped = testbed.hold()
    cap_dbm = round(uncapped.kpis.pusch_power_dbm_mean - CAP_BELOW_UNCAPPED_DB)
    assert testbed.ue.set({"ul_max_tx_power_dbm": cap_dbm}).applied.ul_max_tx_power_dbm == cap_dbm
    capped = testbed.hold()
    assert testbed.ue.reset().applied.ul_max_tx_power_dbm is None
    restored = testbed.hold()

    assert capped.kpis.pusch_tti > 0
    assert capped.kpis.pusch_power_dbm_max <= cap_dbm
    assert capped.kpis.ul_power_cap_hits >= capped.kpis.pusch_tti
    assert capped.enb.cell.ul_snr_mean < uncapped.enb.cell.ul_snr_mean - 5
    assert capped.enb.cell.ul_mcs_mean < uncapped.enb.cell.ul_mcs_mean
    assert restored.kpis.ul_power_cap_hits == 0
    assert abs(restored.kpis.pusch_power_dbm_mean - uncapped.kpis.pusch_power_dbm_mean) < 1
    assert restored.enb.cell.ul_mcs_mean > capped.enb.cell.ul_mcs_mean
