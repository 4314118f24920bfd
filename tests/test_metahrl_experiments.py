"""`hil metahrl`: the experiments at CI size, their resumption, and the convergence measures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.meta_hrl.training import AdaptConfig
from hil.executor import parse_executor
from tools.cli import main
from tools.metahrl.experiments import Setup, converged_at
from tools.metahrl.protocol import compute_baselines, load_or_compute
from tools.metahrl.report import ABLATION, COMPARED

TINY = ["--seeds", "2", "--iterations", "4", "--shots", "2", "--dus", "2", "--ues", "6",
        "--heldout-dus", "2", "--updates-per-iteration", "2",
        "--scale-dus", "3", "--scale-ues", "9", "--executor", "local:1"]


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY's baselines (both families), the slowest part of its report (a search of slice
    splits per DU), computed once for the module: they depend only on the pools of DUs.
    Their searches score each split on 20-step episodes instead of 100: these tests check
    the report's tables, not the numbers in them."""
    folder = tmp_path_factory.mktemp("baselines")
    for family in ("visible", "hidden"):
        load_or_compute(folder, Setup(n_dus=2, n_ues=6, n_heldout=2, family=family).pools,
                        config=AdaptConfig(eval_steps=20))
    return folder


def out_with(baselines: Path, out: Path) -> Path:
    """`out` holding the baselines, as a rerun of the command into it would find them."""
    shutil.copytree(baselines, out)
    return out


def test_a_ci_sized_sweep_writes_every_table_and_figure_and_a_rerun_runs_nothing(tmp_path,
                                                                                  capsys,
                                                                                  baselines):
    out = out_with(baselines, tmp_path / "metahrl")
    assert main(["metahrl", *TINY, "--out", str(out)]) == 0
    jobs = sorted(p.name for p in (out / "jobs").glob("*.json"))
    # 2 seeds x (the compared methods on both families, the ablation, Meta-HRL on 3 x 9)
    assert len(jobs) == 2 * (2 * len(COMPARED) + len(ABLATION) + 1)
    report = (out / "report.md").read_text()
    for heading in ("Gates (visible family)", "Gates (hidden family)", "The paper's claims",
                    "Against the baselines: visible", "Against the baselines: hidden",
                    "Scaling", "Task weighting"):
        assert heading in report
    for name in ("| drl |", "| tl |", "| mtl |", "| scratch |", "Uniform-Meta", "| 3 | 9 |",
                 "| equal split |", "| load-proportional |", "| proportional fair |",
                 "users by queue (searched on the training DUs)",
                 "MAML's inner step moves the actions", "Meta-HRL minus",
                 "Meta-HRL beats DRL", "adaptive beats uniform weighting",
                 "2 -> 3 DUs: more iterations to converge", "hidden slice weights: Meta-HRL "
                 "beats MTL", "hidden: Meta-HRL beats the best fixed scheduler"):
        assert name in report, name
    for figure in ("training.png", "adaptation.png", "adaptation-hidden.png"):
        assert (out / figure).stat().st_size > 0
    capsys.readouterr()

    assert main(["metahrl", *TINY, "--out", str(out)]) == 0
    assert "0 jobs to run" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "jobs").glob("*.json")) == jobs


def test_methods_narrows_a_sweep_to_the_methods_named_and_refuses_unknown_ones(tmp_path,
                                                                               capsys,
                                                                               baselines):
    out = out_with(baselines, tmp_path / "two")
    assert main(["metahrl", *TINY, "--experiments", "compare", "--methods", "meta-hrl,tl",
                 "--seeds", "1", "--iterations", "1", "--out", str(out)]) == 0
    methods = {json.loads(p.read_text())["method"] for p in (out / "jobs").glob("*.json")}
    assert methods == {"meta-hrl", "tl"}
    capsys.readouterr()
    assert main(["metahrl", *TINY, "--methods", "maml", "--out", str(out)]) == 2
    assert "unknown ['maml']" in capsys.readouterr().err


def test_jobs_give_the_same_results_in_one_process_in_local_workers_and_on_dask(tmp_path,
                                                                               baselines):
    """A job depends on its method, seed and setup only, not on where it ran."""
    narrow = [*TINY[:-2], "--experiments", "compare", "--families", "hidden",
              "--methods", "meta-hrl,scratch", "--iterations", "2", "--seeds", "1"]
    results = {}
    for where in ("local:1", "local:2", "dask-local:2"):
        out = out_with(baselines, tmp_path / where.replace(":", "-"))
        assert main(["metahrl", *narrow, "--executor", where, "--out", str(out)]) == 0
        results[where] = {p.name: json.loads(p.read_text())["adapt_reward"]
                          for p in (out / "jobs").glob("*.json")}
    assert len(results["local:1"]) == 2  # two jobs: local:2 runs them side by side
    assert results["local:1"] == results["local:2"] == results["dask-local:2"]


def test_the_baselines_split_searches_give_the_same_numbers_on_parallel_workers():
    pools = Setup(n_dus=2, n_ues=6, n_heldout=2).pools
    short = AdaptConfig(eval_steps=5)  # the same searches, on short episodes
    here = compute_baselines(pools, short)
    assert compute_baselines(pools, short, parse_executor("local:2")) == here
    assert len(here.best) == len(here.equal) == 2


def test_convergence_is_the_first_point_with_95_percent_of_the_best_gain_by_hand():
    assert converged_at([0.5, 0.6, 0.7, 0.8, 0.8, 0.8]) == 3
    assert converged_at([0.5, 0.6, 0.79, 0.8]) == 2  # 0.79 >= 0.5 + 0.95 * 0.3 = 0.785
    assert converged_at([0.5, 0.5, 0.4]) == 0  # never improved on the first point


def test_a_saved_meta_model_is_what_a_metahrl_run_starts_from(tmp_path):
    from agents.meta_hrl.agent import MetaHrlAgent

    path = tmp_path / "meta.pt"
    assert main(["metahrl", "--save-model", str(path), "--iterations", "2", "--dus", "2",
                 "--ues", "6"]) == 0
    agent = MetaHrlAgent(1, seed=3, du={"n_ues": 6, "seed": 0}, model=str(path))
    fresh = MetaHrlAgent(1, seed=3, du={"n_ues": 6, "seed": 0})
    assert any(not np.array_equal(agent.params[k].detach().numpy(), v.detach().numpy())
               for k, v in fresh.params.items())
