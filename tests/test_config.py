"""Config files are validated on load; every error names the file and the key."""

from pathlib import Path

import pytest

from agents.meta_hrl.env import heldout_task
from hil.base.errors import ConfigError
from hil.config import load_config
from hil.run import build_agent

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "testbed_configs" / "zmq-emulated.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_the_shipped_default_config_loads_with_the_paper_space():
    cfg = load_config(DEFAULT)
    assert cfg.policy_space.size == 1080
    assert cfg.vbs.emulator.calibration.is_absolute() and cfg.vbs.emulator.calibration.exists()


def test_make_runs_the_default_job_on_the_papers_16_policy_subset():
    first = load_config(REPO / "testbed_configs" / "zmq-emulated-16.yaml")
    assert first.policy_space.size == 16
    assert first.model_dump(exclude={"name", "policy_space"}) == \
        load_config(DEFAULT).model_dump(exclude={"name", "policy_space"})


def test_command_line_overrides_reach_nested_keys():
    cfg = load_config(DEFAULT, {"agent.name": "random", "rounds": 7, "seed": None})
    assert cfg.agent.name == "random" and cfg.rounds == 7 and cfg.seed == 1


def test_another_agent_on_the_command_line_leaves_the_configs_agent_options_behind():
    slices = REPO / "testbed_configs" / "zmq-emulated-slices.yaml"
    assert load_config(slices).agent.params  # written for metahrl
    cfg = load_config(slices, {"agent.name": "fixed-slicing"})
    assert cfg.agent.name == "fixed-slicing" and cfg.agent.params == {}
    assert build_agent(cfg) is not None


def test_the_same_agent_on_the_command_line_keeps_its_options():
    slices = REPO / "testbed_configs" / "zmq-emulated-slices.yaml"
    assert load_config(slices, {"agent.name": "metahrl"}).agent.params == \
        load_config(slices).agent.params


def test_an_agent_option_refused_when_the_agent_is_built_names_the_key():
    cfg = load_config(DEFAULT, {"agent.name": "metbs", "agent.params": {"children": ["nope"]}})
    with pytest.raises(ConfigError, match=r"^agent.params: metbs: "):
        build_agent(cfg)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_syntax_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line 3, column 4"):
        load_config(write(tmp_path, "name: x\nrounds: {a: 1\n  b: 2}\n"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("name: x\nrounds: 0\n", "rounds"),
        ("name: x\nclock: {mode: accelerated, speedup: -1}\n", "clock.speedup"),
        ("name: x\nclock: {mode: realtime, speedup: 5}\n", "clock"),
        ("name: x\nclock: {mode: stepped, speedup: 5}\n", "clock"),
        ("name: x\nagent: {name: nope}\n", "agent.name"),
        ("name: x\nagent: {name: ucb, gamma: 0.1}\n", "agent"),
        ("name: x\nagent: {name: bpvran, params: {max_pionts: 5}}\n", "agent"),
        ("name: x\nreward: {power_min_w: 10, power_max_w: 5}\n", "reward"),
        ("name: x\nvbs: {emulator: {scenario: {name: trace}}}\n", "vbs.emulator.scenario"),
        ("name: x\nrecording: {checkpoint_evry: 5}\n", "recording.checkpoint_evry"),
        ("rounds: 5\n", "name"),
        (("name: x\npolicy_space: {dl_gain_db: [0], dl_max_mcs: [30], dl_prb_ratio: [1],"
          " ul_max_mcs: [5], ul_prb_ratio: [1]}\n"), "policy_space"),
    ],
)
def test_invalid_values_name_file_and_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key.startswith(key)
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}: {key}")


def test_a_stepped_clock_with_a_wall_clock_meter_is_refused_naming_what_works(tmp_path):
    with pytest.raises(ConfigError, match="stepped needs vbs.kind emulated and meter.kind "
                                          "emulated"):
        load_config(write(tmp_path, "name: x\nclock: {mode: stepped}\nmeter: {kind: gpm8213}\n"))
    assert load_config(write(tmp_path, "name: x\nclock: {mode: stepped}\n")).period_s == 0.0


