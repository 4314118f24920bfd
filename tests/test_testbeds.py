"""The kinds of testbed (hil/testbeds/): each shipped config finds its kind through its
config class, and the config refuses a kind there is no module for."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil import testbeds
from hil.base.errors import ConfigError
from hil.config import EmulatedVbsConfig, SrsranVbsConfig, load_config
from hil.testbeds import kind_of
from hil.testbeds.emulated import EmulatedTestbed
from hil.testbeds.srsran import SrsranTestbed

CONFIGS = Path(__file__).parents[1] / "testbed_configs"


@pytest.mark.parametrize(("name", "config_class", "kind_class", "channel"), [
    ("zmq-emulated", EmulatedVbsConfig, EmulatedTestbed, "cqi"),
    ("zmq-emulated-slices", EmulatedVbsConfig, EmulatedTestbed, "cqi"),
    ("zmq-srsran", SrsranVbsConfig, SrsranTestbed, "snr"),
    ("b210-lab", SrsranVbsConfig, SrsranTestbed, "snr"),
])
def test_a_config_s_vbs_section_names_the_kind_that_brings_it_up(name, config_class, kind_class,
                                                                  channel):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    kind = kind_of(cfg)
    assert isinstance(cfg.vbs, config_class) and isinstance(kind, kind_class)
    assert isinstance(kind, testbeds.TestbedKind) and kind.sweep_channel == channel


def test_an_unknown_kind_or_another_kind_s_section_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nvbs: {kind: openairinterface}\n")
    with pytest.raises(ConfigError, match=r"vbs: vbs.kind must be emulated or srsran"):
        load_config(path)
    path.write_text("name: x\nvbs: {kind: emulated, srsran: {}}\n")
    with pytest.raises(ConfigError, match=r"vbs\.srsran: Extra inputs are not permitted"):
        load_config(path)
    path.write_text("name: x\nvbs: {kind: srsran}\nmeter: {kind: cpu_model}\n")
    with pytest.raises(ConfigError, match=r"vbs\.srsran: Field required"):
        load_config(path)


def test_a_srsran_run_recorded_with_an_emulator_section_still_loads():
    """Runs of schema v7 and older dumped `vbs.emulator` for every kind."""
    cfg = load_config(CONFIGS / "zmq-srsran.yaml")
    data = cfg.model_dump(mode="json")
    data["vbs"]["emulator"] = EmulatedVbsConfig().emulator.model_dump(mode="json")
    assert SrsranVbsConfig.model_validate(data["vbs"]) == cfg.vbs
