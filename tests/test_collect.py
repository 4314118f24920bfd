"""`hil collect`: a policy grid x conditions, each cell held, averaged, recorded, resumable.

What a lab relies on: every cell of the plan is measured exactly once however often the
sweep is stopped; the warm-up is discarded; a failed cell says why; the order is random but
reproducible; the dataset carries its units and exports to the public dataset's layout.
"""

from __future__ import annotations

import configparser
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from testbed_yaml import REPO, write_config

import hil.testbeds.emulated
from agents.policy_space import PAPER_SPACE, PolicySpace
from drivers.rtctl.client import RtctlClient
from drivers.srsran.conf import render_program
from hil.base.errors import VbsUnreachableError
from hil.base.scenarios import make_scenario
from hil.config import load_config
from hil.recorder import RunDirectory, read_rounds
from hil.testbeds.srsran_processes import template_values
from tools.cli import main
from tools.collect.export import to_dlul
from tools.collect.plan import Condition, PlanError, SweepPlan, parse_grid
from tools.collect.reading import read_sweep
from tools.collect.schema import CELL_SCHEMA
from tools.collect.sweep import block_config, check_testbed, summarise_cell, sweep_clock
from tools.replay.dataset import load_dlul

SMALL = PolicySpace((0.0,), (5, 27), (0.2, 1.0), (5, 23), (1.0,))
GRID = ["dl_max_mcs=5,27", "dl_prb_ratio=0.2,1", "ul_max_mcs=5,23", "ul_prb_ratio=1",
        "dl_cqi=15,7"]


# ----------------------------------------------------------------------------- the plan
def test_grid_axes_replace_the_configs_values_and_conditions_multiply():
    space, conditions = parse_grid(GRID + ["dl_load_mbps=8,32"], PAPER_SPACE, channel="cqi")
    assert space == PolicySpace((0.0,), (5, 27), (0.2, 1.0), (5, 23), (1.0,))
    assert len(conditions) == 4
    assert Condition(8.0, 23.0, 7.0, 15.0) in conditions


def test_no_grid_is_the_configs_space_under_scenario_a_and_paper_is_the_1080():
    space, conditions = parse_grid([], SMALL, channel="cqi")
    assert space == SMALL and conditions == (Condition(32.0, 23.0, 15.0, 15.0),)
    assert parse_grid(["paper"], SMALL, channel="cqi")[0].size == 1080


@pytest.mark.parametrize("item, message", [
    ("dl_mcs=5", "unknown axis 'dl_mcs'"),
    ("dl_max_mcs=5,x", "numbers separated by commas"),
    ("dl_max_mcs=29", "dl_max_mcs: must be in 0..28"),
    ("dl_prb_ratio", "write axis=v1,v2"),
    ("dl_cqi=16", "a CQI is at most 15"),
    ("dl_load_mbps=-1", "finite and >= 0"),
    ("ul_load_mbps=5,5", "unique"),
])
def test_a_bad_grid_item_is_refused_naming_it(item, message):
    with pytest.raises(PlanError, match=message):
        parse_grid([item], SMALL, channel="cqi")


def test_srsran_sets_its_channel_by_snr_refuses_cqi_and_otherwise_leaves_it_alone():
    with pytest.raises(PlanError, match="sets its channel by dl_snr_db and ul_snr_db"):
        parse_grid(["ul_cqi=9"], SMALL, channel="snr")
    _, (condition,) = parse_grid([], SMALL, channel="snr")
    assert condition.dl_cqi is None and condition.ul_cqi is None
    assert condition.dl_snr_db is None and condition.ul_snr_db is None
    _, conditions = parse_grid(["dl_snr_db=5,25", "ul_snr_db=-12"], SMALL, channel="snr")
    assert [(c.dl_snr_db, c.ul_snr_db) for c in conditions] == [(5, -12), (25, -12)]


