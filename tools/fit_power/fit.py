"""Least-squares fit of the published power-model form to a collected dataset.

The form is the emulated vBS's (`hil/base/model.py`, after Ayala-Romero et al.,
ICC 2021 and INFOCOM 2021), which is linear in every coefficient a calibration holds:

    P = idle + radio_fixed + radio_tx * 10^(g/10) * a_d
        + a_d (dl.a + dl.am m_d + dl.amm m_d^2) + dl.aa a_d^2          (same for the UL)
        + (ul_decode.r0 * [a_u > 0] + ul_decode.r1 * a_u) * below(m_u, snr_u)

with airtimes `a` = PRBs per TTI / cell PRBs, `m` the mean MCS, `g` the DL gain, and
``below = clip(required_snr_ul(m_u) + margin - snr_u, 0, span)`` averaged over the per-TTI
fading of the base calibration (`expected_clip`; twice the variance where link adaptation,
not the cap, sets the MCS, since it follows the SNR of a few TTIs earlier). Each cell of a dataset
gives one equation from its dwell-round means. The nonlinear shape parameters (margin, span)
and the split of the constant between `idle_w` and `radio_fixed_w` cannot be told apart by
a meter on the supply; they are kept from a base calibration and the constant is reported
as `idle_w`.

A coefficient the dataset cannot determine (its column adds nothing to the rank: e.g. one
DL gain only, so the radio term is a multiple of the DL airtime term) is held at the base
calibration's value and reported as held. Coefficients the calibration schema requires to be
>= 0 are fitted with that bound (`scipy.optimize.lsq_linear`).

Window means stand in for means of products (mean(a m) = mean(a) mean(m) holds when every
scheduled TTI gets the same PRBs, as under a full buffer), so a fit is exact for saturated
cells and slightly biased for partly loaded ones; `hil fit-power` shows the residuals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear
from scipy.special import ndtr

from hil.base import lte
from hil.base.errors import HilError
from hil.base.model import Calibration, PowerParams, link_tables
from hil.recorder import RunDirectory
from tools.collect.schema import CELL_SCHEMA

_UL_MCS = np.arange(lte.MAX_MCS + 1)


class FitError(HilError):
    """A dataset the power model cannot be fitted to."""


@dataclass(frozen=True)
class Term:
    key: str  # the coefficient in `PowerParams`, dotted
    lower: float  # bound from the calibration schema


TERMS = (
    Term("idle_w", -np.inf),  # idle + radio_fixed; checked > 0 once split
    Term("dl.a_w", -np.inf), Term("dl.am_w", -np.inf), Term("dl.amm_w", -np.inf),
    Term("dl.aa_w", -np.inf),
    Term("ul.a_w", -np.inf), Term("ul.am_w", -np.inf), Term("ul.amm_w", -np.inf),
    Term("ul.aa_w", -np.inf),
    Term("radio_tx_w", 0.0),
    Term("ul_decode.r0_w_per_db", 0.0), Term("ul_decode.r1_w_per_db", 0.0),
)
"""Every coefficient the fit can determine, in the order a rank check admits them: the
radio's transmit share comes after the DL airtime terms, so a dataset with one DL gain (the
two are then proportional) holds the radio's at the base value, not the BBU's."""
MEASURED = ("power_w", "dl_prb", "ul_prb", "dl_mcs", "ul_mcs", "ul_snr_db", "applied_dl_gain_db")


@dataclass(frozen=True)
class PowerFit:
    calibration: Calibration
    fitted: dict[str, float]
    stderr: dict[str, float]
    held: dict[str, float]  # coefficient -> the base value it was held at
    observed_w: np.ndarray
    predicted_w: np.ndarray
    n_cells: int
    dropped_cells: int

    @property
    def residual_w(self) -> np.ndarray:
        return self.observed_w - self.predicted_w

    @property
    def rmse_w(self) -> float:
        return float(np.sqrt(np.mean(self.residual_w ** 2)))

    @property
    def r2(self) -> float:
        total = np.sum((self.observed_w - self.observed_w.mean()) ** 2)
        return float(1.0 - np.sum(self.residual_w ** 2) / total) if total > 0 else float("nan")


def design_matrix(cells: pd.DataFrame, base: Calibration) -> np.ndarray:
    """One column per `TERMS` entry: the power per unit of that coefficient, per cell."""
    n_prb = base.cell.nof_prb
    dec = base.power.ul_decode
    a_d = cells["dl_prb"].to_numpy(float) / n_prb
    a_u = cells["ul_prb"].to_numpy(float) / n_prb
    m_d, m_u = cells["dl_mcs"].to_numpy(float), cells["ul_mcs"].to_numpy(float)
    gain = cells["applied_dl_gain_db"].to_numpy(float)
    required = np.interp(m_u, _UL_MCS, link_tables(base.channel).required_snr_db[1])
    # Where link adaptation picks the MCS (below the cap), it follows the SNR of a few TTIs
    # before, so the shortfall spreads with two independent fades, not one.
    adapting = ~(m_u >= cells["applied_ul_max_mcs"].to_numpy(float) - 0.5)  # NaN: uncapped
    sigma = base.channel.fading_sigma_db * np.where(adapting, np.sqrt(2.0), 1.0)
    below = expected_clip(required + dec.margin_db - cells["ul_snr_db"].to_numpy(float),
                          dec.span_db, sigma)
    return np.column_stack([
        np.ones_like(a_d),
        a_d, a_d * m_d, a_d * m_d ** 2, a_d ** 2,
        a_u, a_u * m_u, a_u * m_u ** 2, a_u ** 2,
        10 ** (gain / 10) * a_d, (a_u > 0) * below, a_u * below,
    ])


def expected_clip(x: np.ndarray, span: float, sigma: np.ndarray | float) -> np.ndarray:
    """E[clip(x - sigma Z, 0, span)], Z standard normal: the decoding effort below the SNR
    threshold averaged over per-TTI fading around the window's mean SNR. Clipping is convex
    near 0, so the clip of the mean would underestimate it where the SNR sits near g0."""
    x, sigma = np.broadcast_arrays(np.asarray(x, float), np.asarray(sigma, float))
    s = np.where(sigma > 0, sigma, 1.0)

    def ramp(mu: np.ndarray) -> np.ndarray:  # E[max(mu - sigma Z, 0)]
        return mu * ndtr(mu / s) + s * np.exp(-0.5 * (mu / s) ** 2) / np.sqrt(2 * np.pi)

    return np.where(sigma > 0, ramp(x) - ramp(x - span), np.clip(x, 0, span))


def usable_cells(cells: pd.DataFrame, power_column: str = "power_w") -> pd.DataFrame:
    """Cells that were measured (not failed) and have every column the fit reads."""
    measured = (power_column, *MEASURED[1:])
    missing = [c for c in (*measured, "applied_ul_max_mcs") if c not in cells.columns]
    if missing:
        raise FitError(f"the dataset has no column(s) {', '.join(missing)}; fit-power reads "
                       "the cells.parquet of `hil collect`")
    ok = ~cells["failed"].astype(bool) if "failed" in cells.columns else np.ones(len(cells), bool)
    ok &= np.isfinite(cells[list(measured)].astype(float)).all(axis=1)
    return cells[ok]


def fit_power(cells: pd.DataFrame, base: Calibration, *, name: str = "fitted",
              power_column: str = "power_w") -> PowerFit:
    """Fit every determinable coefficient to the watts in `power_column`; the rest are held
    at `base`'s values."""
    cells = cells.copy()
    for direction in ("dl", "ul"):  # no grant, no MCS: the value does not matter (a = 0)
        idle = cells[f"{direction}_prb"].astype(float) == 0
        cells.loc[idle, f"{direction}_mcs"] = cells.loc[idle, f"{direction}_mcs"].fillna(0.0)
    usable = usable_cells(cells, power_column)
    a = design_matrix(usable, base)
    y = usable[power_column].to_numpy(float)
    base_values = power_coefficients(base.power)
    admitted = _identifiable(a)
    if len(y) <= len(admitted):
        raise FitError(f"{len(y)} usable cells for {len(admitted)} coefficients: collect more "
                       "cells (a wider grid, more conditions)")
    held = {t.key: base_values[t.key] for i, t in enumerate(TERMS) if i not in admitted}
    fixed = np.array([base_values[t.key] if i not in admitted else 0.0
                      for i, t in enumerate(TERMS)])
    target = y - a @ fixed
    cols = a[:, admitted]
    lower = np.array([TERMS[i].lower for i in admitted])
    solution = lsq_linear(cols, target, bounds=(lower, np.full(len(admitted), np.inf)))
    theta = solution.x
    predicted = cols @ theta + a @ fixed
    dof = max(len(y) - len(admitted), 1)
    sigma2 = float(np.sum((y - predicted) ** 2)) / dof
    cov = sigma2 * np.linalg.pinv(cols.T @ cols)
    fitted = {TERMS[i].key: float(v) for i, v in zip(admitted, theta)}
    stderr = {TERMS[i].key: float(np.sqrt(max(cov[j, j], 0.0))) for j, i in enumerate(admitted)}
    fitted["idle_w"] -= base.power.radio_fixed_w
    if fitted["idle_w"] <= 0:
        raise FitError(f"the fitted idle power is {fitted['idle_w']:.2f} W after taking the "
                       f"base calibration's radio_fixed_w = {base.power.radio_fixed_w} W: "
                       "the base does not belong to this testbed (pass --base)")
    power = _unflatten(base.power, fitted)
    calibration = base.model_copy(update={"name": name, "power": power})
    return PowerFit(calibration, fitted, stderr, held, y, predicted, len(y),
                    len(cells) - len(usable))


