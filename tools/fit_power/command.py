"""`hil fit-power DATASET` (arguments declared in hil/cli.py): fit, report, write calibration.

    hil fit-power datasets/zmq-emulated                  (a `hil collect` sweep folder)
    hil fit-power datasets/lab/cells.parquet --base testbed_configs/calibration/emulated-nuc.yaml \
        --out testbed_configs/calibration/our-lab.yaml

Prints each coefficient with its standard error beside the base calibration's, R^2 and RMSE;
writes the calibration YAML (the schema of `drivers.emulated.model.Calibration`, so
`vbs.emulator.calibration` and the replays load it) and a residual plot beside it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from drivers.emulated.model import load_calibration
from hil.recorder import RunDirectory
from tools.fit_power.fit import FitError, PowerFit, power_coefficients, fit_power, read_cells
from tools.fit_power.plot import residual_figure

BUNDLED_BASE = Path(__file__).resolve().parents[2] / "testbed_configs/calibration/emulated-nuc.yaml"


def run(args: argparse.Namespace, console: Console) -> int:
    cells, folder = read_cells(Path(args.dataset))
    base_path = Path(args.base) if args.base else _sweep_calibration(folder) or BUNDLED_BASE
    base = load_calibration(base_path)
    name = args.name or f"fitted-{folder.resolve().name}"
    fit = fit_power(cells, base, name=name)
    out = Path(args.out) if args.out else folder / "calibration.yaml"
    console.print(_table(fit, power_coefficients(base.power), base_path.name))
    console.print(f"R^2 {fit.r2:.5f}, RMSE {fit.rmse_w * 1000:.2f} mW over {fit.n_cells} cells "
                  f"({fit.dropped_cells} failed or incomplete left out)", highlight=False)
    if fit.held:
        console.print("[yellow]held at the base calibration's values (the dataset does not "
                      f"determine them): {', '.join(fit.held)}; widen the grid (more PRB ratios, "
                      "DL gains, UL channel conditions) to fit them")
    write_calibration(fit, out, source=Path(args.dataset), base_path=base_path)
    png = residual_figure(fit, f"{name}: power fit on {fit.n_cells} cells",
                          out.with_name(out.stem + "-residuals.png"))
    console.print(f"calibration: {out}\nresidual plot: {png}", highlight=False)
    return 0


def _sweep_calibration(folder: Path) -> Path | None:
    """The calibration the sweep's emulated vBS ran with, if it was one and is still there."""
    meta = RunDirectory(folder, table="cells")
    if not meta.meta_path.exists():
        return None
    recorded = meta.read_meta().get("calibration")
    return Path(recorded) if recorded and Path(recorded).exists() else None


def _table(fit: PowerFit, base: dict[str, float], base_name: str) -> Table:
    table = Table(title="power model fit", title_justify="left")
    for column in ("coefficient", "fitted", "std. error", f"base ({base_name})"):
        table.add_column(column, justify="left" if column == "coefficient" else "right")
    for key, value in fit.fitted.items():
        table.add_row(key, f"{value:.5g}", f"{fit.stderr[key]:.2g}", f"{base[key]:.5g}")
    for key, value in fit.held.items():
        table.add_row(key, f"{value:.5g} (held)", "", f"{base[key]:.5g}")
    return table


def write_calibration(fit: PowerFit, path: Path, *, source: Path, base_path: Path) -> Path:
    """The calibration YAML with a header saying where it came from and how well it fits."""
    header = (f"# Fitted by `hil fit-power {source}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
              f"# {fit.n_cells} cells; R^2 {fit.r2:.5f}, RMSE {fit.rmse_w:.4f} W.\n"
              f"# Cell, channel, radio_fixed_w and ul_decode margin/span from {base_path}.\n")
    if fit.held:
        header += f"# Held at the base's values (not determined): {', '.join(fit.held)}.\n"
    body = yaml.safe_dump(fit.calibration.model_dump(mode="json"), sort_keys=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + body)
    except OSError as exc:
        raise FitError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from exc
    return path
