"""`hil fit-power DATASET...` (arguments declared in tools/cli.py): fit, report, write calibration.

    hil fit-power datasets/zmq-emulated                  (a `hil collect` sweep folder)
    hil fit-power datasets/lab/cells.parquet --base testbed_configs/calibration/emulated-nuc.yaml \
        --out testbed_configs/calibration/our-lab.yaml
    hil fit-power SWEEP [SWEEP...] --fit-link --power enb_cpu_model_w --out CAL.yaml
                    (several sweeps together; the link adaptation too: tools/fit_power/link.py)

Prints each coefficient the dataset determines with its 95 % interval beside the base
calibration's, and each one it does not with what would determine it; R^2 and RMSE; writes
the calibration YAML (the schema of `hil.base.model.Calibration`, so
`vbs.emulator.calibration` and the replays load it) and a residual plot beside it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from hil.base.model import Calibration, load_calibration
from hil.recorder import RunDirectory
from tools.collect.reading import read_sweep
from tools.fit_power.fit import (
    DETERMINED_W,
    TERMS,
    FitError,
    PowerFit,
    fit_power,
    power_coefficients,
    read_cells,
)
from tools.fit_power.link import (
    fit_cqi_scale,
    fit_link_adaptation,
    ul_grant_limit_prb,
    ul_snr_per_prb_slope,
)
from tools.fit_power.plot import residual_figure

NEEDS = {term.key: term.needs for term in TERMS}
BUNDLED_BASE = Path(__file__).resolve().parents[2] / "testbed_configs/calibration/emulated-nuc.yaml"


def run(args: argparse.Namespace, console: Console) -> int:
    datasets = [Path(d) for d in args.dataset]
    cells, folder = _read(datasets, args.power)
    base_path = Path(args.base) if args.base else _sweep_calibration(folder) or BUNDLED_BASE
    base = load_calibration(base_path)
    name = args.name or f"fitted-{folder.resolve().name}"
    if args.fit_link:
        base = with_measured_link(base, cells, ", ".join(str(d) for d in datasets), console)
    fit = fit_power(cells, base, name=name, power_column=args.power)
    out = Path(args.out) if args.out else folder / "calibration.yaml"
    console.print(_table(fit, power_coefficients(base.power), base_path.name))
    console.print(f"R^2 {fit.r2:.5f}, RMSE {fit.rmse_w * 1000:.2f} mW over {fit.n_cells} cells "
                  f"({fit.dropped_cells} failed or incomplete left out); intervals and the "
                  f"choice of coefficients assume a noise of {fit.noise_w * 1000:.2g} mW",
                  highlight=False)
    if fit.drift is not None:
        console.print(f"drift over the sweep: {_drift(fit.drift)}, fitted beside the "
                      "coefficients and left out of the calibration", highlight=False)
    if fit.loose:
        console.print("[yellow]the cells refute the base calibration's values of the terms "
                      f"they do not determine to {DETERMINED_W * 1000:g} mW, so those are fitted "
                      "too; their intervals say how loosely:")
        for key in fit.loose:
            console.print(f"[yellow]  {key}: to determine it, {NEEDS[key]}", highlight=False)
    if fit.held:
        console.print("[yellow]held at the base calibration's values, since the dataset does "
                      f"not determine them to {DETERMINED_W * 1000:g} mW:")
        for key in fit.held:
            console.print(f"[yellow]  {key}: needs {NEEDS[key]}", highlight=False)
    write_calibration(fit, out, source=" ".join(args.dataset), base_path=base_path,
                      power=args.power)
    png = residual_figure(fit, f"{name}: power fit on {fit.n_cells} cells",
                          out.with_name(out.stem + "-residuals.png"))
    console.print(f"calibration: {out}\nresidual plot: {png}", highlight=False)
    return 0


def with_measured_link(base: Calibration, cells: pd.DataFrame, source: str,
                       console: Console) -> Calibration:
    """`base` with the link the cells measured (`tools.fit_power.link`): the CQI scale, the
    link adaptation, whether the UE sends at a fixed total power, the UL grant limit."""
    scale = fit_cqi_scale(cells)
    channel = base.channel.model_copy(update={"snr_at_cqi_db": scale})
    if scale is not None:
        console.print("CQI scale, SNR (dB) at CQI 0..15: "
                      f"{' '.join(f'{v:.1f}' for v in scale)}", highlight=False)
    link = fit_link_adaptation(cells, source, channel)
    slope = ul_snr_per_prb_slope(cells)
    fixed_power = bool(abs(slope + 1.0) < 0.25)
    cell = base.cell
    if (granted := ul_grant_limit_prb(cells)) is not None:
        cell = cell.model_copy(update={"ul_pucch_prb": int(round(cell.nof_prb - granted))})
    console.print(f"UL SNR per 10 log10(PRBs): {slope:+.2f} dB/dB (-1: the UE sends at a "
                  f"fixed total power) -> ul_fixed_total_power: {fixed_power}; UL grants "
                  f"of at most {cell.nof_prb - cell.ul_pucch_prb} PRBs (measured median "
                  f"{granted})", highlight=False)
    console.print(f"link adaptation, MCS per CQI 0..15: DL "
                  f"{' '.join(f'{v:.0f}' for v in link.dl_mcs_by_cqi)}; UL "
                  f"{' '.join(f'{v:.0f}' for v in link.ul_mcs_by_cqi)}", highlight=False)
    return base.model_copy(update={"cell": cell, "channel": channel.model_copy(
        update={"link_adaptation": link, "ul_fixed_total_power": fixed_power})})


def _read(datasets: list[Path], power: str) -> tuple[pd.DataFrame, Path]:
    """The cells of every dataset (a `dataset` column tells them apart), with `power`
    watts; the first one's folder."""
    frames = []
    for path in datasets:
        if path.is_dir():
            cells = read_sweep(path).with_power(power)
        elif power == "power_w":
            cells, _ = read_cells(path)
        else:
            raise FitError(f"{path}: --power {power} needs the sweep folder (its run.json and "
                           "provenance.json), not a file")
        frames.append(cells.assign(dataset=str(path)))
    first = datasets[0]
    return pd.concat(frames, ignore_index=True), first if first.is_dir() else first.parent


