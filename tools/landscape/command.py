"""`hil landscape DATASET` (arguments declared in hil/cli.py): the emulator's ranking of the
policies beside a measured dataset's, per condition and reward weight.

    hil landscape datasets/measured/srsran-zmq                    (the committed dataset)
    hil landscape DIR --calibration testbed_configs/calibration/emulated-nuc.yaml --delta 1.5

Prints one line per condition and delta (Spearman's rho, where the emulator ranks the
measured best, whether it passes: `tools.landscape.compare`) and draws the measured and the
emulated reward of every policy side by side (`landscape.png` in --out, default DATASET).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agents.policy_space import PolicySpace
from drivers.emulated.model import load_calibration
from hil.errors import HilError
from hil.recorder import RunDirectory
from hil.reward import RewardParams
from tools.fit_power.fit import read_cells
from tools.landscape.compare import MIN_SPEARMAN, TOP, ConditionLandscape, compare
from tools.landscape.figure import landscape_figure


class LandscapeError(HilError):
    """A dataset that cannot be compared with the emulator."""


def load_dataset(path: Path) -> tuple[object, PolicySpace, dict]:
    """Cells, the sweep's policy grid and its run.json, from a sweep folder."""
    cells, folder = read_cells(path)
    meta_dir = RunDirectory(folder, table="cells")
    if not meta_dir.meta_path.exists():
        raise LandscapeError(f"{folder}: no run.json beside the cells, so the policy grid "
                             "they index is unknown; give the sweep folder")
    meta = meta_dir.read_meta()
    return cells, PolicySpace(**meta["plan"]["space"]), meta


def run(args: argparse.Namespace, console: Console) -> int:
    cells, space, meta = load_dataset(Path(args.dataset))
    cal_path = Path(args.calibration)
    cal = load_calibration(cal_path)
    reward_cfg = meta["config"]["reward"]
    params = [RewardParams(d, reward_cfg["power_min_w"], reward_cfg["power_max_w"])
              for d in args.delta]
    results = compare(cells, space, cal, params, power=args.power)
    console.print(table(results, f"{args.dataset} against {cal_path.name} ({args.power})"))
    out = Path(args.out) if args.out else Path(args.dataset)
    png = landscape_figure(results, f"measured vs emulated reward per policy ({cal.name})",
                           out / "landscape.png")
    passed = sum(r.passes for r in results)
    console.print(f"{passed} of {len(results)} condition x delta pass (Spearman >= "
                  f"{MIN_SPEARMAN}, the measured best in the emulator's top {TOP} or its "
                  f"choice within the noise); figure: {png}", highlight=False)
    return 0


def table(results: list[ConditionLandscape], title: str) -> Table:
    out = Table(title=title)
    for column in ("condition", "delta", "policies", "Spearman", "measured best: emulator rank",
                   "emulator's best within noise", "pass"):
        out.add_column(column)
    for r in results:
        out.add_row(r.label, f"{r.delta:g}", str(len(r.measured)), f"{r.spearman:.3f}",
                    str(r.emulated_rank_of_measured_best),
                    "yes" if r.emulated_best_within_noise else "no",
                    "[green]yes[/]" if r.passes else "[red]no[/]")
    return out
