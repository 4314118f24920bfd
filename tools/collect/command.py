"""`hil collect` (arguments declared in tools/cli.py): sweep a policy grid across conditions.

    hil collect testbed_configs/zmq-emulated.yaml --grid dl_max_mcs=5,16,27 dl_prb_ratio=0.2,1
    hil collect CONFIG --grid paper dl_load_mbps=8,32 --dwell-rounds 60 --warmup-rounds 5 \
        --reps 3 --seed 7 --out datasets/lab-2026-11

Running the same command again continues the sweep in `--out` (finished cells are kept).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hil.base.model import load_calibration
from hil.config import load_config
from hil.progress import tracked
from hil.testbeds import kind_of
from tools.collect.plan import SweepPlan, parse_grid
from tools.collect.sweep import DLUL_NAME, open_sweep, run_sweep, sweep_clock
from tools.fit_power.design import plan_determines


def run(args: argparse.Namespace, console: Console) -> int:
    config_path = Path(args.config)
    cfg = load_config(config_path)
    space, conditions = parse_grid(args.grid, cfg.policy_space,
                                   channel=kind_of(cfg).sweep_channel,
                                   rows=args.condition)
    reference = (args.reference_policy if args.reference_policy is not None
                 else space.size - 1 if args.blocks_per_condition > 1 else None)
    plan = SweepPlan(space, conditions, reps=args.reps, dwell_rounds=args.dwell_rounds,
                     warmup_rounds=args.warmup_rounds, seed=args.seed,
                     block_warmup_rounds=args.block_warmup_rounds,
                     blocks_per_condition=args.blocks_per_condition, reference_policy=reference)
    if args.check_fit:
        return _check_fit(plan, cfg.vbs.calibration, console)
    out = Path(args.out) if args.out else Path("datasets") / cfg.name
    if (stepped := sweep_clock(cfg)) is not cfg:
        console.print(f"clock: stepped for the sweep, not accelerated x{cfg.clock.speedup:g} "
                      "(the meter's and rtctl's windows are then the same TTIs)",
                      highlight=False)
        cfg = stepped
    sweep, done = open_sweep(out, cfg, config_path, plan)
    todo = plan.n_cells - len(done)
    wall_s = todo * plan.rounds_per_cell * cfg.period_s
    console.print(f"sweep [bold]{escape(str(out))}[/]: {space.size} policies x "
                  f"{len(conditions)} condition(s) x {plan.reps} rep(s) = {plan.n_cells} cells, "
                  f"{len(done)} already measured; {plan.rounds_per_cell} rounds per cell "
                  f"({plan.warmup_rounds} warm-up), "
                  + (f"at least {wall_s:.0f} s to go" if wall_s else "as fast as it simulates"),
                  highlight=False)
    failed: set[str] = set()
    retried = 0
    with tracked(console, "cells", "measured", plan.n_cells, len(done)) as progress:

        def on_cell(row: dict) -> None:
            nonlocal retried
            if row["failed"]:
                failed.add(row["cell_id"])
            else:
                failed.discard(row["cell_id"])
            if row["attempt"] == 1:
                progress.advance()
            else:  # a failed cell measured again at the sweep's end
                retried += 1

        t0 = time.monotonic()
        result = run_sweep(cfg, plan, sweep, done, on_cell=on_cell, retries=args.retries)
    measured = result.cells_done - (plan.n_cells - todo)
    console.print(f"{result.status}: {escape(result.reason)}", highlight=False)
    console.print(f"{measured} cells measured in {time.monotonic() - t0:.1f} s ({retried} "
                  f"measured again, {len(failed)} failed); {result.cells_done}/"
                  f"{result.cells_total} in the sweep, {result.cells_failed} of them failed",
                  highlight=False)
    if result.drift is not None:
        console.print(f"drift: {result.drift.describe()}", highlight=False)
    console.print(f"dataset: {out / 'cells.parquet'} (units in the schema), "
                  f"{out / DLUL_NAME} (dataset_dlul layout)", highlight=False)
    if result.status != "completed":
        console.print("[yellow]run the same command again to measure the remaining cells")
        return 130 if result.status == "interrupted" else 1
    return 0


def _check_fit(plan: SweepPlan, calibration: Path, console: Console) -> int:
    """`--check-fit`: what the plan's cells would determine, measuring nothing."""
    determined, held = plan_determines(plan, load_calibration(calibration))
    console.print(f"{plan.n_cells} cells; predicted with {calibration}, `hil fit-power` would "
                  f"determine: {', '.join(determined)}", highlight=False)
    for key, needs in held.items():
        console.print(f"[yellow]  {key}: held; needs {needs}", highlight=False)
    if not held:
        console.print("every coefficient of the power model", highlight=False)
    return 0
