"""`hil acceptance CONFIG`, a lab's acceptance suite (tools/acceptance/), against the emulated
testbed (the emulator a child process, its own meter): every test it can serve
passes, the others are skipped with their reason, and the report holds the testbed's
identity and what each test measured. With CURVE configured, the CURVE test runs too."""

from __future__ import annotations

import json

import pytest
import yaml
from acceptance_runs import acceptance, outcomes
from testbed_yaml import REPO, ssh_host_entry, write_config

from drivers.rtctl.curve import create_keys
from hil.config import load_config
from hil.testbeds import kind_of
from tools.acceptance.capabilities import CAPABILITIES, missing


def test_the_suite_passes_on_the_emulated_testbed_and_says_what_it_skipped_and_why(tmp_path):
    report = tmp_path / "report"
    # the emulator a child process with its own meter: the shipped BBU host over SSH and the
    # GPM-8213 twin are tests/test_e2e.py's (polled in 10 ms rounds, the twin loses windows
    # on a busy CI machine, and the suite asks every round valid)
    config = write_config(tmp_path, **{"recording.checkpoint_every": 20})  # the kill after it
    done = acceptance(str(config), "--report", str(report))
    assert done.returncode == 0, done.stdout[-4000:]
    found = outcomes(report)
    skipped = {test: o["detail"] for test, o in found.items() if o["outcome"] == "skipped"}
    lacking = {name: f"{name}: {capability.lacking}" for name, capability in CAPABILITIES.items()}
    assert skipped == {  # the emulated vBS has no UE of its own
        "test_curve_serves_only_the_authorized_controller": lacking["curve"],
        "test_a_ue_power_cap_is_kept_and_a_reset_lifts_it": lacking["ue_rtctl"],
        "test_a_ue_power_cap_lowers_the_ul_snr_mcs_and_rate_at_the_enb":
            f"{lacking['ue_rtctl']}; {lacking['ul_noise_floor']}"}
    passed = [test for test, o in found.items() if o["outcome"] == "passed"]
    assert len(passed) == len(found) - 3 >= 10
    identity = json.loads((report / "report.json").read_text())["identity"]
    assert identity["kind"] == "emulated" and identity["vbs"].startswith("emulated-srsenb")
    text = (report / "report.md").read_text()
    for shown in ("## The testbed", "| rtctl | v1 |", "throughput and MCS by cap",
                  "| dl_max_mcs | 27 |", "mean watts of three windows", "killed and resumed",
                  "the vBS killed mid-run", "users and their QCI", "| skipped |"):
        assert shown in text, shown
    assert len(list(report.glob("*.png"))) == 2  # throughput by cap, watts by airtime and MCS


def test_with_curve_configured_the_curve_test_runs_and_passes(tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys)
    config = write_config(tmp_path, **{"vbs.curve_dir": str(keys)})
    report = tmp_path / "report"
    done = acceptance(str(config), "--report", str(report), "-k", "curve")
    assert done.returncode == 0, done.stdout[-4000:]
    assert outcomes(report)["test_curve_serves_only_the_authorized_controller"][
        "outcome"] == "passed"


def test_a_testbed_without_a_capability_names_it_and_what_it_would_take():
    shipped = load_config(REPO / "testbed_configs" / "zmq-emulated.yaml")
    lab = load_config(REPO / "testbed_configs" / "b210-lab.yaml")
    assert missing(shipped, ("rf", "real_meter")) == [
        f"rf: {CAPABILITIES['rf'].lacking}", f"real_meter: {CAPABILITIES['real_meter'].lacking}"]
    assert missing(lab, tuple(CAPABILITIES)) == []  # a B210 lab can serve every test
    srsran = load_config(REPO / "testbed_configs" / "zmq-srsran.yaml")
    assert missing(srsran, ("ue_rtctl", "iperf3", "ul_noise_floor", "supply_watts")) == [
        f"ul_noise_floor: {CAPABILITIES['ul_noise_floor'].lacking}",
        f"supply_watts: {CAPABILITIES['supply_watts'].lacking}"]
    with pytest.raises(ValueError, match="unknown capabilities"):
        missing(shipped, ("teleport",))


def test_a_bad_config_is_named_before_any_test_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclock: {speedup: 0}\n")
    done = acceptance(str(bad))
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert "bad.yaml" in said and "clock.speedup" in said


def test_a_b210_lab_s_identity_names_its_radios_its_build_and_its_machine(tmp_path, sshd):
    """What the report's identity reads of b210-lab.yaml's testbed (its hosts here the test's
    sshd): the B210 serials the bring-up opens, the srsRAN build stamp or why there is none,
    the BBU host's machine."""
    data = yaml.safe_load((REPO / "testbed_configs" / "b210-lab.yaml").read_text())
    data["hosts"] = {"bbu": ssh_host_entry(sshd), "ue": ssh_host_entry(sshd)}
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "lab.yaml")
    identity = kind_of(cfg).provenance(cfg)
    assert identity["radio"] == "uhd"
    assert identity["radio_serials"] == {"enb": "30AD123", "ue": "30AD456"}
    assert identity["machine"]["cpus"] >= 1
    assert str(identity["build"]).startswith("no build stamp at ")  # no srsRAN on the sshd
