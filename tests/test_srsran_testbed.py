"""The srsRAN testbed's drivers over a real sshd, with test doubles for the three binaries.

`tests/fake_srsran.py` stands in for srsepc, srsenb and srsue: it reads the rendered
config, prints the real program's ready line, and the fake eNB serves rtctl (the emulated
vBS). So `hil run` on `testbed_configs/zmq-srsran.yaml` goes through rendering, upload,
start-up order, ready detection, the rtctl connection, crash restart and teardown. The real
binaries are exercised by tests/test_srsran_real.py when HIL_SRSRAN_BIN is set.
"""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.srsran.conf import TEMPLATES, render_program
from drivers.ssh import SshHost
from hil.cli import main
from hil.config import apply_overrides, load_config
from hil.errors import ConfigError
from hil.recorder import read_rounds
from hil.srsran import ControlPath, radio_device

from testbed_yaml import REPO, ssh_host_entry

pytestmark = pytest.mark.e2e
SHIPPED_SRSRAN = REPO / "testbed_configs" / "zmq-srsran.yaml"
SMALL_SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [5, 27], "dl_prb_ratio": [0.2, 1.0],
               "ul_max_mcs": [5, 23], "ul_prb_ratio": [0.2, 1.0]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_binaries(directory: Path, crash: str | None = None) -> dict[str, str]:
    """Executables named like srsRAN's that run tests/fake_srsran.py."""
    directory.mkdir(exist_ok=True)
    paths = {}
    for program in ("epc", "enb", "ue"):
        path = directory / f"srs{program}"
        path.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} "
                        f"{REPO / 'tests' / 'fake_srsran.py'} {program} \"$@\"\n")
        path.chmod(0o755)
        paths[program] = str(path)
    return paths


def srsran_config(tmp_path: Path, sshd: Any, **changes: Any) -> Path:
    """The shipped zmq-srsran.yaml with the fakes, the test's sshd, and a free rtctl port."""
    data = yaml.safe_load(SHIPPED_SRSRAN.read_text())
    bins = fake_binaries(tmp_path / "bin")
    srs = data["vbs"]["srsran"]
    srs["templates"] = str(REPO / "testbed_configs" / "srsran")
    srs["rtctl_bind"] = f"tcp://127.0.0.1:{free_port()}"
    for program in ("epc", "enb", "ue"):
        srs[program]["binary"] = bins[program]
    srs["ue"]["netns"] = None  # namespaces need CAP_SYS_ADMIN, which CI may lack
    data["hosts"] = {"bbu": ssh_host_entry(sshd)}
    data["traffic"] = {"kind": "none"}
    data["recording"]["out_dir"] = str(tmp_path / "runs")
    data.update(rounds=20, round_s=0.1, policy_space=SMALL_SPACE)
    apply_overrides(data, changes)
    path = tmp_path / "zmq-srsran.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rendered(program: str) -> dict[str, str]:
    cfg = load_config(SHIPPED_SRSRAN)
    values = {"conf_dir": "/srv/x", "mme_addr": "127.0.1.100", "enb_addr": "127.0.1.1",
              "sgi_addr": "172.16.0.1", "n_prb": 50, "dl_earfcn": 3350,
              "device_name": "zmq", "device_args": "a=b", "tx_gain_db": 80, "rx_gain_db": 40,
              "channel_enable": "true", "awgn_snr_db": 30, "rtctl_bind": "tcp://127.0.0.1:5555",
              "rtctl_curve_dir": "/srv/keys", "ue_imsi": "001010123456789", "ue_key": "k",
              "ue_opc": "o", "ue_imei": "1",
              "ue_ip": "172.16.0.2", "netns": "ue1", "ue_rtctl_bind": "tcp://127.0.0.1:5556"}
    return render_program(cfg.vbs.srsran.templates, program, values)


# ------------------------------------------------------------------ the templates
@pytest.mark.parametrize("program", list(TEMPLATES))
def test_every_template_renders_with_no_placeholder_left(program):
    for name, text in rendered(program).items():
        assert "${" not in text, name


def test_the_enb_config_turns_rtctl_on_and_points_at_its_other_files():
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(rendered("enb")["enb.conf"])
    assert conf["rtctl"]["enable"] == "true"
    assert conf["rtctl"]["endpoint"] == "tcp://127.0.0.1:5555"
    assert conf["rtctl"]["curve_dir"] == "/srv/keys"
    assert conf["enb_files"]["rr_config"] == "/srv/x/rr.conf"
    assert conf["channel.dl.awgn"]["snr"] == "30"


def test_the_ue_config_turns_on_the_ue_profile_of_rtctl():
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(rendered("ue")["ue.conf"])
    assert conf["rtctl"]["enable"] == "true"
    assert conf["rtctl"]["endpoint"] == "tcp://127.0.0.1:5556"


