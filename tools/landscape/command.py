"""`hil landscape DATASET` (arguments declared in tools/cli.py): the emulator's ranking of the
policies beside a measured dataset's, per condition and reward weight.

    hil landscape datasets/measured/srsran-zmq                    (the committed dataset)
    hil landscape DIR --calibration testbed_configs/calibration/srsran-zmq.yaml --delta 1.5

Prints one line per condition and delta (Spearman's rho, where the emulator ranks the
measured best, whether it passes: `tools.landscape.compare`) and draws the measured and the
emulated reward of every policy side by side (`landscape.png` in --out, default DATASET).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hil.base.model import load_calibration
from hil.reward import RewardParams
from tools.collect.reading import Sweep, read_sweep
from tools.landscape.compare import (
    MIN_RELIABILITY,
    MIN_SPEARMAN,
    TOP,
    ConditionLandscape,
    compare,
)
from tools.landscape.figure import landscape_figure


def run(args: argparse.Namespace, console: Console) -> int:
    sweep = read_sweep(Path(args.dataset))
    cal_path = Path(args.calibration)
    cal = load_calibration(cal_path)
    results = compare(sweep.with_power(args.power), sweep.space, cal,
                      reward_params(sweep, args.delta), power=args.power)
    console.print(table(results, f"{args.dataset} against {cal_path.name} ({args.power})"))
    out = Path(args.out) if args.out else Path(args.dataset)
    png = landscape_figure(results, f"measured vs emulated reward per policy ({cal.name})",
                           out / "landscape.png")
    passed = sum(r.passes for r in results)
    console.print(f"{passed} of {len(results)} condition x delta pass (where the measurement "
                  f"ranks the policies, reliability >= {MIN_RELIABILITY}: Spearman >= "
                  f"{MIN_SPEARMAN}; where it cannot, the emulator as flat; and either way the "
                  f"measured best in the emulator's top {TOP} or its choice within the noise); "
                  f"figure: {png}", highlight=False)
    return 0


def reward_params(sweep: Sweep, deltas: list[float]) -> list[RewardParams]:
    """Each delta with the power bounds the sweep's testbed declared."""
    bounds = sweep.meta["config"]["reward"]
    return [RewardParams(d, bounds["power_min_w"], bounds["power_max_w"]) for d in deltas]


def table(results: list[ConditionLandscape], title: str) -> Table:
    out = Table(title=title)
    for column in ("condition", "delta", "Spearman", "reliability", "measured best: emulator "
                   "rank", "emulator's best within noise", "pass"):
        out.add_column(column)
    for r in results:
        out.add_row(r.label, f"{r.delta:g}", f"{r.spearman:.3f}", f"{r.reliability:.2f}",
                    str(r.emulated_rank_of_measured_best),
                    "yes" if r.emulated_best_within_noise else "no",
                    "[green]yes[/]" if r.passes else "[red]no[/]")
    return out
