"""Does the emulated vBS rank policies as the measured one does? (`tools/landscape/`)

The specification, against the dataset measured on real srsRAN over ZMQ and committed with
its provenance (`datasets/measured/srsran-zmq/`, README "The emulated landscape, measured"):
under every condition, for delta 0.1 and 1.5, the calibration fitted to it
(`testbed_configs/calibration/srsran-zmq.yaml`) orders the measured policies with
Spearman's rho >= 0.9, and the measured best policy is among the emulator's top 3 or the
emulator's own best is, measured, within two standard errors of it. CI runs it on the
committed files: no srsRAN needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from testbed_yaml import REPO, write_config

from hil.base.model import load_calibration
from tools.cli import main
from tools.collect.publish import publish
from tools.collect.reading import read_sweep
from tools.landscape.command import reward_params
from tools.landscape.compare import compare

MEASURED = REPO / "datasets" / "measured" / "srsran-zmq"
FITTED = REPO / "testbed_configs" / "calibration" / "srsran-zmq.yaml"
POWER = "enb_cpu_model_w"


@pytest.mark.parametrize("delta", [0.1, 1.5])
def test_the_srsran_fitted_emulator_ranks_the_policies_as_real_srsran_did(delta):
    sweep = read_sweep(MEASURED)
    results = compare(sweep.with_power(POWER), sweep.space, load_calibration(FITTED),
                      reward_params(sweep, [delta]), power=POWER)
    assert len(results) == len(sweep.meta["plan"]["conditions"])
    for r in results:
        assert r.passes, (f"{r.label}, delta {delta}: rho {r.spearman:.3f}, measured best "
                          f"ranked {r.emulated_rank_of_measured_best} by the emulator")


def test_the_nuc_calibration_never_measured_on_srsran_fails_that_comparison():
    """The comparison can fail: at delta 1.5 the hand-set NUC model orders srsRAN's
    policies nearly backwards (its power grows with MCS and PRBs far more than srsRAN's)."""
    sweep = read_sweep(MEASURED)
    results = compare(sweep.with_power(POWER), sweep.space,
                      load_calibration(REPO / "testbed_configs/calibration/emulated-nuc.yaml"),
                      reward_params(sweep, [1.5]), power=POWER)
    assert not any(r.passes for r in results if r.resolvable)
    assert min(r.spearman for r in results if r.resolvable) < 0


def test_the_committed_dataset_states_where_and_how_it_was_measured():
    provenance = json.loads((MEASURED / "provenance.json").read_text())
    assert provenance["vbs"]["kind"] == "srsran"
    assert provenance["vbs"]["build"]["upstream_commit"].startswith("eea87b1d")
    assert len(provenance["vbs"]["build"]["series_sha256"]) == 64
    assert provenance["vbs"]["machine"]["cpus"] >= 1
    assert [c["dl_snr_db"] for c in provenance["conditions"]]
    # no path of the measuring machine: every absolute path was made portable on publishing
    absolute = [v for p in MEASURED.glob("*.json") for v in strings(json.loads(p.read_text()))
                if v.startswith("/")]
    assert absolute == []


def strings(value: object) -> list[str]:
    """Every string inside a JSON value."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.e2e
def test_an_emulated_sweep_compared_with_its_own_calibration_agrees(tmp_path):
    """The comparison itself: an emulated vBS measured by `hil collect` against the model
    it runs (windows of simulated TTIs against expected rounds) ranks alike. Not exactly:
    the expectation averages the fading by quadrature where the windows draw it per TTI
    with HARQ, and the windows' lengths follow the wall clock. Measured over ten sweeps: a
    policy's reward moves by up to 0.029 (mean over policies at most 0.0094), and at delta
    1.5 whole clusters of policies tie within 1e-3, whose order is then the windows' noise
    (rho 0.88-0.99); hence the bounds below, with margin."""
    config = write_config(tmp_path, **{"clock.speedup": 200.0})
    out = tmp_path / "sweep"
    assert main(["collect", str(config), "--grid", "dl_max_mcs=5,16,27",
                 "dl_prb_ratio=0.2,0.6,1", "ul_max_mcs=5,23", "ul_prb_ratio=0.2,1",
                 "--condition", "dl_cqi=15,ul_cqi=15", "--condition", "dl_cqi=7,ul_cqi=9",
                 "--dwell-rounds", "2", "--warmup-rounds", "1", "--out", str(out)]) == 0
    sweep = read_sweep(out)
    truth = load_calibration(REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml")
    results = compare(sweep.cells, sweep.space, truth, reward_params(sweep, [0.1, 1.5]))
    assert len(results) == 4
    for r in results:
        assert r.spearman > 0.85, (r.label, r.delta, r.spearman)
        gap = np.abs(r.measured - r.emulated)
        assert gap.mean() < 0.015 and gap.max() < 0.04, (r.label, r.delta, gap.max())
        assert r.emulated_rank_of_measured_best <= 3 or r.emulated_best_within_noise
    assert all(np.all(r.measured_se >= 0) for r in results)

    published = publish([out], tmp_path / "published")
    assert {p.name for p in published} == {"cells.parquet", "dataset_dlul.csv",
                                          "provenance.json", "run.json"}
    assert not (tmp_path / "published" / "blocks").exists()
    text = (tmp_path / "published" / "run.json").read_text()
    assert str(tmp_path) not in text and "<local>/testbed.yaml" in text
    again = read_sweep(tmp_path / "published")
    assert len(again.cells) == len(sweep.cells) and again.space == sweep.space

    assert main(["landscape", str(tmp_path / "published"), "--calibration",
                 str(REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml")]) == 0
    assert (tmp_path / "published" / "landscape.png").exists()


@pytest.mark.e2e
def test_a_plan_measured_again_publishes_as_repetitions_and_its_spread_counts_as_noise(
        tmp_path):
    config = write_config(tmp_path, **{"clock.speedup": 200.0})
    grid = ["dl_max_mcs=5,27", "dl_prb_ratio=0.2,1", "ul_max_mcs=5,23", "ul_prb_ratio=0.2,1"]
    for seed in ("1", "2"):
        assert main(["collect", str(config), "--grid", *grid, "--dwell-rounds", "2",
                     "--warmup-rounds", "1", "--seed", seed,
                     "--out", str(tmp_path / f"s{seed}")]) == 0
    publish([tmp_path / "s1", tmp_path / "s2"], tmp_path / "both")
    both = read_sweep(tmp_path / "both")
    assert len(both.cells) == 32 and sorted(both.cells["rep"].unique()) == [0, 1]
    assert both.cells["cell_id"].is_unique and both.meta["plan"]["seeds"] == [1, 2]
    assert [s["seed"] for s in both.provenance["sweeps"]] == [1, 2]
    (twice,) = [r for r in compare(both.cells, both.space, load_calibration(
        REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml"),
        reward_params(both, [1.5]))]
    (once,) = compare(read_sweep(tmp_path / "s1").cells, both.space, load_calibration(
        REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml"),
        reward_params(both, [1.5]))
    assert len(twice.measured) == 16  # one reward per policy: the mean of its two cells
    assert np.all(twice.measured_se >= 0) and twice.measured_se.mean() > 0
    with pytest.raises(Exception, match="not the plan"):
        assert main(["collect", str(config), "--grid", *grid[:3], "ul_prb_ratio=1",
                     "--dwell-rounds", "2", "--warmup-rounds", "1",
                     "--out", str(tmp_path / "other")]) == 0
        publish([tmp_path / "s1", tmp_path / "other"], tmp_path / "bad")
    assert once.measured.shape == twice.measured.shape