def test_a_template_placeholder_without_a_value_names_the_file_and_the_placeholder(tmp_path):
    (tmp_path / "ue.conf").write_text("[rf]\ntx_gain = ${tx_gian_db}\n")
    with pytest.raises(ConfigError, match=r"ue.conf: placeholder \$\{tx_gian_db\} has no value"):
        render_program(tmp_path, "ue", {"tx_gain_db": 80})


def test_zmq_radios_cross_their_ports_and_b210s_are_picked_by_serial():
    cfg = load_config(REPO / "testbed_configs" / "b210-lab.yaml")
    assert radio_device(cfg.vbs.srsran.radio, "enb", "x") == (
        "UHD", "type=b200,serial=30AD123,clock=internal")
    zmq = load_config(SHIPPED_SRSRAN).vbs.srsran.radio
    assert "tx_port=tcp://*:2000" in radio_device(zmq, "enb", "ue-host")[1]
    assert "rx_port=tcp://ue-host:2001" in radio_device(zmq, "enb", "ue-host")[1]
    assert "tx_port=tcp://*:2001" in radio_device(zmq, "ue", "bbu")[1]
    assert "rx_port=tcp://bbu:2000" in radio_device(zmq, "ue", "bbu")[1]


# ------------------------------------------------------------------ over SSH, with doubles
def test_a_run_brings_the_chain_up_in_order_and_takes_it_down(tmp_path, sshd):
    config = srsran_config(tmp_path, sshd)
    assert main(["run", str(config)]) == 0
    rounds = read_rounds(next((tmp_path / "runs").iterdir()))
    assert len(rounds) == 20 and rounds["valid"].all()
    assert (rounds["testbed_restarts"] == 0).all()
    assert rounds["host_cpu_pct"].notna().all()  # host metrics on: a column per round
    with SshHost("check", **sshd.host_params()) as host:
        for name in ("srsepc", "srsenb", "srsue"):
            assert not host.is_running(name), name
        assert "eNodeB started" in host.tail("srsenb")
        state = sshd.host_params()["state_dir"]
        uploaded = host.run(f"ls {state}/srsran").stdout.split()
    assert sorted(uploaded) == sorted(n for names in TEMPLATES.values() for n in names)


def test_a_crashed_enb_is_restarted_and_the_run_goes_on(tmp_path, sshd):
    config = srsran_config(tmp_path, sshd, rounds=60)
    with SshHost("killer", **sshd.host_params()) as host:
        def kill_enb_once_up() -> None:
            for _ in range(200):
                if host.is_running("srsenb") and host.is_running("srsue"):
                    time.sleep(1.0)
                    host.run("pkill -9 -f '[f]ake_srsran.py enb'", check=False)
                    return
                time.sleep(0.05)
        killer = threading.Thread(target=kill_enb_once_up)
        killer.start()
        assert main(["run", str(config)]) == 0
        killer.join()
    rounds = read_rounds(next((tmp_path / "runs").iterdir()))
    assert len(rounds) == 60
    assert rounds["testbed_restarts"].max() == 1
    assert rounds["valid"].iloc[-10:].all()  # back to valid rounds after the restart


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
def test_check_finds_the_host_its_clock_and_a_patched_enb(tmp_path, sshd, capsys):
    config = srsran_config(tmp_path, sshd)
    assert main(["check", str(config)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("ok    host bbu:") and "clock offset" in line for line in lines)
    assert any(line.startswith("ok    binaries bbu:") for line in lines)


def test_check_names_a_missing_binary_and_an_unpatched_enb_on_one_line_each(tmp_path, sshd,
                                                                             capsys):
    unpatched = tmp_path / "srsenb-upstream"
    unpatched.write_text("#!/bin/sh\necho '  --enb.n_prb arg'\n")
    unpatched.chmod(0o755)
    config = srsran_config(tmp_path, sshd, **{"vbs.srsran.enb.binary": str(unpatched),
                                              "vbs.srsran.ue.binary": "/opt/none/srsue"})
    assert main(["check", str(config)]) == 1
    (failure,) = [" ".join(line.split()) for line in capsys.readouterr().err.splitlines()
                  if line.startswith("FAIL")]
    assert "/opt/none/srsue not found (vbs.srsran.ue.binary)" in failure
    assert "srsenb-upstream has no [rtctl] options" in failure


# ------------------------------------------------------------------ iperf3's control path
def test_the_control_path_sends_only_tcp_to_the_other_end_over_the_veth_and_goes_away():
    """Applied for real in a scratch namespace (needs root and iproute2 >= 4.17)."""
    netns = f"hilt{os.getpid() % 100000}"
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "add", netns]).returncode != 0:
        pytest.skip("needs root and network namespaces")
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