def test_conditions_that_go_together_are_given_one_by_one():
    rows = ["dl_load_mbps=31,ul_load_mbps=22,dl_snr_db=30,ul_snr_db=-47",
            "dl_load_mbps=0.5,ul_load_mbps=0.5,dl_snr_db=2,ul_snr_db=-74"]
    _, conditions = parse_grid([], SMALL, channel="snr", rows=rows)
    assert conditions == (Condition(31, 22, None, None, 30, -47),
                          Condition(0.5, 0.5, None, None, 2, -74))
    _, (only,) = parse_grid([], SMALL, channel="cqi", rows=["dl_cqi=7"])
    assert only == Condition(32, 23, 7, 15)  # the rest from the default condition
    with pytest.raises(PlanError, match="not both"):
        parse_grid(["dl_load_mbps=8"], SMALL, channel="snr", rows=rows)
    with pytest.raises(PlanError, match="sets its channel by dl_cqi"):
        parse_grid([], SMALL, channel="cqi", rows=rows)
    with pytest.raises(PlanError, match="given twice"):
        parse_grid([], SMALL, channel="snr", rows=rows[:1] * 2)
    with pytest.raises(PlanError, match="write axis=value"):
        parse_grid([], SMALL, channel="snr", rows=["dl_load=5"])


def test_the_emulated_vbs_sets_its_channel_by_cqi_and_refuses_snr():
    with pytest.raises(PlanError, match="sets its channel by dl_cqi and ul_cqi"):
        parse_grid(["dl_snr_db=10"], SMALL, channel="cqi")


def make_plan(**changes) -> SweepPlan:
    params = dict(space=SMALL, conditions=(Condition(32, 23, 15, 15), Condition(8, 5, 7, 7)),
                  reps=2, dwell_rounds=3, warmup_rounds=1, seed=0) | changes
    return SweepPlan(**params)


def test_the_order_measures_every_cell_once_in_blocks_and_depends_only_on_the_seed():
    plan = make_plan()
    blocks = plan.blocks()
    cells = [c for block in blocks for c in block]
    assert len(cells) == plan.n_cells == 8 * 2 * 2
    assert len({c.cell_id for c in cells}) == plan.n_cells
    assert [c.order for c in cells] == list(range(plan.n_cells))
    assert all(len({c.condition for c in block}) == 1 for block in blocks)
    assert [c.cell_id for c in cells] == [c.cell_id for b in make_plan().blocks() for c in b]
    other = [c.cell_id for b in make_plan(seed=1).blocks() for c in b]
    assert other != [c.cell_id for c in cells] and sorted(other) == sorted(c.cell_id for c in cells)
    in_order = [(c.policy_index, c.rep) for c in blocks[0]]
    assert in_order != sorted(in_order)  # randomised within the block too


def test_a_plan_survives_its_json_form():
    plan = make_plan()
    assert SweepPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@pytest.mark.parametrize("changes, message", [({"reps": 0}, "--reps"),
                                              ({"dwell_rounds": 0}, "--dwell-rounds"),
                                              ({"warmup_rounds": -1}, "--warmup-rounds")])
def test_impossible_sweep_options_are_refused(changes, message):
    with pytest.raises(PlanError, match=message):
        make_plan(**changes)


# ----------------------------------------------------------------------------- one cell
def round_row(k: int, power_w: float, valid: bool = True, reason: str | None = None) -> dict:
    return {"round": k, "time_utc": datetime(2026, 1, 1, tzinfo=UTC), "valid": valid,
            "invalid_reason": reason, "power_w": power_w if valid else None,
            "dl_rate_mbps": 10.0 + k, "applied_dl_max_mcs": 27, "testbed_restarts": 0,
            "violations": 0}


def test_a_cell_averages_its_dwell_rounds_and_discards_the_warm_up():
    plan = make_plan(warmup_rounds=2, dwell_rounds=3)
    cell = plan.blocks()[0][0]
    rows = [round_row(k, p) for k, p in enumerate([99.0, 99.0, 10.0, 11.0, 12.0])]
    row = summarise_cell(cell, plan, rows, block="condition-0", round_s=1.0)
    assert row["power_w"] == pytest.approx(11.0)
    assert row["power_w_var"] == pytest.approx(1.0)  # sample variance of 10, 11, 12
    assert row["dl_rate_mbps"] == pytest.approx(13.0)
    assert row["n_samples"] == 3 and not row["failed"] and row["failed_reason"] is None
    assert row["applied_dl_max_mcs"] == 27 and row["first_round"] == 0
    assert row["rapl_power_w"] is None  # a host without RAPL: null, not 0


def test_a_cell_with_an_invalid_dwell_round_is_failed_with_that_rounds_reason():
    plan = make_plan(warmup_rounds=1, dwell_rounds=3)
    rows = [round_row(0, 9.0, False, "apply: timeout"), round_row(1, 10.0),
            round_row(2, 0.0, False, "measure: no valid reading"), round_row(3, 12.0)]
    row = summarise_cell(plan.blocks()[0][0], plan, rows, block="b", round_s=1.0)
    assert row["failed"] and row["failed_reason"] == "round 2: measure: no valid reading"
    assert row["n_samples"] == 2 and row["power_w"] == pytest.approx(11.0)


