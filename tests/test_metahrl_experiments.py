"""`hil metahrl`: the experiments at CI size, their resumption, and the convergence measures."""

from __future__ import annotations

import json

import numpy as np

from hil.cli import main
from tools.metahrl.experiments import METHODS, iterations_to_converge, shots_to_converge

TINY = ["--seeds", "1", "--iterations", "3", "--shots", "2", "--dus", "2", "--ues", "6",
        "--heldout-dus", "2",
        "--scale-dus", "3", "--scale-ues", "9"]


def test_a_ci_sized_sweep_writes_every_table_and_figure_and_a_rerun_runs_nothing(tmp_path,
                                                                                  capsys):
    out = tmp_path / "metahrl"
    assert main(["metahrl", *TINY, "--out", str(out)]) == 0
    jobs = sorted(p.name for p in (out / "jobs").glob("*.json"))
    assert len(jobs) == len(METHODS) + 1  # every method on 2 x 6, Meta-HRL also on 3 x 9
    report = (out / "report.md").read_text()
    for heading in ("Gates", "Against the baselines", "Scaling", "Task weighting"):
        assert heading in report
    for name in ("| drl |", "| tl |", "| mtl |", "| scratch |", "Uniform-Meta", "Static-Var",
                 "softmax", "| 3 | 9 |", "| equal split |", "| load-proportional |",
                 "| proportional fair |", "users by queue (searched on the training DUs)",
                 "MAML's inner step moves the actions", "Meta-HRL minus"):
        assert name in report
    assert (out / "training.png").stat().st_size > 0 and (out / "adaptation.png").exists()
    capsys.readouterr()

    assert main(["metahrl", *TINY, "--out", str(out)]) == 0
    assert "0 jobs to run" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "jobs").glob("*.json")) == jobs


def test_methods_narrows_a_sweep_to_the_methods_named_and_refuses_unknown_ones(tmp_path,
                                                                               capsys):
    out = tmp_path / "two"
    assert main(["metahrl", *TINY, "--experiments", "compare", "--methods", "meta-hrl,tl",
                 "--out", str(out)]) == 0
    methods = [json.loads(p.read_text())["method"] for p in (out / "jobs").glob("*.json")]
    assert sorted(methods) == ["meta-hrl", "tl"]
    capsys.readouterr()
    assert main(["metahrl", *TINY, "--methods", "maml", "--out", str(out)]) == 2
    assert "unknown ['maml']" in capsys.readouterr().err


def test_iterations_to_converge_is_where_the_smoothed_curve_made_95_percent_of_its_gain():
    curve = np.concatenate([np.linspace(0.0, 1.0, 50), np.ones(50)])
    # smoothed over 10 iterations, the curve starts at 4.5/49 and ends at 1, so the level to
    # reach is 0.0918 + 0.95 * 0.9082 = 0.9546; the window of iterations 43..52 averages
    # (43 + ... + 49) / 49 / 10 + 3 / 10 = 0.957, the first above it: 53 iterations
    assert iterations_to_converge(curve) == 53
    assert iterations_to_converge(np.full(40, 0.5)) == 0  # nothing to gain


def test_shots_to_converge_by_hand():
    assert shots_to_converge([0.5, 0.6, 0.7, 0.8, 0.8, 0.8]) == 3
    assert shots_to_converge([0.5, 0.5, 0.4]) == 0  # adaptation never improved


def test_a_saved_meta_model_is_what_a_metahrl_run_starts_from(tmp_path):
    from agents.meta_hrl.agent import MetaHrlAgent

    path = tmp_path / "meta.pt"
    assert main(["metahrl", "--save-model", str(path), "--iterations", "2", "--dus", "2",
                 "--ues", "6"]) == 0
    agent = MetaHrlAgent(1, seed=3, du={"n_ues": 6, "seed": 0}, model=str(path))
    fresh = MetaHrlAgent(1, seed=3, du={"n_ues": 6, "seed": 0})
    assert any(not np.array_equal(agent.params[k].detach().numpy(), v.detach().numpy())
               for k, v in fresh.params.items())