def _sweep_calibration(folder: Path) -> Path | None:
    """The calibration the sweep's emulated vBS ran with, if it was one and is still there."""
    meta = RunDirectory(folder, table="cells")
    if not meta.meta_path.exists():
        return None
    recorded = meta.read_meta().get("calibration")
    return Path(recorded) if recorded and Path(recorded).exists() else None


def _table(fit: PowerFit, base: dict[str, float], base_name: str) -> Table:
    table = Table(title="power model fit", title_justify="left")
    for column in ("coefficient", "fitted", "95 % interval", f"base ({base_name})"):
        table.add_column(column, justify="left" if column == "coefficient" else "right")
    for key, value in fit.fitted.items():
        low, high = fit.interval[key]
        table.add_row(key, f"{value:.5g}", f"{low:.4g} .. {high:.4g}", f"{base[key]:.5g}")
    for key, value in fit.held.items():
        table.add_row(key, f"{value:.5g} (held)", "", f"{base[key]:.5g}")
    return table


def write_calibration(fit: PowerFit, path: Path, *, source: Path | str, base_path: Path,
                      power: str = "power_w") -> Path:
    """The calibration YAML with a header saying where it came from and how well it fits."""
    header = (f"# Fitted by `hil fit-power {source}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
              f"# Watts: {power}. {fit.n_cells} cells; R^2 {fit.r2:.5f}, "
              f"RMSE {fit.rmse_w:.4f} W.\n"
              f"# Cell, radio_fixed_w and ul_decode margin/span from {base_path}; channel "
              "from there too unless a link adaptation is fitted (its `source` says).\n")
    header += "".join(f"# {key}: 95 % interval {low:.6g} .. {high:.6g}\n"
                      for key, (low, high) in fit.interval.items())
    if fit.drift is not None:
        header += f"# A drift of {_drift(fit.drift)} over the sweep was fitted and removed.\n"
    if fit.loose:
        header += f"# Fitted but not determined (wide intervals): {', '.join(fit.loose)}.\n"
    if fit.held:
        header += f"# Held at the base's values (not determined): {', '.join(fit.held)}.\n"
    body = yaml.safe_dump(fit.calibration.model_dump(mode="json"), sort_keys=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + body)
    except OSError as exc:
        raise FitError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from exc
    return path


def _drift(drift: tuple[float, float, float]) -> str:
    value, low, high = drift
    return f"{value * 1000:+.1f} mW/h (95 %: {low * 1000:+.1f} .. {high * 1000:+.1f})"
