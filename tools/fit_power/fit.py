"""Least-squares fit of the published power-model form to a collected dataset.

The form is the emulated vBS's (`hil/base/model.py`, after Ayala-Romero et al.,
ICC 2021 and INFOCOM 2021), which is linear in every coefficient a calibration holds:

    P = idle + radio_fixed + radio_tx * 10^(g/10) * a_d
        + a_d (dl.a + dl.am m_d + dl.amm m_d^2) + dl.aa a_d^2          (same for the UL)
        + (ul_decode.r0 * [a_u > 0] + ul_decode.r1 * a_u) * below(m_u, snr_u)

with airtimes `a` = PRBs per TTI / cell PRBs, `m` the MCS, `g` the DL gain, and
``below = clip(required_snr_ul(m_u) + margin - snr_u, 0, span)``. A window reports the
mean MCS only; where link adaptation, not the cap, picks it, it moves with the fading from
TTI to TTI, so m^2 and `below` are taken as their means over that spread (`la_spread`, from
the base calibration's fading and link adaptation; `below` also over the TTI's own fade,
`expected_clip`). Each cell of a dataset gives one equation from its dwell-round means.
The nonlinear shape parameters (margin, span) and the split of the constant between
`idle_w` and `radio_fixed_w` cannot be told apart by a meter on the supply; they are kept
from a base calibration and the constant is reported as `idle_w`.

Which coefficients a dataset determines is decided by what the fit could not tell apart,
not by an exact rank. A coefficient is determined when its 95 % interval moves the modelled
power by at most DETERMINED_W anywhere in the operating envelope (airtime 0..1, MCS 0..28,
the decoding shortfall 0..span: a term's `reach`), the interval coming from the design and
the noise: the meter's resolution, the cells' own spread, or what the model misses with
every term the cells can tell apart, whichever is largest. Coefficients are admitted in
`TERMS` order while every admitted one stays determined; the others are held at the base
calibration's value and named with what would determine them (`Term.needs`), unless the
cells refute those values (an F test, HELD_P): then the base is another testbed's, and
every term the cells can tell apart is fitted, the undetermined ones named as such. So two
nearly collinear terms (one UL CQI: the decoding terms move together) are held, and so is
a term whose column is almost zero (no decoding effort at CQI 15), rather than fitted to
the residuals. Coefficients the calibration schema requires to be >= 0 are fitted with
that bound (`scipy.optimize.lsq_linear`).

Each fitted coefficient gets a 95 % interval: the wider of the classical one (the design and
the noise) and a bootstrap over the cells (resampled within each condition), which sees the
model's mismatch with the testbed that the residuals' size alone does not.

Window means still stand in for means of products of airtime and MCS (mean(a m) =
mean(a) mean(m) holds when every scheduled TTI gets the same PRBs, as under a full
buffer), so a fit is exact for saturated cells and slightly biased for partly loaded ones:
measured on the 324-cell grid, the UL MCS and decoding terms by 1-4 %, more than their
intervals show (issue 22); `hil fit-power` shows the residuals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats
from scipy.optimize import lsq_linear
from scipy.special import ndtr

from hil.base import lte
from hil.base.errors import HilError
from hil.base.model import Calibration, PowerParams, link_tables
from hil.recorder import RunDirectory
from tools.collect.drift import drift_identifiable, hours_since_start
from tools.collect.schema import CELL_SCHEMA, last_attempts



class FitError(HilError):
    """A dataset the power model cannot be fitted to."""


METER_RESOLUTION_W = 0.001
"""The GPM-8213 shows watts to five digits: 1 mW between 10 and 100 W. No fit is told its
coefficients more finely than this noise allows."""
DETERMINED_W = 0.05
"""A coefficient is determined when its 95 % interval moves the modelled power by at most
this anywhere in the operating envelope: 50 mW, 1 % of the 5 W a reward's power scale spans
(testbed_configs/zmq-srsran.yaml: 9..14 W), and what tests/test_fit_power.py asks of a
fitted calibration's expected power over the paper's policies."""
Z_95 = 1.959964
BOOTSTRAP_DRAWS = 200


@dataclass(frozen=True)
class Term:
    key: str  # the coefficient in `PowerParams`, dotted
    lower: float  # bound from the calibration schema
    reach: float  # the most its column holds in the operating envelope (NaN: the span)
    needs: str  # what a dataset needs to determine it


_MCS2 = float(lte.MAX_MCS ** 2)
TERMS = (
    Term("idle_w", -np.inf, 1.0, "any cells"),  # idle + radio_fixed; checked > 0 once split
    Term("dl.a_w", -np.inf, 1.0, "two DL PRB ratios"),
    Term("dl.am_w", -np.inf, lte.MAX_MCS, "two DL MCS caps (or DL CQIs)"),
    Term("dl.amm_w", -np.inf, _MCS2, "three DL MCS caps, far apart"),
    Term("dl.aa_w", -np.inf, 1.0, "three DL PRB ratios"),
    Term("ul.a_w", -np.inf, 1.0, "two UL PRB ratios"),
    Term("ul.am_w", -np.inf, lte.MAX_MCS, "two UL MCS caps (or UL CQIs)"),
    Term("ul.amm_w", -np.inf, _MCS2, "three UL MCS caps, far apart"),
    Term("ul.aa_w", -np.inf, 1.0, "three UL PRB ratios"),
    Term("radio_tx_w", 0.0, 1.0, "two DL gains (dl_gain_db)"),
    Term("ul_decode.r0_w_per_db", 0.0, np.nan,
         "a UL channel below the top UL MCS's threshold (ul_cqi 9 or lower; on srsRAN "
         "ul_snr_db)"),
    Term("ul_decode.r1_w_per_db", 0.0, np.nan,
         "a low UL channel (ul_cqi 9 or lower) under two UL PRB ratios"),
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
    interval: dict[str, tuple[float, float]]  # 95 %, of every fitted coefficient
    held: dict[str, float]  # coefficient -> the base value it was held at
    observed_w: np.ndarray
    predicted_w: np.ndarray
    n_cells: int
    dropped_cells: int
    noise_w: float  # the noise the intervals and the choice of coefficients assume
    drift: tuple[float, float, float] | None = None  # W per hour and its 95 % interval
    loose: list[str] = field(default_factory=list)  # fitted, but not determined (see fit_power)

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
    """One column per `TERMS` entry: the power per unit of that coefficient, per cell.

    Window means stand for means over TTIs; the MCS's spread within a window is not
    measured, so the terms that are not linear in it (m^2, the decoding shortfall) take
    their mean over the MCS link adaptation picks from TTI to TTI (`la_spread`)."""
    n_prb = base.cell.nof_prb
    dec = base.power.ul_decode
    a_d = cells["dl_prb"].to_numpy(float) / n_prb
    a_u = cells["ul_prb"].to_numpy(float) / n_prb
    m_d, m_u = cells["dl_mcs"].to_numpy(float), cells["ul_mcs"].to_numpy(float)
    gain = cells["applied_dl_gain_db"].to_numpy(float)
    mcs_d, p_d = la_spread(m_d, cells["applied_dl_max_mcs"].to_numpy(float), "dl", base)
    mcs_u, p_u = la_spread(m_u, cells["applied_ul_max_mcs"].to_numpy(float), "ul", base)
    # The shortfall of each TTI: the SNR its MCS needs against that TTI's own fade.
    required = link_tables(base.channel).required_snr_db[1][mcs_u]
    shortfall = expected_clip(
        required + dec.margin_db - cells["ul_snr_db"].to_numpy(float)[:, None], dec.span_db,
        base.channel.fading_sigma_db)
    below = np.sum(p_u * shortfall, axis=1)
    return np.column_stack([
        np.ones_like(a_d),
        a_d, a_d * m_d, a_d * np.sum(p_d * mcs_d ** 2, axis=1), a_d ** 2,
        a_u, a_u * m_u, a_u * np.sum(p_u * mcs_u ** 2, axis=1), a_u ** 2,
        10 ** (gain / 10) * a_d, (a_u > 0) * below, a_u * below,
    ])


def la_spread(mean_mcs: np.ndarray, cap: np.ndarray, direction: lte.Direction,
              base: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """The MCS of a window's TTIs as a distribution, per cell: values (n, k) and their
    probabilities (n, k), from the window's mean MCS and its cap (NaN: uncapped).

    Where link adaptation picks the MCS (below the cap), it follows the faded SNR from TTI
    to TTI; the base calibration's fading and link adaptation give, for every mean SNR, the
    capped MCS at each of `_NODES` fades, and the window's
    mean MCS picks the mean SNR (interpolated between two tabulated ones)."""
    tables = link_tables(base.channel)
    pick = tables.dl_mcs if direction == "dl" else tables.ul_mcs
    la = pick(_MEAN_SNR_DB[:, None] + base.channel.fading_sigma_db * _NODES[None, :])
    mean_mcs = np.asarray(mean_mcs, float)
    cap = np.where(np.isfinite(cap), cap, lte.MAX_MCS)
    values = np.empty((len(mean_mcs), 2 * len(_NODES)), dtype=np.int64)
    probability = np.empty(values.shape)
    for c in np.unique(cap):
        rows = np.flatnonzero(cap == c)
        capped = np.minimum(la, int(c))
        # The tabulated mean MCS never falls with the SNR, but stays level where every
        # fade gives one MCS: a mean between two levels lies between the last row of the
        # lower level and the next row.
        means, first_row = np.unique(capped @ _WEIGHTS, return_index=True)
        level = np.clip(np.searchsorted(means, mean_mcs[rows], side="right") - 1, 0,
                        len(means) - 1)
        upper = np.minimum(level + 1, len(means) - 1)
        step = np.where(upper > level, means[upper] - means[level], 1.0)
        frac = np.clip((mean_mcs[rows] - means[level]) / step, 0.0, 1.0)
        low = np.where(upper > level, first_row[upper] - 1, first_row[level])
        high = np.minimum(low + 1, len(_MEAN_SNR_DB) - 1)
        frac = frac[:, None]
        values[rows] = np.concatenate([capped[low], capped[high]], axis=1)
        probability[rows] = np.concatenate([(1 - frac) * _WEIGHTS, frac * _WEIGHTS], axis=1)
        # A mean the table cannot give (link adaptation never picks it: a measured table of
        # another testbed) has no spread to model: the two MCS around it, in proportion.
        outside = rows[(mean_mcs[rows] < means[0] - 1e-9) | (mean_mcs[rows] > means[-1] + 1e-9)]
        below = np.floor(mean_mcs[outside])
        values[outside] = below[:, None]
        values[outside, 1] = np.minimum(below + 1, lte.MAX_MCS)
        probability[outside] = 0.0
        probability[outside, 1] = mean_mcs[outside] - below
        probability[outside, 0] = 1.0 - probability[outside, 1]
    return values, probability


_NODES = np.linspace(-6.0, 6.0, 241)
_WEIGHTS = np.exp(-0.5 * _NODES ** 2) / np.sum(np.exp(-0.5 * _NODES ** 2))
"""A standard normal fade on an even grid (link adaptation is a step function of the SNR,
which Gauss-Hermite nodes would sample too coarsely)."""
_MEAN_SNR_DB = np.arange(-20.0, 50.0, 0.1)
"""The mean SNRs `la_spread` tabulates: far beyond CQI 1 and CQI 15 both ways."""


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
    missing = [c for c in (*measured, "applied_dl_max_mcs", "applied_ul_max_mcs")
               if c not in cells.columns]
    if missing:
        raise FitError(f"the dataset has no column(s) {', '.join(missing)}; fit-power reads "
                       "the cells.parquet of `hil collect`")
    ok = ~cells["failed"].astype(bool) if "failed" in cells.columns else np.ones(len(cells), bool)
    ok &= np.isfinite(cells[list(measured)].astype(float)).all(axis=1)
    return cells[ok]


def fit_power(cells: pd.DataFrame, base: Calibration, *, name: str = "fitted",
              power_column: str = "power_w", seed: int = 0,
              drift: bool | None = None) -> PowerFit:
    """Fit every coefficient the cells determine to the watts in `power_column`; the rest
    are held at `base`'s values. `seed` draws the bootstrap. With `drift` (default: when
    the sweep measured reference cells in several blocks of a condition) the power may also
    drift linearly over the sweep's time, and that drift is fitted and left out of the
    calibration."""
    cells = cells.copy()
    for direction in ("dl", "ul"):  # no grant, no MCS: the value does not matter (a = 0)
        idle = cells[f"{direction}_prb"].astype(float) == 0
        cells.loc[idle, f"{direction}_mcs"] = cells.loc[idle, f"{direction}_mcs"].fillna(0.0)
    usable = usable_cells(cells, power_column)
    a = design_matrix(usable, base)
    y = usable[power_column].to_numpy(float)
    reach = term_reach(base)
    base_values = power_coefficients(base.power)
    hours = hours_since_start(usable) if (
        drift_identifiable(usable) if drift is None else drift) else None
    # The noise: the meter's, the cells' own, or what the model misses when it may use
    # every term the cells can tell apart at all, whichever is largest.
    separable = determined(a, reach, 0.0)
    if len(y) <= len(separable):
        raise FitError(f"{len(y)} usable cells for {len(separable)} coefficients: collect "
                       "more cells (a wider grid, more conditions)")
    _, full = _solver(a, separable, base_values, hours)(np.arange(len(y)), y)
    noise = max(cell_noise_w(usable, power_column), float(np.sqrt(np.mean((y - full) ** 2))))
    admitted = determined(a, reach, noise)
    if not admitted:
        raise FitError(f"a noise of {noise * 1000:.3g} mW leaves no coefficient determined "
                       f"by these {len(y)} cells: collect more cells (a wider grid, more "
                       "dwell rounds)")
    solve = _solver(a, admitted, base_values, hours)
    theta, predicted = solve(np.arange(len(y)), y)
    loose: list[str] = []
    if _contradicted(y, predicted, full, len(separable) - len(admitted),
                     len(y) - len(separable) - (hours is not None)):
        # The cells refute the base's values of the terms held: a base of another testbed.
        # Holding them would bend the determined ones; fit every term the cells can tell
        # apart, and name those not determined to DETERMINED_W.
        loose = [TERMS[i].key for i in separable if i not in admitted]
        admitted = separable
        solve = _solver(a, admitted, base_values, hours)
        theta, predicted = solve(np.arange(len(y)), y)
    keys = [TERMS[i].key for i in admitted] + ([DRIFT_KEY] if hours is not None else [])
    cols = a[:, admitted] if hours is None else np.column_stack([a[:, admitted], hours])
    stderr = dict(zip(keys, (noise * np.sqrt(_variance_factors(cols))).tolist()))
    draws = _bootstrap(solve, y, _strata(usable), seed)
    lower = _lower_bounds(admitted, hours)
    interval = {key: (max(lower[j], min(float(np.percentile(draws[:, j], 2.5)),
                                        float(theta[j] - Z_95 * stderr[key]))),
                      max(float(np.percentile(draws[:, j], 97.5)),
                          float(theta[j] + Z_95 * stderr[key])))
                for j, key in enumerate(keys)}  # within the schema's bounds
    fitted = {key: float(v) for key, v in zip(keys, theta)}
    drift_fit = (fitted.pop(DRIFT_KEY), *interval.pop(DRIFT_KEY)) if hours is not None else None
    stderr.pop(DRIFT_KEY, None)
    held = {t.key: base_values[t.key] for i, t in enumerate(TERMS) if i not in admitted}
    fitted["idle_w"] -= base.power.radio_fixed_w
    low, high = interval["idle_w"]
    interval["idle_w"] = (low - base.power.radio_fixed_w, high - base.power.radio_fixed_w)
    if fitted["idle_w"] <= 0:
        raise FitError(f"the fitted idle power is {fitted['idle_w']:.2f} W after taking the "
                       f"base calibration's radio_fixed_w = {base.power.radio_fixed_w} W: "
                       "the base does not belong to this testbed (pass --base)")
    power = _unflatten(base.power, fitted)
    calibration = base.model_copy(update={"name": name, "power": power, "drift": None})
    return PowerFit(calibration, fitted, stderr, interval, held, y, predicted, len(y),
                    len(cells) - len(usable), noise, drift_fit, loose)


DRIFT_KEY = "drift_w_per_hour"


HELD_P = 0.01
"""The held terms are refuted when holding them raises the residuals this improbably
(an F test of the held values against fitting them)."""


def _contradicted(y: np.ndarray, held_fit: np.ndarray, full_fit: np.ndarray, n_held: int,
                  dof: int) -> bool:
    """Whether the cells refute the held terms' values: the residuals with them held exceed
    those with them fitted by more than noise makes likely (F test at HELD_P)."""
    if n_held <= 0 or dof <= 0:
        return False
    rss_held = float(np.sum((y - held_fit) ** 2))
    rss_full = float(np.sum((y - full_fit) ** 2))
    if rss_full <= 0.0:
        return rss_held > 0.0
    f = ((rss_held - rss_full) / n_held) / (rss_full / dof)
    return bool(f > stats.f.ppf(1.0 - HELD_P, n_held, dof))


def term_reach(base: Calibration) -> np.ndarray:
    """Each term's `reach`; the decoding terms' is the base's shortfall span (dB)."""
    span = base.power.ul_decode.span_db
    return np.array([span if np.isnan(t.reach) else t.reach for t in TERMS])


