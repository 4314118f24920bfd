"""A lab of testbeds (hil/lab.py): `hil run A B` and `hil collect A B` run one process per
testbed, each with its own lock, pass Ctrl-C on once, and print the results side by side;
a sweep holds its testbed for its whole life."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testbed_yaml import write_config

from hil import lock
from hil.config import load_config
from hil.recorder import RunDirectory
from hil.serve import Runs
from tools.cli import main

pytestmark = pytest.mark.e2e
REPO = Path(__file__).parents[1]
GRID_OF_TWO = ["dl_max_mcs=5,27", "dl_prb_ratio=1", "ul_max_mcs=23", "ul_prb_ratio=1",
               "dl_gain_db=0"]


def two_testbeds(tmp_path: Path, sshd=None, **changes) -> list[Path]:
    """Two configs of the shipped testbed, in folders of their own (the same name: the lab
    tells them apart)."""
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(write_config(tmp_path / name, sshd=sshd, **changes))
    return configs


def run_metas(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/run.json"))]


def test_a_lab_runs_each_testbed_in_its_own_process_and_shows_them_side_by_side(
        tmp_path, capsys):
    configs = two_testbeds(tmp_path, **{"clock.speedup": 200.0})
    lab = tmp_path / "lab"
    assert main(["run", *map(str, configs), "--rounds", "15", "--seed", "3",
                 "--out", str(lab)]) == 0
    name = load_config(configs[0]).name
    for testbed in (name, f"{name}-2"):
        (meta,) = run_metas(lab / testbed)
        assert meta["exit"]["status"] == "completed" and meta["seed"] == 3
        assert meta["exit"]["defaults_restored"] == "yes"
        assert "completed" in (lab / f"{testbed}.log").read_text()
    table = capsys.readouterr().err
    assert table.count("completed") == 2 and f"{name}-2" in table
    assert table.count(" 15 ") == 2  # the rows each recorded
    followed = Runs([lab / name, lab / f"{name}-2"]).all()  # what `--serve` shows
    assert len({run.name for run in followed}) == 2
    assert [run.totals.rows for run in followed] == [15, 15]


def test_the_live_view_tells_apart_two_runs_of_one_name_in_two_folders(tmp_path):
    for folder in ("a", "b"):
        RunDirectory.create(tmp_path / folder, "20261207-101010-zmq-emulated-bsvbs").write_meta(
            {"config": {"name": "zmq-emulated"}, "agent": "bsvbs"})
    names = sorted(run.name for run in Runs([tmp_path / "a", tmp_path / "b"]).all())
    assert names == ["20261207-101010-zmq-emulated-bsvbs",
                     "b/20261207-101010-zmq-emulated-bsvbs"]


def test_two_members_of_a_lab_on_one_testbed_the_second_is_refused(tmp_path, sshd, capsys):
    configs = two_testbeds(tmp_path, sshd=sshd, **{"clock.speedup": 100.0})
    lab = tmp_path / "lab"
    assert main(["run", *map(str, configs), "--rounds", "100", "--out", str(lab)]) == 1
    metas = [m for folder in lab.iterdir() if folder.is_dir() for m in run_metas(folder)]
    statuses = sorted(m["exit"]["status"] for m in metas)
    assert statuses == ["completed", "failed"]
    refused = next(m for m in metas if m["exit"]["status"] == "failed")
    assert "is in use by run" in refused["exit"]["reason"]
    assert "failed" in capsys.readouterr().err


def test_ctrl_c_on_a_lab_stops_every_testbed_cleanly_once(tmp_path):
    configs = two_testbeds(tmp_path, **{"clock.speedup": 20.0})
    lab = tmp_path / "lab"
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", *map(str, configs),
                             "--rounds", "5000", "--out", str(lab)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(lab.glob("*/*/rounds.arrow"))) < 2:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    metas = [m for folder in lab.iterdir() if folder.is_dir() for m in run_metas(folder)]
    assert len(metas) == 2
    for meta in metas:  # one signal each: a clean stop after the round in flight
        assert meta["exit"]["status"] == "interrupted", meta["exit"]
        assert meta["exit"]["defaults_restored"] == "yes"


def test_a_lab_collects_one_sweep_per_testbed(tmp_path, capsys):
    configs = two_testbeds(tmp_path, **{"clock.speedup": 200.0})
    lab = tmp_path / "datasets"
    assert main(["collect", *map(str, configs), "--grid", *GRID_OF_TWO,
                 "--dwell-rounds", "2", "--warmup-rounds", "0", "--out", str(lab)]) == 0
    name = load_config(configs[0]).name
    for testbed in (name, f"{name}-2"):
        meta = json.loads((lab / testbed / "run.json").read_text())
        assert (meta["status"], meta["cells_done"]) == ("completed", 2)
        assert (lab / testbed / "dataset_dlul.csv").exists()
    assert capsys.readouterr().err.count("completed") == 2


def test_a_sweep_holds_its_testbed_from_the_first_block_and_is_refused_when_it_is_taken(
        tmp_path, sshd, capsys):
    config = write_config(tmp_path, sshd=sshd, **{"clock.speedup": 100.0})
    holder = lock.testbed_lock(load_config(config), "another run")
    assert holder is not None
    with holder:
        assert main(["collect", str(config), "--grid", *GRID_OF_TWO, "--dwell-rounds", "2",
                     "--out", str(tmp_path / "sweep")]) == 1
    assert "is in use by run another run" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "sweep" / "blocks").exists()  # no block started