def test_the_cell_schema_puts_a_unit_on_every_measured_column():
    units = {f.name: f.metadata[b"unit"].decode() for f in CELL_SCHEMA}
    assert units["power_w"] == "W" and units["power_w_var"] == "W^2"
    assert units["dl_rate_mbps_var"] == "(Mb/s)^2" and units["cond_dl_load_mbps"] == "Mb/s"
    assert all(f.metadata.get(b"doc") for f in CELL_SCHEMA)


# ----------------------------------------------------------------------------- end to end
def sweep_cells(out: Path) -> pd.DataFrame:
    return pq.read_table(out / "cells.parquet").to_pandas()


def collect(config: Path, out: Path, *extra: str) -> int:
    return main(["collect", str(config), "--grid", *GRID, "--dwell-rounds", "2",
                 "--warmup-rounds", "1", "--out", str(out), *extra])


@pytest.fixture
def collected(tmp_path: Path) -> tuple[Path, Path]:
    """(config, sweep folder) of a finished small sweep on the local emulated testbed."""
    config = write_config(tmp_path, **{"clock.speedup": 200.0})
    out = tmp_path / "sweep"
    assert collect(config, out) == 0
    return config, out


@pytest.mark.e2e
def test_a_sweep_records_every_cell_with_units_and_a_dataset_the_replays_read(tmp_path,
                                                                              collected):
    config, out = collected
    cells = sweep_cells(out)
    assert len(cells) == 8 * 2 and cells["cell_id"].is_unique and not cells["failed"].any()
    assert (cells["n_samples"] == 2).all()
    assert pq.read_schema(out / "cells.parquet").field("power_w").metadata[b"unit"] == b"W"
    # What the vBS confirmed is what was asked, and the caps show in what it did.
    for key in ("dl_max_mcs", "dl_prb_ratio", "ul_max_mcs", "ul_prb_ratio"):
        assert (cells[f"applied_{key}"] == cells[f"policy_{key}"]).all()
    assert (cells["dl_mcs"] <= cells["policy_dl_max_mcs"] + 1e-9).all()
    assert (cells["dl_prb"] <= cells["policy_dl_prb_ratio"] * 50 + 1e-9).all()
    # The channel condition is the channel the vBS saw.
    by_cqi = cells.groupby("cond_dl_cqi")["dl_cqi"].mean()
    assert by_cqi[7.0] == pytest.approx(6.5, abs=1.0) and by_cqi[15.0] > 13.5
    # A better channel carries more at the same caps.
    top = cells[(cells["policy_dl_max_mcs"] == 27) & (cells["policy_dl_prb_ratio"] == 1.0)]
    assert top.groupby("cond_dl_cqi")["dl_rate_mbps"].mean().is_monotonic_increasing
    data = load_dlul(out / "dataset_dlul.csv", PAPER_SPACE)
    assert len(data.rows) == 16 and data.dropped_failed == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "completed" and meta["cells_done"] == 16
    for block in (out / "blocks").iterdir():
        block_meta = json.loads((block / "run.json").read_text())
        assert block_meta["exit"]["defaults_restored"] == "yes"
    # An agent replays on the collected dataset.
    assert main(["replay", str(config), "--dataset", str(out / "dataset_dlul.csv"),
                 "--scenario", "A", "--agents", "bsvbs,random", "--seeds", "1",
                 "--rounds", "300", "--executor", "local:1",
                 "--out", str(tmp_path / "replay")]) == 0
    assert (tmp_path / "replay" / "report.md").exists()