def test_a_non_mapping_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_any_registered_agent_is_configured_with_its_own_options(tmp_path):
    cfg = load_config(write(tmp_path, (
        "name: x\nagent: {name: metbs, params: {children: [bsvbs, {name: greedy, "
        "epsilon: 0.1}]}}\n")))
    agent = build_agent(cfg)
    assert agent.name == "metbs" and agent.n_actions == cfg.policy_space.size


def test_an_unknown_agent_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError,
                       match="known agents: bpvran, bpvran_lagged, bsvbs, exp3ix, "
                       "fixed-slicing, greedy, metahrl, metbs"):
        load_config(write(tmp_path, "name: x\nagent: {name: nope}\n"))


def test_a_scheduler_over_users_without_a_du_is_refused_naming_where_to_give_it(tmp_path):
    with pytest.raises(ConfigError, match=r"vbs\.emulator\.du"):
        load_config(write(tmp_path, "name: x\nagent: {name: metahrl}\n"))
    cfg = load_config(write(tmp_path, "name: x\nagent: {name: metahrl}\n"
                            "vbs: {emulator: {du: {n_ues: 6, seed: 2}}}\n"))
    agent = build_agent(cfg)
    assert len(agent.live.rntis) == 6 and agent.env.profile == heldout_task(6, seed=2).profile


def test_the_shipped_sliced_testbed_loads():
    cfg = load_config(DEFAULT.parent / "zmq-emulated-slices.yaml")
    assert cfg.agent.name == "metahrl" and cfg.vbs.emulator.du.n_ues == 6


# --- extends: a lab's own file holds only what differs -------------------------------------
SRSRAN_SHIPPED = REPO / "testbed_configs" / "zmq-srsran.yaml"


def test_a_config_that_extends_the_shipped_one_changes_only_what_it_gives(tmp_path):
    own = write(tmp_path, f"extends: {SRSRAN_SHIPPED}\n"
                          "vbs:\n  srsran:\n    prefix: /opt/our-srsran\n"
                          "    epc: {env: {LD_PRELOAD: /opt/shim.so}}\n")
    cfg, shipped = load_config(own), load_config(SRSRAN_SHIPPED)
    assert cfg.vbs.srsran.prefix == "/opt/our-srsran"
    assert cfg.vbs.srsran.epc.env == {"LD_PRELOAD": "/opt/shim.so"}
    assert cfg.vbs.srsran.epc.binary == "srsepc" and cfg.vbs.srsran.epc.host == "bbu"
    assert cfg.vbs.srsran.enb == shipped.vbs.srsran.enb and cfg.reward == shipped.reward


def test_relative_paths_of_an_extended_config_stay_relative_to_its_own_folder(tmp_path):
    (tmp_path / "lab").mkdir()
    own = tmp_path / "lab" / "ours.yaml"
    own.write_text(f"extends: {SRSRAN_SHIPPED}\nname: ours\n"
                   "hosts: {bbu: {key_path: keys/id_ed25519}}\n")
    cfg = load_config(own)
    shipped_dir = SRSRAN_SHIPPED.parent
    assert cfg.vbs.srsran.templates == shipped_dir / "srsran"  # the shipped file's
    assert cfg.hosts["bbu"].known_hosts_path == (shipped_dir / "../.hil/sshd/known_hosts")
    assert cfg.hosts["bbu"].key_path == tmp_path / "lab" / "keys" / "id_ed25519"  # its own


def test_a_copied_config_with_a_relative_prefix_takes_it_from_its_own_folder(tmp_path):
    own = write(tmp_path, f"extends: {SRSRAN_SHIPPED}\nvbs: {{srsran: {{prefix: build/x}}}}\n")
    assert load_config(own).vbs.srsran.prefix == str(tmp_path / "build" / "x")


def test_extends_in_a_circle_or_to_a_missing_file_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: configs extend each other in a circle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_config(write(tmp_path, "extends: missing.yaml\n"))


def test_an_error_in_what_an_extending_config_adds_names_that_file_and_key(tmp_path):
    own = write(tmp_path, f"extends: {SRSRAN_SHIPPED}\nvbs: {{srsran: {{n_prb: 42}}}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: vbs.srsran.n_prb"):
        load_config(own)
