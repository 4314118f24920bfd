"""`hil compare`: agents x seeds through the run engine, paired by seed, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from testbed_yaml import write_config

from hil.recorder import RunDirectory, read_rounds
from tools.cli import main
from tools.online_compare.report import Comparison, RunFigures
from tools.online_compare.runs import CompareError, Plan, check_out, parse_agent, specs

AGENTS = ["metahrl:batch_size=4", "fixed-slicing:rule=equal"]


def test_an_agent_is_a_name_with_yaml_parameters():
    spec = parse_agent("fixed-slicing:rule=constant:shares=[0.5, 0.3, 0.2]")
    assert spec.name == "fixed-slicing"
    assert spec.params == {"rule": "constant", "shares": [0.5, 0.3, 0.2]}
    assert spec.folder == "fixed-slicing_rule=constant_shares=_0.5_0.3_0.2_"
    assert parse_agent("metahrl").params == {}
    with pytest.raises(CompareError, match=r"expected NAME\[:KEY=VALUE"):
        parse_agent("metahrl:batch_size")


def figures(agent: str, seed: int, reward: float, invalid: int = 0) -> RunFigures:
    return RunFigures(agent, seed, f"runs/{agent}/{seed}", 10, invalid, reward, reward,
                      10.0, 5.0)


def test_the_differences_are_paired_by_seed_and_only_over_complete_pairs():
    runs = (figures("a", 0, 0.5), figures("a", 1, 0.7), figures("a", 2, 0.9),
            figures("b", 1, 0.6), figures("b", 0, 0.3),  # seed 2 of b missing
            figures("c", 0, 0.1), figures("c", 1, 0.9, invalid=10))  # no valid round
    comparison = Comparison("x.yaml", 10, ("a", "b"), runs)
    assert comparison.seeds == [0, 1]
    a, b = comparison.summary()
    assert a["reward"]["mean"] == pytest.approx(0.6) and "paired" not in a
    assert b["paired"]["per_seed"] == pytest.approx([0.2, 0.1])
    assert b["paired"]["mean"] == pytest.approx(0.15)
    assert b["paired"]["low"] == pytest.approx(0.1) and b["paired"]["high"] == pytest.approx(0.2)
    assert [r.seed for r in comparison.unpaired if r.agent == "a"] == [2]
    with_c = Comparison("x.yaml", 10, ("a", "c"), runs)
    assert with_c.seeds == [0]  # c's seed 1 has no valid round


def run_dirs(out) -> list:
    return sorted(p for p in (out / "runs").glob("*/seed-*/*") if p.is_dir())


@pytest.mark.e2e
def test_a_tiny_comparison_writes_the_paired_table_and_runs_again_only_what_is_missing(
        tmp_path, capsys):
    config = write_config(tmp_path, **{"clock.speedup": 500.0,
                                       "vbs.emulator.du": {"n_ues": 3, "seed": 0}})
    out = tmp_path / "compare"
    args = ["compare", str(config), "--agents", *AGENTS, "--rounds", "6", "--out", str(out)]

    assert main([*args, "--seeds", "1"]) == 0
    first = run_dirs(out)
    assert len(first) == 2

    assert main([*args, "--seeds", "2"]) == 0  # seed 0 is kept, seed 1 added
    dirs = run_dirs(out)
    assert len(dirs) == 4 and set(first) <= set(dirs)

    result = json.loads((out / "compare.json").read_text())
    assert result["seeds"] == [0, 1] and result["reference"] == AGENTS[0]
    reward = {(r["agent"], r["seed"]): float(read_rounds(r["run_dir"])["reward"].mean())
              for r in result["runs"]}
    equal = result["agents"][1]
    assert equal["agent"] == AGENTS[1]
    assert equal["paired"]["per_seed"] == pytest.approx(
        [reward[(AGENTS[0], s)] - reward[(AGENTS[1], s)] for s in (0, 1)])
    assert equal["reward"]["mean"] == pytest.approx(np.mean([reward[(AGENTS[1], s)]
                                                             for s in (0, 1)]))
    md = (out / "compare.md").read_text()
    assert f"| {AGENTS[1]} |" in md and "metahrl:batch_size=4 minus it" in md
    assert "metahrl minus it" not in capsys.readouterr().out  # the table is on stderr
    for r in result["runs"]:  # every round caps the users, once their first report placed them
        assert read_rounds(r["run_dir"])["ue_dl_max_prb"].iloc[1:].map(sum).eq(50).all()

    # a run that stopped is continued in its own directory, not started again
    stopped = RunDirectory(dirs[0])
    stopped.update_meta(exit={"status": "interrupted", "reason": "test"})
    assert main([*args, "--seeds", "2"]) == 0
    assert run_dirs(out) == dirs
    assert stopped.read_meta()["exit"]["status"] == "completed"
    assert len(read_rounds(dirs[0])) == 6


def test_another_setup_in_the_same_folder_and_a_wrong_parameter_are_refused_before_any_run(
        tmp_path, capsys):
    config = write_config(tmp_path, **{"vbs.emulator.du": {"n_ues": 3, "seed": 0}})
    out = tmp_path / "compare"
    bad = ["compare", str(config), "--agents", "fixed-slicing:rule=best", "--seeds", "1",
           "--rounds", "5", "--out", str(out)]
    assert main(bad) == 2
    assert "rule 'best' is not one of" in capsys.readouterr().err
    assert not out.exists()
    check_out(Plan(config, specs(["fixed-slicing"]), (0,), 5, out))  # a comparison of 5 rounds
    other = ["compare", str(config), "--agents", "fixed-slicing", "--seeds", "1",
             "--rounds", "7", "--out", str(out)]
    assert main(other) == 2
    assert "choose another --out" in capsys.readouterr().err
    assert not (out / "runs").exists()