@pytest.mark.e2e
def test_a_cell_that_failed_is_measured_again_at_the_end_and_its_last_attempt_counts(
        tmp_path, monkeypatch):
    """The vBS does not answer one `get` (a dwell round of the first block's second cell):
    that cell fails, and the retry block at the sweep's end measures it again."""
    gets = [0]

    class OneLostGet(RtctlClient):
        def get(self):  # type: ignore[override]
            gets[0] += 1
            if gets[0] == 6:  # the first `get` discards a window; 3 rounds per cell
                raise VbsUnreachableError("no reply (injected)")
            return super().get()

    monkeypatch.setattr(hil.testbeds.emulated, "RtctlClient", OneLostGet)
    config = write_config(tmp_path, **{"clock.speedup": 200.0})
    out = tmp_path / "sweep"
    assert collect(config, out) == 0

    recorded = sweep_cells(out)  # every attempt, as measured
    assert len(recorded) == 17 and recorded["failed"].sum() == 1
    (again,) = recorded.loc[recorded["failed"], "cell_id"]
    assert recorded.loc[recorded["cell_id"] == again, "attempt"].tolist() == [1, 2]
    cells = read_sweep(out).cells  # one row per cell: its last attempt
    assert len(cells) == 16 and not cells["failed"].any()
    assert len(load_dlul(out / "dataset_dlul.csv", PAPER_SPACE).rows) == 16
    assert json.loads((out / "run.json").read_text())["cells_failed"] == 0
    assert len(list((out / "blocks").iterdir())) == 3  # two conditions, one retry block


@pytest.mark.e2e
def test_a_block_warm_up_is_played_and_discarded_before_the_first_cell(tmp_path):
    config = write_config(tmp_path, **{"clock.speedup": 200.0})
    out = tmp_path / "sweep"
    assert collect(config, out, "--block-warmup-rounds", "4") == 0
    cells = sweep_cells(out)
    assert len(cells) == 16 and not cells["failed"].any()
    for block, group in cells.groupby("block"):
        rounds = read_rounds(out / "blocks" / block)
        assert len(rounds) == 4 + len(group) * 3  # 1 warm-up + 2 dwell per cell
        first = group.sort_values("first_round").iloc[0]
        assert first["first_round"] == 4
        assert (rounds["policy_index"].iloc[:4] == rounds["policy_index"].iloc[4]).all()


@pytest.mark.e2e
def test_the_same_command_with_other_options_is_refused_naming_the_folder(collected, capsys):
    config, out = collected
    assert collect(config, out, "--seed", "5") == 2
    error = capsys.readouterr().err
    assert "run.json" in error and "another plan" in error and "seed" in error


@pytest.mark.e2e
def test_the_same_command_after_a_finished_sweep_measures_nothing(collected):
    config, out = collected
    first = sweep_cells(out)
    assert collect(config, out) == 0
    pd.testing.assert_frame_equal(sweep_cells(out), first)
    assert len(list((out / "blocks").iterdir())) == 2


