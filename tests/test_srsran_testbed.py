"""The srsRAN testbed's drivers over a real sshd, with test doubles for the three binaries.

`tests/fake_srsran.py` stands in for srsepc, srsenb and srsue: it reads the rendered
config, prints the real program's ready line, and the fake eNB serves rtctl (the emulated
vBS). So `hil run` on `testbed_configs/zmq-srsran.yaml` goes through rendering, upload,
start-up order, ready detection, the rtctl connection, crash restart and teardown, and the
acceptance suite's runs go through the same. The real binaries are exercised by tests/
test_srsran_acceptance.py where the patched build is installed; the templates are rendered
for every caller by tests/test_srsran_templates.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from acceptance_runs import acceptance, outcomes
from fake_srsran import install_fake_prefix
from prerequisites import missing
from testbed_yaml import REPO, ssh_host_entry

from drivers.srsran.conf import TEMPLATES
from drivers.srsran.series import series_sha256
from drivers.ssh import SshHost
from hil.config import apply_overrides, load_config
from hil.recorder import read_rounds
from hil.testbeds.srsran_processes import ControlPath, radio_device
from tools.cli import main

pytestmark = pytest.mark.e2e
SHIPPED_SRSRAN = REPO / "testbed_configs" / "zmq-srsran.yaml"
SMALL_SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [5, 27], "dl_prb_ratio": [0.2, 1.0],
               "ul_max_mcs": [5, 23], "ul_prb_ratio": [0.2, 1.0]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def srsran_config(tmp_path: Path, sshd: Any, **changes: Any) -> Path:
    """The shipped zmq-srsran.yaml with the fakes, the test's sshd, and a free rtctl port."""
    data = yaml.safe_load(SHIPPED_SRSRAN.read_text())
    srs = data["vbs"]["srsran"]
    srs["templates"] = str(REPO / "testbed_configs" / "srsran")
    srs["prefix"] = str(install_fake_prefix(tmp_path / "prefix"))
    srs["rtctl_bind"] = f"tcp://127.0.0.1:{free_port()}"
    srs["ue"]["netns"] = None  # namespaces need CAP_SYS_ADMIN, which CI may lack
    data["hosts"] = {"bbu": ssh_host_entry(sshd)}
    data["traffic"] = {"kind": "none"}
    data["recording"]["out_dir"] = str(tmp_path / "runs")
    data.update(rounds=20, round_s=0.1, policy_space=SMALL_SPACE)
    apply_overrides(data, changes)
    path = tmp_path / "zmq-srsran.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_zmq_radios_cross_their_ports_on_loopback_when_they_can_and_b210s_by_serial():
    cfg = load_config(REPO / "testbed_configs" / "b210-lab.yaml")
    assert radio_device(cfg.vbs.srsran.radio, "enb", "x") == (
        "UHD", "type=b200,serial=30AD123,clock=internal")
    zmq = load_config(SHIPPED_SRSRAN).vbs.srsran.radio
    assert "tx_port=tcp://*:2000" in radio_device(zmq, "enb", "ue-host")[1]
    assert "rx_port=tcp://ue-host:2001" in radio_device(zmq, "enb", "ue-host")[1]
    assert "tx_port=tcp://*:2001" in radio_device(zmq, "ue", "bbu")[1]
    assert "rx_port=tcp://bbu:2000" in radio_device(zmq, "ue", "bbu")[1]
    one_host = radio_device(zmq, "enb", "localhost")[1]  # nothing for the network to reach
    assert "tx_port=tcp://127.0.0.1:2000" in one_host and "rx_port=tcp://localhost:2001" in one_host


# ------------------------------------------------------------------ over SSH, with doubles
def test_a_run_brings_the_chain_up_in_order_and_takes_it_down(tmp_path, sshd):
    config = srsran_config(tmp_path, sshd)
    assert main(["run", str(config)]) == 0
    rounds = read_rounds(next((tmp_path / "runs").iterdir()))
    assert len(rounds) == 20 and rounds["valid"].all()
    assert (rounds["testbed_restarts"] == 0).all()
    assert (rounds["testbed_stage"] == "UE attached").all()  # no traffic generator here
    assert rounds["host_cpu_pct"].notna().all()  # host metrics on: a column per round
    with SshHost("check", **sshd.host_params()) as host:
        for name in ("srsepc", "srsenb", "srsue"):
            assert not host.is_running(name), name
        assert "eNodeB started" in host.tail("srsenb")
        state = sshd.host_params()["state_dir"]
        uploaded = host.run(f"ls {state}/srsran").stdout.split()
    assert sorted(uploaded) == sorted(n for names in TEMPLATES.values() for n in names)


def test_the_acceptance_suite_s_faults_pass_through_the_srsran_bring_up(tmp_path, sshd):
    """The suite's fault runs (tools/acceptance/suite/test_runs.py) on the srsRAN kind with
    the doubles: a killed controller resumed (its chain, left running, is stopped before the
    new one comes up), and srsENB killed over SSH and brought back by the run's watchdog
    with the UE after it."""
    config = srsran_config(tmp_path, sshd, **{"recording.checkpoint_every": 10})
    report = tmp_path / "report"
    done = acceptance(str(config), "--report", str(report), "-k", "killed")
    found = outcomes(report)
    assert done.returncode == 0, (found, done.stdout[-4000:])
    assert {test: o["outcome"] for test, o in found.items()} == {
        "test_a_killed_controller_resumes_with_no_round_lost_or_repeated": "passed",
        "test_a_killed_vbs_is_restarted_and_the_run_goes_on": "passed"}


