"""Running a sweep: each block of cells is a run of the round engine, summarised per cell.

A sweep folder is a `RunDirectory` whose table is ``cells``:

    run.json            the plan, the config, and how the sweep stands (status, cells done)
    provenance.json     what was measured, where and how (`provenance.py`)
    cells.arrow         the journal while a sweep is live: one row per finished cell, on disk
                        as soon as the cell's last round is; `cells.parquet` when it stops
    dataset_dlul.csv    the cells in the public dataset's column layout (`export.py`)
    blocks/condition-<i>[-n]/   each block's run: its rounds (every round, warm-up included),
                        its condition trace, the emulator log

Each block runs through `hil.run.execute`, so a sweep gets everything a run has: rounds
on a deadline, thresholds checked as applied, invalid rounds recorded with their reason, a
crashed emulator restarted, and the default thresholds restored on every exit. A
`ScheduleAgent` plays the block's cells in plan order; it learns nothing.

Resuming is running the same command again: the plan is rebuilt from the same options,
checked against the one in run.json, and the cells already in the table are skipped. A cell
whose rounds were cut short (Ctrl-C, SIGKILL, a testbed that gave up) is measured again
from its warm-up, so no cell is missing, none is recorded twice, and none mixes two runs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Context, Decision
from agents.policy_space import PolicySpace
from hil.base.errors import HilError
from hil.base.thresholds import POLICY_FIELDS
from hil.config import ClockConfig, HilConfig, ScenarioConfig
from hil.engine import round_demand
from hil.journal import RoundRecorder
from hil.lock import testbed_lock
from hil.recorder import RunDirectory
from hil.run import execute
from hil.testbeds import kind_of
from tools.collect.drift import Drift, reference_drift
from tools.collect.export import write_dlul_csv
from tools.collect.plan import Cell, Condition, PlanError, SweepPlan
from tools.collect.provenance import write_provenance
from tools.collect.schema import CELL_SCHEMA, MEASURED_MEANS, MEASURED_VARS, last_attempts

CellCallback = Callable[[dict[str, Any]], None]
DLUL_NAME = "dataset_dlul.csv"


class SweepError(HilError):
    """A sweep folder that does not fit the command, or a block that could not run."""


@dataclass(frozen=True)
class SweepResult:
    path: Path
    status: str  # "completed" | "interrupted" | "failed"
    reason: str
    cells_done: int
    cells_total: int
    cells_failed: int
    drift: Drift | None = None  # from the reference cells, if the plan has them


class ScheduleAgent:
    """Plays `actions[i]` for one round each of the first `lead_rounds`, then for rounds
    of `rounds_per_cell` each; learns nothing (an `Agent`)."""

    def __init__(self, n_actions: int, actions: list[int], rounds_per_cell: int,
                 lead_rounds: int = 0) -> None:
        self.n_actions, self.actions, self.rounds_per_cell = n_actions, actions, rounds_per_cell
        self.lead_rounds = lead_rounds
        self.round = 0

    def _action(self) -> int:
        if self.round < self.lead_rounds:
            return self.actions[self.round]
        step = self.lead_rounds + (self.round - self.lead_rounds) // self.rounds_per_cell
        return self.actions[min(step, len(self.actions) - 1)]

    def select(self, context: Context | None = None) -> Decision:
        action = self._action()
        self.round += 1
        return Decision(action, 1.0)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """A sweep measures; it does not learn."""

    def probabilities(self) -> np.ndarray:
        p = np.zeros(self.n_actions)
        p[self._action()] = 1.0
        return p

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = state["round"]


# ----------------------------------------------------------------------------- one cell
def summarise_cell(cell: Cell, plan: SweepPlan, rows: list[dict[str, Any]], *, block: str,
                   round_s: float, attempt: int = 1) -> dict[str, Any]:
    """The cell's row from its rounds (warm-up first): means and variances over the valid
    dwell rounds; failed, with the first reason, if any dwell round was invalid."""
    condition = plan.conditions[cell.condition]
    dwell = rows[plan.warmup_rounds:]
    valid = [r for r in dwell if r["valid"]]
    invalid = [r for r in dwell if not r["valid"]]
    policy = plan.space.policy(cell.policy_index)
    row: dict[str, Any] = {
        "cell_id": cell.cell_id, "order": cell.order, "condition": cell.condition,
        "policy_index": cell.policy_index, "rep": cell.rep,
        "reference_block": cell.reference_block,
        **{f"policy_{k}": v for k, v in zip(POLICY_FIELDS, policy)},
        **{f"applied_{k}": valid[-1].get(f"applied_{k}") if valid else None
           for k in POLICY_FIELDS},
        "cond_dl_load_mbps": condition.dl_load_mbps, "cond_ul_load_mbps": condition.ul_load_mbps,
        "cond_dl_cqi": condition.dl_cqi, "cond_ul_cqi": condition.ul_cqi,
        "cond_dl_snr_db": condition.dl_snr_db, "cond_ul_snr_db": condition.ul_snr_db,
        "warmup_rounds": plan.warmup_rounds, "dwell_rounds": plan.dwell_rounds,
        "round_s": round_s, "n_samples": len(valid),
        "violations": sum(r.get("violations") or 0 for r in valid),
        "testbed_restarts": _restarts_during(rows),
        "failed": bool(invalid), "attempt": attempt,
        "failed_reason": (f"round {invalid[0]['round']}: {invalid[0]['invalid_reason']}"
                          if invalid else None),
        "block": block, "first_round": rows[0]["round"], "time_utc": rows[0]["time_utc"],
        "dwell_mid_utc": _middle([r["time_utc"] for r in dwell]),
    }
    for name in MEASURED_MEANS:
        values = _values(valid, name)
        row[name] = float(np.mean(values)) if values.size else None
    for name in MEASURED_VARS:
        values = _values(valid, name)
        row[f"{name}_var"] = float(np.var(values, ddof=1)) if values.size >= 2 else None
    return row


def _middle(starts: list[datetime]) -> datetime | None:
    """The middle of rounds that started at `starts` (one round apart): their mean start,
    plus half a round."""
    if not starts:
        return None
    step = (starts[-1] - starts[0]) / (len(starts) - 1) if len(starts) > 1 else timedelta(0)
    return starts[0] + (starts[-1] - starts[0]) / 2 + step / 2


def _values(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    values = [r.get(name) for r in rows]
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _restarts_during(rows: list[dict[str, Any]]) -> int:
    counts = [r.get("testbed_restarts") for r in rows if r.get("testbed_restarts") is not None]
    return counts[-1] - counts[0] if len(counts) >= 2 else 0


def sweep_clock(cfg: HilConfig) -> HilConfig:
    """`cfg` with a steppable testbed's accelerated clock stepped, and its meter the
    emulator's own, for a sweep; any other config as it is.

    Accelerated, the emulated vBS runs `speedup` times faster than wall time, so the wall
    milliseconds between the meter's window and rtctl's KPI window become `speedup` times as
    many TTIs: while a cell's queue still drains after the last one, its watts and its KPIs
    describe different TTIs. On the 324-cell grid (docs/researcher.md) at speedup 200 that
    put two or three UL MCS coefficients 0.3-1 % off, outside their 95 % intervals; stepped, both
    windows are the round's TTIs exactly, every interval held the truth, and the sweep took
    8.3 s instead of 14.6 s. A GPM-8213 twin (no `meter.resource`) reads the same model
    energy over SCPI, on the wall clock, so the sweep reads the emulator's meter instead.
    """
    twin = cfg.meter.kind == "gpm8213" and not cfg.meter.resource
    if not (cfg.vbs.steps_clock and cfg.clock.mode == "accelerated"
            and (cfg.meter.kind == "emulated" or twin)):
        return cfg
    return cfg.model_copy(update={"clock": ClockConfig(mode="stepped"),
                                  "meter": cfg.meter.model_copy(update={"kind": "emulated"})})


# ----------------------------------------------------------------------------- one block
def block_config(cfg: HilConfig, condition: Condition, trace: Path, space: PolicySpace,
                 rounds: int) -> HilConfig:
    """`cfg` for one block: the plan's grid as policy space, the condition as a one-row trace
    (the emulated vBS draws its demand and channel from it, iperf3 its rates), and on srsRAN
    the condition's SNRs as its channel emulators' noise."""
    with trace.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dl_demand_mbps", "ul_demand_mbps", "dl_cqi", "ul_cqi"])
        # The iperf3 traffic reads only the loads; a channel left to the testbed is unused.
        writer.writerow([condition.dl_load_mbps, condition.ul_load_mbps,
                         15.0 if condition.dl_cqi is None else condition.dl_cqi,
                         15.0 if condition.ul_cqi is None else condition.ul_cqi])
    scenario = ScenarioConfig(name="trace", trace=trace.resolve())
    update: dict[str, Any] = {"policy_space": space, "rounds": rounds}
    update |= kind_of(cfg).conditioned(cfg, scenario, condition.dl_snr_db,
                                            condition.ul_snr_db)
    return cfg.model_copy(update=update)


def check_testbed(cfg: HilConfig) -> None:
    """Refuse a testbed whose conditions a sweep cannot set, naming the config key."""
    if problem := kind_of(cfg).sweep_problem(cfg):
        raise PlanError(problem)


# ----------------------------------------------------------------------------- the sweep
def open_sweep(path: Path, cfg: HilConfig, config_path: Path, plan: SweepPlan) -> tuple[
        RunDirectory, set[str]]:
    """Create the sweep folder, or reopen it if it holds the same plan; the finished cells."""
    sweep = RunDirectory(path, table="cells")
    if sweep.meta_path.exists():
        recorded = sweep.read_meta().get("plan")
        if recorded != plan.to_dict():
            raise SweepError(
                f"{sweep.meta_path} holds a sweep with another plan "
                f"({_plan_difference(recorded, plan)}); rerun with the options it was started "
                "with, or choose a new --out")
        done = set(sweep.read_rounds(CELL_SCHEMA).column("cell_id").to_pylist())
        return sweep, done
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"cannot create the sweep folder {path}: {exc.strerror or exc}") from exc
    sweep.write_meta({"kind": "vbs-hil sweep", "config_path": str(config_path),
                      "config": cfg.model_dump(mode="json"), "plan": plan.to_dict(),
                      "calibration": (str(calibration.resolve()) if (
                          calibration := kind_of(cfg).model_calibration(cfg)) else None),
                      "cells_total": plan.n_cells, "start_utc": _now(), "status": "running"})
    write_provenance(path, cfg, plan)
    return sweep, set()


def _plan_difference(recorded: Any, plan: SweepPlan) -> str:
    if not isinstance(recorded, dict):
        return "no plan recorded"
    new = plan.to_dict()
    keys = [k for k in new if recorded.get(k) != new[k]]
    return "differs in " + ", ".join(keys)


def run_sweep(cfg: HilConfig, plan: SweepPlan, sweep: RunDirectory, done: set[str], *,
              on_cell: CellCallback | None = None, retries: int = 1) -> SweepResult:
    """Measure every cell not in `done`, block by block, then each failed cell again, up to
    `retries` more times; always closes the table and writes the CSV export, also when
    interrupted or failed."""
    if retries < 0:
        raise PlanError(f"--retries must be 0 or more, got {retries}")
    check_testbed(cfg)
    recorder = (RoundRecorder.resume(sweep, CELL_SCHEMA) if sweep.journal_path.exists()
                or sweep.parquet_path.exists() else RoundRecorder(sweep, CELL_SCHEMA))
    status, reason = "completed", f"measured all {plan.n_cells} cells"
    try:
        with ExitStack() as held:
            try:  # the testbed is the sweep's from its first block to its last
                if (lock := testbed_lock(cfg, str(sweep.path))) is not None:
                    held.enter_context(lock)
            except HilError as exc:  # held by another run, or its host unreachable
                status, reason = "failed", str(exc)
            else:
                status, reason = _run_blocks(cfg, plan, sweep, recorder, done, on_cell,
                                             (status, reason))
                if status == "completed":
                    status, reason = _retry_failed(cfg, plan, sweep, recorder, done, on_cell,
                                                   retries, (status, reason))
    finally:
        recorder.close()
        table = last_attempts(sweep.read_rounds(CELL_SCHEMA))
        write_dlul_csv(table.to_pandas(), sweep.path / DLUL_NAME)
        failed = sum(table.column("failed").to_pylist())
        drift = reference_drift(table.to_pandas())
        sweep.update_meta(status=status if len(done) < plan.n_cells else "completed",
                          reason=reason, cells_done=len(done), cells_failed=failed,
                          drift=None if drift is None else asdict(drift), stop_utc=_now())
    return SweepResult(sweep.path, status, reason, len(done), plan.n_cells, failed, drift)


def _run_blocks(cfg: HilConfig, plan: SweepPlan, sweep: RunDirectory, recorder: RoundRecorder,
                done: set[str], on_cell: CellCallback | None,
                completed: tuple[str, str]) -> tuple[str, str]:
    """The blocks with cells to measure, in plan order, until one does not complete."""
    for cells in plan.blocks():
        todo = [c for c in cells if c.cell_id not in done]
        if todo and (outcome := _run_block(cfg, plan, sweep, todo, recorder, done,
                                           on_cell))[0] != "completed":
            return outcome
    return completed


def _retry_failed(cfg: HilConfig, plan: SweepPlan, sweep: RunDirectory,
                  recorder: RoundRecorder, done: set[str], on_cell: CellCallback | None,
                  retries: int, completed: tuple[str, str]) -> tuple[str, str]:
    """Measure the cells whose last attempt failed again, one block per condition (in plan
    order), while they have attempts left: `retries` beyond the first."""
    for _ in range(retries):
        again = [r for r in last_attempts(sweep.read_rounds(CELL_SCHEMA)).to_pylist()
                 if r["failed"] and (r["attempt"] or 1) <= retries]
        if not again:
            break
        attempts = {r["cell_id"]: (r["attempt"] or 1) + 1 for r in again}
        blocks: dict[int, list[Cell]] = {}
        for r in sorted(again, key=lambda r: r["order"]):
            blocks.setdefault(r["condition"], []).append(_cell_of(r))
        for cells in blocks.values():
            outcome = _run_block(cfg, plan, sweep, cells, recorder, done, on_cell, attempts)
            if outcome[0] != "completed":
                return outcome
    return completed


def _run_block(cfg: HilConfig, plan: SweepPlan, sweep: RunDirectory, cells: list[Cell],
               recorder: RoundRecorder, done: set[str], on_cell: CellCallback | None,
               attempts: dict[str, int] | None = None) -> tuple[str, str]:
    condition = plan.conditions[cells[0].condition]
    run_dir = RunDirectory.create(sweep.path / "blocks", f"condition-{cells[0].condition}")
    rpc, settle = plan.rounds_per_cell, plan.block_warmup_rounds
    block_cfg = block_config(cfg, condition, run_dir.path / "condition.csv", plan.space,
                             settle + len(cells) * rpc)
    run_dir.write_meta({"kind": "vbs-hil sweep block", "condition": condition.__dict__,
                        "cells": [c.cell_id for c in cells], "block_warmup_rounds": settle,
                        "config": block_cfg.model_dump(mode="json"), "start_utc": _now()})
    rows: list[dict[str, Any]] = []

    def on_round(row: dict[str, Any]) -> None:
        if row["round"] < settle:  # the testbed settles under the first cell's policy
            return
        rows.append(row)
        if len(rows) < rpc:
            return
        cell = cells[(row["round"] - settle) // rpc]
        cell_row = summarise_cell(cell, plan, rows, block=run_dir.path.name,
                                  round_s=block_cfg.round_s,
                                  attempt=(attempts or {}).get(cell.cell_id, 1))
        recorder.append(cell_row)
        done.add(cell.cell_id)
        rows.clear()
        if on_cell:
            on_cell(cell_row)

    policies = [c.policy_index for c in cells]
    agent = ScheduleAgent(plan.space.size, [policies[0]] * settle + policies, rpc,
                          lead_rounds=settle)
    result = execute(block_cfg, run_dir, resume=False, on_round=on_round, agent=agent,
                     take_lock=False)
    outcome = result.outcome
    if outcome.status == "completed":
        return "completed", outcome.reason
    return outcome.status, f"{run_dir.path.name} ({condition.label()}): {outcome.reason}"


def rebuild_cells(path: Path) -> int:
    """Derive every cell of a finished sweep again from the rounds on disk (its blocks), with
    this version's definitions (`hil.engine.round_demand`, the cell schema); measures
    nothing. Returns the cells written. For rounds recorded before a column existed, it is
    derived from the columns they have."""
    sweep = RunDirectory(path, table="cells")
    meta = sweep.read_meta()
    plan = SweepPlan.from_dict(meta["plan"])
    old = last_attempts(sweep.read_rounds(CELL_SCHEMA)).to_pylist()
    by_block: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for cell_row in sorted(old, key=lambda r: r["order"]):
        block = cell_row["block"]
        if block not in by_block:
            by_block[block] = [_with_demand(r) for r in
                               RunDirectory(path / "blocks" / block).read_rounds().to_pylist()]
        first = cell_row["first_round"]
        rounds = by_block[block][first:first + plan.rounds_per_cell]
        cell = _cell_of(cell_row)
        rows.append(summarise_cell(cell, plan, rounds, block=block,
                                   round_s=cell_row["round_s"],
                                   attempt=cell_row.get("attempt") or 1))
    sweep.parquet_path.unlink()
    with RoundRecorder(sweep, CELL_SCHEMA) as recorder:
        for row in rows:
            recorder.append(row)
    return len(rows)


def _cell_of(row: dict[str, Any]) -> Cell:
    """The plan's cell a recorded row measured."""
    return Cell(row["order"], row["condition"], row["policy_index"], row["rep"],
                row.get("reference_block"))


def _with_demand(row: dict[str, Any]) -> dict[str, Any]:
    """A recorded round with `*_arrived_mbps` and the demand of `round_demand` (rounds of
    round schema <= 4 kept the arrived rate as their demand)."""
    if not row.get("valid"):
        return row
    row = dict(row)
    for direction in ("dl", "ul"):
        row.setdefault(f"{direction}_arrived_mbps", row[f"{direction}_demand_mbps"])
        if row[f"{direction}_arrived_mbps"] is None:
            row[f"{direction}_arrived_mbps"] = row[f"{direction}_demand_mbps"]
    row["dl_demand_mbps"], row["ul_demand_mbps"] = round_demand(row)
    return row


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