def collect_process(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "collect", str(config), "--grid", *GRID,
         "dl_load_mbps=10,32", "--dwell-rounds", "3", "--warmup-rounds", "1", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_cells(out: Path, n: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    sweep = RunDirectory(out, table="cells")
    while time.monotonic() < deadline:
        if sweep.journal_path.exists() and (done := sweep.read_rounds(CELL_SCHEMA).num_rows) >= n:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} cells recorded within {timeout_s} s")


@pytest.mark.e2e
def test_a_sweep_killed_half_way_resumes_without_duplicate_or_missing_cells(tmp_path, sshd):
    """The shipped testbed (emulator over SSH, GPM-8213 twin over pyvisa): SIGKILL in the
    middle of the second block, then the same command again."""
    config = write_config(tmp_path, sshd=sshd, **{"clock.speedup": 100.0})
    out = tmp_path / "sweep"
    proc = collect_process(config, out)
    n_cells = 8 * 4
    killed_at = wait_for_cells(out, n_cells // 2 + 3)
    proc.kill()
    proc.wait(timeout=10)
    assert killed_at < n_cells
    done = collect_process(config, out)
    output, _ = done.communicate(timeout=180)
    assert done.returncode == 0, output
    assert "already measured" in output
    cells = sweep_cells(out)
    plan = SweepPlan.from_dict(json.loads((out / "run.json").read_text())["plan"])
    planned = [c.cell_id for block in plan.blocks() for c in block]
    assert sorted(cells["cell_id"]) == sorted(planned)  # none missing, none twice
    assert cells.sort_values("order")["cell_id"].tolist() == planned  # in the plan's order
    assert (cells["n_samples"] == 3).sum() >= n_cells - 2  # the meter may miss a window
    # The cut-short cell was measured again from its warm-up in a new block run.
    blocks = sorted(p.name for p in (out / "blocks").iterdir())
    assert len(blocks) == 4 + 1 and sum(name.count("-") == 2 for name in blocks) == 1


@pytest.mark.e2e
def test_ctrl_c_stops_after_the_round_in_flight_keeps_finished_cells_and_restores_defaults(
        tmp_path):
    config = write_config(tmp_path, **{"clock.speedup": 50.0})
    out = tmp_path / "sweep"
    proc = collect_process(config, out)
    wait_for_cells(out, 3)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "run the same command again" in output
    cells = sweep_cells(out)  # the journal became cells.parquet
    assert 3 <= len(cells) < 32 and cells["cell_id"].is_unique
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["cells_done"] == len(cells)
    (block,) = (out / "blocks").iterdir()
    block_meta = json.loads((block / "run.json").read_text())
    assert block_meta["exit"]["defaults_restored"] == "yes"
    assert np.isfinite(to_dlul(cells)["pm_power"]).all()


# ----------------------------------------------------------------------------- testbeds
def test_a_condition_reaches_the_emulator_as_its_scenario_and_srsran_as_iperf3_rates(tmp_path):
    condition = Condition(8.0, 5.0, 7.0, 9.0)
    emulated = block_config(load_config(write_config(tmp_path)), condition,
                            tmp_path / "a.csv", SMALL, rounds=12)
    scenario = emulated.vbs.emulator.scenario
    assert scenario.name == "trace" and emulated.policy_space == SMALL and emulated.rounds == 12
    env = make_scenario("trace", 0, trace_path=scenario.trace).epochs(0, 3)
    assert env.dl_demand_mbps.tolist() == [8.0] * 3 and env.ul_cqi.tolist() == [9.0] * 3

    srsran = load_config(REPO / "testbed_configs" / "zmq-srsran.yaml")
    check_testbed(srsran)
    block = block_config(srsran, Condition(8.0, 5.0, None, None), tmp_path / "b.csv", SMALL,
                         rounds=12)
    env = make_scenario("trace", 0, trace_path=block.traffic.scenario.trace).epochs(0, 1)
    assert (env.dl_demand_mbps[0], env.ul_demand_mbps[0]) == (8.0, 5.0)
    assert block.vbs.srsran == srsran.vbs.srsran  # no SNR given: the config's channel


def test_a_condition_s_snrs_reach_srsran_s_channel_emulators(tmp_path):
    srsran = load_config(REPO / "testbed_configs" / "zmq-srsran.yaml")
    block = block_config(srsran, Condition(8.0, 5.0, None, None, dl_snr_db=9.0,
                                           ul_snr_db=-20.0), tmp_path / "b.csv", SMALL, rounds=4)
    enb = configparser.ConfigParser(interpolation=None)
    enb.read_string(render_program(block.vbs.srsran.templates, "enb",
                                   template_values(block, "enb", "/x", "/home/lab"))["enb.conf"])
    assert (enb["channel.dl"]["enable"], enb["channel.dl.awgn"]["snr"]) == ("true", "9.0")
    assert (enb["channel.ul"]["enable"], enb["channel.ul.awgn"]["snr"]) == ("true", "-20.0")


def test_a_sweep_steps_an_accelerated_emulator_and_leaves_other_clocks_alone():
    """Accelerated, the meter's and rtctl's windows lie `speedup` times their wall skew apart
    in TTIs (tools/collect/sweep.py, `sweep_clock`): a sweep of the emulated vBS steps it
    and reads its own meter, the GPM-8213 twin's included; real hardware is untouched."""
    shipped = load_config(REPO / "testbed_configs" / "zmq-emulated.yaml")
    assert (shipped.clock.mode, shipped.meter.kind, shipped.meter.resource) == (
        "accelerated", "gpm8213", None)
    stepped = sweep_clock(shipped)
    assert (stepped.clock.mode, stepped.clock.speedup, stepped.meter.kind) == (
        "stepped", 1.0, "emulated")
    for path in ("zmq-srsran.yaml", "b210-lab.yaml"):
        cfg = load_config(REPO / "testbed_configs" / path)
        assert sweep_clock(cfg) is cfg
    realtime = load_config(REPO / "testbed_configs" / "zmq-emulated.yaml",
                           {"clock.mode": "realtime", "clock.speedup": 1.0})
    assert sweep_clock(realtime) is realtime


def test_a_testbed_whose_conditions_a_sweep_cannot_set_is_refused_naming_the_key(tmp_path):
    srsran = load_config(REPO / "testbed_configs" / "zmq-srsran.yaml", {"traffic.kind": "none"})
    with pytest.raises(PlanError, match="traffic.kind"):
        check_testbed(srsran)
    sliced = load_config(REPO / "testbed_configs" / "zmq-emulated-slices.yaml")
    with pytest.raises(PlanError, match="vbs.emulator.du"):
        check_testbed(sliced)