def test_a_binary_that_is_missing_fails_bring_up_naming_program_and_host(tmp_path, sshd,
                                                                          capsys):
    config = srsran_config(tmp_path, sshd, **{"vbs.srsran.enb.binary": "/nonexistent/srsenb"})
    assert main(["run", str(config)]) == 1  # the run failed (not the config)
    err = " ".join(capsys.readouterr().err.split())
    assert "srsenb on host bbu (" in err and "/nonexistent/srsenb: not found" in err
    with SshHost("check", **sshd.host_params()) as host:
        assert not host.is_running("srsepc")  # what came up before it was taken down


def test_an_srsran_testbed_with_the_emulated_meter_is_refused_on_load(tmp_path, sshd, capsys):
    config = srsran_config(tmp_path, sshd, **{"meter.kind": "emulated"})
    assert main(["run", str(config)]) == 2
    assert "meter.kind emulated needs the emulated vBS" in capsys.readouterr().err


# ------------------------------------------------------------------ hil check
def check_lines(config: Path, capsys: Any) -> tuple[int, list[str]]:
    code = main(["check", str(config)])
    return code, [" ".join(line.split()) for line in capsys.readouterr().err.splitlines()]


def test_check_passes_on_a_good_srsran_host_with_traffic(tmp_path, sshd, capsys):
    """Stamped build of this series, patched srsenb/srsue, iperf3: every line ok (iperf3
    is looked for, never asked for [rtctl])."""
    config = srsran_config(tmp_path, sshd, **{"traffic.kind": "iperf3"})
    code, lines = check_lines(config, capsys)
    assert code == 0, lines
    assert all(line.startswith("ok ") for line in lines[:-1]) and lines[-1].endswith("ready")
    (binaries,) = [line for line in lines if line.startswith("ok binaries bbu:")]
    assert f"series {series_sha256()[:12]}" in binaries and "iperf3" in binaries


@pytest.mark.parametrize(("broken", "expected"), [
    ({"stamp": None}, "srsenb: no build stamp"),
    ({"stamp": "stale"}, "srsenb: stale build: made from patch series 000000000000"),
    ({"patched": False}, "srsenb has no [rtctl] options"),
])
def test_check_fails_a_broken_srsran_host_naming_what_is_wrong(tmp_path, sshd, capsys, broken,
                                                               expected):
    prefix = install_fake_prefix(tmp_path / "broken", **broken)
    config = srsran_config(tmp_path, sshd, **{"vbs.srsran.prefix": str(prefix)})
    code, lines = check_lines(config, capsys)
    assert code == 1
    (failure,) = [line for line in lines if line.startswith("FAIL")]
    assert failure.startswith("FAIL binaries bbu:") and expected in failure
    assert "hil srsran build" in failure


def test_check_names_a_missing_binary_and_the_key_that_points_at_it(tmp_path, sshd, capsys):
    config = srsran_config(tmp_path, sshd, **{"vbs.srsran.prefix": "/opt/none",
                                              "vbs.srsran.ue.binary": "/opt/other/srsue"})
    code, lines = check_lines(config, capsys)
    assert code == 1
    (failure,) = [line for line in lines if line.startswith("FAIL")]
    assert "/opt/none/bin/srsenb not found (vbs.srsran.enb.binary under vbs.srsran.prefix)" \
        in failure
    assert "/opt/other/srsue not found (vbs.srsran.ue.binary)" in failure


# ------------------------------------------------------------------ iperf3's control path
def test_the_control_path_sends_only_tcp_to_the_other_end_over_the_veth_and_goes_away():
    """Applied for real in a scratch namespace (needs root and iproute2 >= 4.17)."""
    netns = f"hilt{os.getpid() % 100000}"
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "add", netns]).returncode != 0:
        missing("needs root and network namespaces")
    # TEST-NET addresses and a table of its own: a testbed running on this machine keeps its
    path = ControlPath(netns, core_address="203.0.113.1", ue_address="203.0.113.2", table=1999,
                       subnet=("198.51.100.1", "198.51.100.2"))

    def sh(script: str) -> str:
        return subprocess.run(["sh", "-c", script], check=True, capture_output=True,
                              text=True).stdout

    def in_ns(command: str) -> str:
        return sh(f"ip netns exec {netns} {command}")

    try:
        sh(path.up_script())
        sh(path.up_script())  # again over what the first left: replaced, not doubled
        assert f"dev {path.links[1]}" in in_ns("ip route get 203.0.113.1 ipproto tcp")
        assert f"dev {path.links[0]}" in sh("ip route get 203.0.113.2 ipproto tcp")
        assert path.links[0] not in subprocess.run(
            ["ip", "route", "get", "203.0.113.2", "ipproto", "udp"],
            capture_output=True, text=True).stdout
        assert sh("ip rule list").count("to 203.0.113.2 ipproto tcp lookup 1999") == 1
        assert in_ns("ip rule list").count("ipproto tcp") == 1

        sh(path.down_script())

        assert path.links[0] not in sh("ip link show")
        assert "203.0.113.2 ipproto tcp" not in sh("ip rule list")
        assert "ipproto tcp" not in in_ns("ip rule list")
    finally:
        sh(path.down_script())
        subprocess.run(["ip", "netns", "del", netns], check=False)