def _identifiable(a: np.ndarray) -> list[int]:
    """Columns, in `TERMS` order, that each raise the rank of those before them."""
    scale = np.linalg.norm(a, axis=0)
    scaled = a / np.where(scale > 0, scale, 1.0)
    admitted: list[int] = []
    for i in range(a.shape[1]):
        if scale[i] == 0:
            continue
        trial = scaled[:, [*admitted, i]]
        if np.linalg.matrix_rank(trial, tol=1e-8 * np.sqrt(len(a))) == len(admitted) + 1:
            admitted.append(i)
    return admitted


def power_coefficients(power: PowerParams) -> dict[str, float]:
    """The fitted coefficients of `power`, by `TERMS` key."""
    dumped = power.model_dump()
    out = {}
    for term in TERMS:
        node = dumped
        for part in term.key.split("."):
            node = node[part]
        out[term.key] = float(node)
    return out


def _unflatten(base: PowerParams, values: dict[str, float]) -> PowerParams:
    data = base.model_dump()
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return PowerParams.model_validate(data)


def read_cells(path: Path) -> tuple[pd.DataFrame, Path]:
    """The cells of a sweep folder (its cells.parquet, or the journal of a live sweep) or of a
    cells.parquet file; returns them and the sweep folder."""
    path = Path(path)
    if path.is_dir():
        sweep = RunDirectory(path, table="cells")
        if not (sweep.parquet_path.exists() or sweep.journal_path.exists()):
            raise FitError(f"{path} holds no cells.parquet: is it a `hil collect` sweep folder?")
        return sweep.read_rounds(CELL_SCHEMA).to_pandas(), path
    if path.suffix == ".parquet" and path.exists():
        return pd.read_parquet(path), path.parent
    if path.suffix == ".csv":
        raise FitError(f"{path}: fit-power reads a sweep's cells.parquet, which has the PRBs "
                       "and MCS used; the dataset_dlul layout has only the caps")
    raise FitError(f"{path}: not found; give a `hil collect` sweep folder or its cells.parquet")