def cell_noise_w(cells: pd.DataFrame, power_column: str = "power_w") -> float:
    """The noise of a cell's mean power: the median of the cells' own standard errors (their
    spread over the dwell rounds), never below the meter's resolution."""
    var = f"{power_column}_var"
    if var not in cells.columns or "n_samples" not in cells.columns:
        return METER_RESOLUTION_W
    se = np.sqrt(cells[var].astype(float) / cells["n_samples"].clip(lower=1).astype(float))
    finite = se[np.isfinite(se)]
    return max(METER_RESOLUTION_W, float(np.median(finite)) if len(finite) else 0.0)


def determined(a: np.ndarray, reach: np.ndarray, noise_w: float) -> list[int]:
    """The columns of `a` whose coefficients the cells determine (module docstring), in
    `TERMS` order: each is admitted if, with it, every admitted coefficient's 95 % interval
    under `noise_w` moves the power by at most DETERMINED_W within its `reach` (with no
    noise: if the columns can be told apart at all)."""
    admitted: list[int] = []
    for i in range(a.shape[1]):
        if not np.any(a[:, i]):
            continue
        trial = [*admitted, i]
        factors = _variance_factors(a[:, trial])
        if np.all(np.isfinite(factors)) and np.all(
                Z_95 * noise_w * np.sqrt(factors) * reach[trial] <= DETERMINED_W):
            admitted = trial
    return admitted


