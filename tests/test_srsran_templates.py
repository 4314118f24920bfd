"""Every srsRAN template renders, in every CI run, with the values each of its callers
builds: the bring-up of each shipped srsRAN testbed, and the configs the real-srsRAN tests
run (tests/real_srsran.py). All of them go through
`hil.testbeds.srsran_processes.template_values`, so a placeholder added to a template
without a value fails here at once, not only on a machine with the patched build."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml
from real_srsran import acceptance_data
from testbed_yaml import REPO

from drivers.srsran.conf import TEMPLATES, render_program
from hil.base.errors import ConfigError
from hil.config import HilConfig, load_config
from hil.testbeds.srsran_processes import template_values

CONF_DIR = "/srv/hil/srsran"
HOME = "/home/lab"


def shipped(name: str) -> HilConfig:
    return load_config(REPO / "testbed_configs" / name)


def acceptance_config(tmp_path: Path) -> HilConfig:
    """What tests/test_srsran_acceptance.py runs the acceptance suite on."""
    path = tmp_path / "acceptance.yaml"
    path.write_text(yaml.safe_dump(acceptance_data({"hostname": "127.0.0.1"}, tmp_path)))
    return load_config(path)


CALLERS = {
    "zmq-srsran.yaml": lambda tmp_path: shipped("zmq-srsran.yaml"),
    "b210-lab.yaml": lambda tmp_path: shipped("b210-lab.yaml"),
    "test_srsran_acceptance": acceptance_config,
}


def rendered(cfg: HilConfig, program: str) -> dict[str, str]:
    assert cfg.vbs.srsran is not None
    return render_program(cfg.vbs.srsran.templates, program,
                          template_values(cfg, program, CONF_DIR, HOME))


def ini(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(text)
    return conf


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("program", list(TEMPLATES))
def test_every_template_renders_for_every_caller_with_no_placeholder_left(tmp_path, caller,
                                                                          program):
    files = rendered(CALLERS[caller](tmp_path), program)
    assert set(files) == set(TEMPLATES[program])
    for name, text in files.items():
        assert "${" not in text, name


def test_the_enb_config_turns_rtctl_on_and_points_at_its_other_files(tmp_path):
    conf = ini(rendered(acceptance_config(tmp_path), "enb")["enb.conf"])
    assert conf["rtctl"]["enable"] == "true"
    assert conf["rtctl"]["endpoint"] == "tcp://127.0.0.1:5555"
    assert conf["rtctl"]["curve_dir"] == str(tmp_path / "keys")
    assert conf["enb_files"]["rr_config"] == f"{CONF_DIR}/rr.conf"
    assert conf["channel.dl.awgn"]["snr"] == "30.0"
    assert conf["channel.ul.awgn"]["snr"] == "-12.0"  # the UE's power reaches the eNB
    assert conf["rf"]["device_name"] == "zmq" and "tx_port=tcp://127.0.0.1:2000" in \
        conf["rf"]["device_args"]


def test_on_a_lab_the_enb_reads_its_keys_from_the_folder_they_were_installed_to():
    """b210-lab.yaml: srsENB's key folder is `vbs.server_curve_dir` with `~` made the BBU
    user's home (srsENB expands nothing), not the controller's `vbs.curve_dir`."""
    conf = ini(rendered(shipped("b210-lab.yaml"), "enb")["enb.conf"])
    assert conf["rtctl"]["curve_dir"] == f"{HOME}/.vbs-hil/curve"
    assert conf["rtctl"]["endpoint"] == "tcp://192.168.10.11:5555"


def test_the_ue_config_turns_on_the_ue_profile_of_rtctl_and_the_test_gains(tmp_path):
    conf = ini(rendered(acceptance_config(tmp_path), "ue")["ue.conf"])
    assert conf["rtctl"]["enable"] == "true"
    assert conf["rtctl"]["endpoint"] == "tcp://127.0.0.1:5556"
    assert float(conf["rf"]["tx_gain"]) == 0.0
    assert conf["gw"]["netns"] == "ue1"


def test_the_b210_lab_picks_its_radios_by_serial(tmp_path):
    conf = ini(rendered(shipped("b210-lab.yaml"), "enb")["enb.conf"])
    assert conf["rf"]["device_name"] == "UHD"
    assert conf["rf"]["device_args"] == "type=b200,serial=30AD123,clock=internal"


def test_a_template_placeholder_without_a_value_names_the_file_and_the_placeholder(tmp_path):
    (tmp_path / "ue.conf").write_text("[rf]\ntx_gain = ${tx_gian_db}\n")
    with pytest.raises(ConfigError, match=r"ue.conf: placeholder \$\{tx_gian_db\} has no value"):
        render_program(tmp_path, "ue", {"tx_gain_db": 80})
