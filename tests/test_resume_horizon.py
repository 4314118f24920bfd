"""`hil run --resume RUN --rounds N` for every agent: the agent keeps the horizon it was
built for, so parameters tuned for it (BSvBS's gamma, MetBS's eta, Exp3-IX's rates) load
as saved and the run goes on to the new total; and whatever stops a resume, `run.json`
ends with a final status and the operator gets one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testbed_yaml import write_config

from agents.registry import AGENTS, make_agent
from hil.recorder import read_rounds
from tools.cli import main

pytestmark = pytest.mark.e2e
SMALL_SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [5, 27], "dl_prb_ratio": [0.2, 1.0],
               "ul_max_mcs": [5, 23], "ul_prb_ratio": [0.2, 1.0]}
FIRST, TOTAL = 40, 70
AGENT_SETUP = {  # a scheduler needs its users
    "metahrl": {"vbs.emulator.du": {"n_ues": 3, "seed": 0}},
    "fixed-slicing": {"vbs.emulator.du": {"n_ues": 3, "seed": 0}},
}


def finished_run(tmp_path: Path, agent: str) -> Path:
    config = write_config(tmp_path, rounds=FIRST, policy_space=SMALL_SPACE,
                          **{"clock.speedup": 500.0, "agent.name": agent,
                             "recording.checkpoint_every": 15, **AGENT_SETUP.get(agent, {})})
    assert main(["run", str(config)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def meta_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_a_run_resumed_with_more_rounds_goes_on_with_the_horizon_it_was_built_for(
        tmp_path, capsys, agent):
    run_dir = finished_run(tmp_path, agent)

    assert main(["run", "--resume", str(run_dir), "--rounds", str(TOTAL)]) == 0

    assert read_rounds(run_dir)["round"].tolist() == list(range(TOTAL))
    meta = meta_of(run_dir)
    assert meta["exit"]["status"] == "completed"
    assert meta["config"]["rounds"] == TOTAL and meta["config"]["agent"]["horizon"] == FIRST
    assert f"agent.horizon {FIRST}" in capsys.readouterr().err


def test_a_later_resume_without_rounds_keeps_the_new_total(tmp_path):
    run_dir = finished_run(tmp_path, "metbs")
    assert main(["run", "--resume", str(run_dir), "--rounds", str(TOTAL)]) == 0

    assert main(["run", "--resume", str(run_dir)]) == 0
    assert len(read_rounds(run_dir)) == TOTAL
    assert meta_of(run_dir)["config"]["agent"]["horizon"] == FIRST


@pytest.mark.parametrize("agent", ["bsvbs", "metbs", "exp3ix"])
def test_horizon_tuned_agents_refuse_a_state_saved_for_another_horizon(agent):
    """Why the horizon is kept: the same agent tuned for another T is another agent."""
    saved = make_agent(agent, 16, seed=0, horizon=FIRST).state_dict()

    make_agent(agent, 16, seed=0, horizon=FIRST).load_state_dict(saved)
    with pytest.raises(ValueError, match="saved with"):
        make_agent(agent, 16, seed=0, horizon=TOTAL).load_state_dict(saved)


def test_a_resume_that_cannot_load_the_agent_fails_in_one_line_and_records_why(
        tmp_path, capsys):
    run_dir = finished_run(tmp_path, "bsvbs")
    meta = meta_of(run_dir)
    meta["config"]["agent"]["gamma"] = 0.5  # edited by hand: not the agent that was saved
    (run_dir / "run.json").write_text(json.dumps(meta))

    assert main(["run", "--resume", str(run_dir), "--rounds", str(TOTAL)]) == 2

    err = capsys.readouterr().err
    assert "the saved agent does not fit this one" in err and "Traceback" not in err
    exit_status = meta_of(run_dir)["exit"]
    assert exit_status["status"] == "failed" and "gamma" in exit_status["reason"]