def _variance_factors(cols: np.ndarray) -> np.ndarray:
    """diag((A^T A)^-1): each coefficient's variance per unit noise variance; inf where the
    columns cannot be told apart (decomposed with unit-norm columns, so scale is no issue)."""
    scale = np.linalg.norm(cols, axis=0)
    _, singular, vt = np.linalg.svd(cols / scale, full_matrices=False)
    if singular[-1] < 1e-9 * singular[0]:
        return np.full(cols.shape[1], np.inf)
    return np.sum((vt.T / singular) ** 2, axis=1) / scale ** 2


_Solve = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _solver(a: np.ndarray, admitted: list[int], base_values: dict[str, float],
            hours: np.ndarray | None = None) -> _Solve:
    """A bounded least-squares fit of the admitted coefficients (and a drift in W per hour
    of `hours`, if given) on chosen rows, the held ones at the base's values: (rows, watts)
    -> (coefficients, power predicted for all)."""
    fixed = np.array([base_values[t.key] if i not in admitted else 0.0
                      for i, t in enumerate(TERMS)])
    held_w = a @ fixed
    cols = a[:, admitted] if hours is None else np.column_stack([a[:, admitted], hours])
    lower = _lower_bounds(admitted, hours)
    bounds = (lower, np.full(len(lower), np.inf))

    def solve(rows: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = lsq_linear(cols[rows], (y - held_w)[rows], bounds=bounds).x
        return theta, cols @ theta + held_w

    return solve


def _lower_bounds(admitted: list[int], hours: np.ndarray | None) -> np.ndarray:
    """The schema's lower bound of each fitted coefficient, and none for a drift."""
    return np.array([TERMS[i].lower for i in admitted] + ([-np.inf] if hours is not None
                                                          else []))


def _strata(cells: pd.DataFrame) -> list[np.ndarray]:
    """Row numbers by dataset and condition (a resample keeps each one's share)."""
    keys = [c for c in ("dataset", "condition") if c in cells.columns]
    if not keys:
        return [np.arange(len(cells))]
    codes = pd.factorize(cells[keys].astype(str).agg("/".join, axis=1))[0]
    return [np.flatnonzero(codes == c) for c in np.unique(codes)]


def _bootstrap(solve: _Solve, y: np.ndarray, strata: list[np.ndarray], seed: int) -> np.ndarray:
    """The coefficients of BOOTSTRAP_DRAWS fits to cells resampled within each stratum."""
    rng = np.random.default_rng(seed)
    return np.array([
        solve(np.concatenate([rng.choice(s, len(s)) for s in strata]), y)[0]
        for _ in range(BOOTSTRAP_DRAWS)])


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
        return last_attempts(sweep.read_rounds(CELL_SCHEMA)).to_pandas(), path
    if path.suffix == ".parquet" and path.exists():
        return last_attempts(pq.read_table(path)).to_pandas(), path.parent
    if path.suffix == ".csv":
        raise FitError(f"{path}: fit-power reads a sweep's cells.parquet, which has the PRBs "
                       "and MCS used; the dataset_dlul layout has only the caps")
    raise FitError(f"{path}: not found; give a `hil collect` sweep folder or its cells.parquet")
