"""The link adaptation a testbed measured: the MCS it settles on per CQI, per direction.

From a dataset's cells whose MCS cap in a direction is the grid's highest and whose buffer
in that direction stayed full (demand above 1.5 times the rate: with a few blocks a second
the outer loop does not settle where it does under a full buffer), grouped by
dataset, condition and DL gain (DL) or UL PRB ratio (UL: the UE's fixed total power makes
the SNR of a grant depend on its size), each group gives one point: the median reported
CQI (UL: the CQI of the median UL SNR, on the channel's CQI scale) and the median MCS used. A point
whose MCS sits at the cap is censored: link adaptation would have gone at least that high.
The BLER it settles at is the median over the uncensored points (at least `MIN_BLER`).
The table (`hil.base.model.LinkAdaptation`) runs through the uncensored points,
from MCS 0 at CQI 0, held flat beyond the last point (or at the censoring cap, if that is
higher), and is made non-decreasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hil.base import lte
from hil.base.model import ChannelParams, LinkAdaptation, snr_to_cqi
from tools.fit_power.fit import FitError

CQI_GRID = np.arange(16, dtype=float)


MIN_BLER = 0.001
"""A BLER measured as 0 (srsRAN's UL) is held here: the model's logistic needs a target."""


@dataclass(frozen=True)
class LinkPoint:
    direction: str
    cqi: float
    mcs: float
    censored: bool
    cells: int
    bler: float


def _measured(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that were measured, each with the dataset it came from (`dataset`; one
    unnamed dataset when the column is missing)."""
    cells = cells[~cells["failed"].astype(bool)]
    return cells if "dataset" in cells.columns else cells.assign(dataset="")


def _full_buffer(cells: pd.DataFrame, direction: str) -> pd.Series:
    """Cells whose demand in `direction` stayed above 1.5 times what the caps let through."""
    rate = cells[f"{direction}_rate_mbps"].astype(float)
    return cells[f"{direction}_demand_mbps"].astype(float) > 1.5 * rate


def link_points(cells: pd.DataFrame, channel: ChannelParams | None = None) -> list[LinkPoint]:
    """One point per (dataset, condition[, DL gain]) and direction; `cells` may hold several
    datasets told apart by a `dataset` column. UL SNRs go on `channel`'s CQI scale."""
    cells = _measured(cells)
    points = []
    for direction in ("dl", "ul"):
        cap = cells[f"policy_{direction}_max_mcs"].astype(float)
        rate = cells[f"{direction}_rate_mbps"].astype(float)
        top = cells[(cap == cap.max()) & (rate > 0) & _full_buffer(cells, direction)]
        keys = ["dataset", "condition",
                "policy_dl_gain_db" if direction == "dl" else "policy_ul_prb_ratio"]
        for _, group in top.groupby(keys):
            mcs = float(group[f"{direction}_mcs"].median())
            cqi = (float(group["dl_cqi"].median()) if direction == "dl"
                   else float(snr_to_cqi(group["ul_snr_db"].median(), channel)))
            censored = mcs >= float(cap.max()) - 0.5
            points.append(LinkPoint(direction, cqi, mcs, censored, len(group),
                                    float(group[f"{direction}_bler"].median())))
    return points


NUC_DB_PER_CQI = (2.0, 2.0)
"""dB per CQI step below and above the measured points (the NUC anchors' end slopes,
`hil.base.lte`): how the scale is continued where nothing was measured."""


def fit_cqi_scale(cells: pd.DataFrame) -> tuple[float, ...] | None:
    """The SNR at which the UE reports each CQI 0..15, from cells whose condition set the
    DL SNR (srsRAN's channel emulator): per (dataset, condition, DL gain) the SNR plus the
    gain against the median reported CQI, half a step up (a report is the CQI's integer
    part). Reports at 15 only bound it (the scale saturates) and are left out. None when no
    cell has a DL SNR (an emulated dataset: the NUC anchors stay)."""
    if "cond_dl_snr_db" not in cells.columns:
        return None
    cells = _measured(cells)
    cells = cells[cells["cond_dl_snr_db"].notna() & (cells["dl_cqi"].astype(float) > 0)]
    points = []
    for (_, snr, gain), group in cells.groupby(["dataset", "cond_dl_snr_db",
                                                "policy_dl_gain_db"]):
        cqi = float(group["dl_cqi"].median()) + 0.5
        if cqi < 15.0:
            points.append((float(snr) + float(gain), cqi))
    if len(points) < 2:
        return None
    snr, cqi = (np.array(v) for v in zip(*sorted(points)))
    cqi = np.maximum.accumulate(cqi)
    keep = np.concatenate([[True], np.diff(cqi) > 0])
    snr, cqi = snr[keep], cqi[keep]
    grid = np.interp(CQI_GRID, cqi, snr)
    below, above = NUC_DB_PER_CQI
    grid = np.where(cqi[0] > CQI_GRID, snr[0] - (cqi[0] - CQI_GRID) * below, grid)
    grid = np.where(cqi[-1] < CQI_GRID, snr[-1] + (CQI_GRID - cqi[-1]) * above, grid)
    return tuple(float(v) for v in grid)


def ul_snr_per_prb_slope(cells: pd.DataFrame) -> float:
    """How the UL SNR the eNB measures moves with 10 log10(PRBs granted), within each
    condition under a full UL buffer (demand above what the caps let through): -1 when the
    UE sends every grant at one total power (srsUE: no UL power control), 0 with power
    control that keeps the power per PRB. NaN without such cells."""
    cells = _measured(cells)
    cells = cells[cells["ul_prb"].astype(float) > 0]
    full = cells[_full_buffer(cells, "ul")]
    slopes, weights = [], []
    for _, group in full.groupby(["dataset", "condition"]):
        x = 10 * np.log10(group["ul_prb"].to_numpy(float))
        if len(group) >= 3 and np.ptp(x) > 3:
            slopes.append(np.polyfit(x, group["ul_snr_db"].to_numpy(float), 1)[0])
            weights.append(len(group))
    return float(np.average(slopes, weights=weights)) if slopes else float("nan")


def ul_grant_limit_prb(cells: pd.DataFrame) -> float | None:
    """The most PRBs the eNB granted the UE under an uncapped UL PRB ratio and a full UL
    buffer: the median over such cells (srsENB grants ~41-44 of 50 over ZMQ, not the 48
    outside PUCCH). None without such cells."""
    cells = _measured(cells)
    ratio = cells["policy_ul_prb_ratio"].astype(float)
    full = cells[(ratio == ratio.max()) & _full_buffer(cells, "ul")]
    return float(full["ul_prb"].median()) if len(full) else None


def fit_link_adaptation(cells: pd.DataFrame, source: str,
                        channel: ChannelParams | None = None) -> LinkAdaptation:
    points = link_points(cells, channel)
    tables, blers = {}, {}
    for direction in ("dl", "ul"):
        mine = sorted((p for p in points if p.direction == direction), key=lambda p: p.cqi)
        free = [p for p in mine if not p.censored]
        if not free:
            raise FitError(f"no {direction.upper()} cell where link adaptation, not the cap, "
                           "set the MCS: collect cells with the highest MCS cap under a poorer "
                           "channel")
        cqi = np.array([0.0] + [p.cqi for p in free])
        mcs = np.array([0.0] + [p.mcs for p in free])
        table = np.interp(CQI_GRID, cqi, mcs)  # flat beyond the last point
        for p in mine:
            if p.censored:  # at least the cap from that CQI on
                table = np.where(np.floor(p.cqi) <= CQI_GRID, np.maximum(table, p.mcs), table)
        tables[direction] = tuple(float(v) for v in np.maximum.accumulate(
            np.clip(table, 0, lte.MAX_MCS)))
        blers[direction] = max(float(np.median([p.bler for p in free])), MIN_BLER)
    described = "; ".join(f"{p.direction} CQI {p.cqi:.1f} -> MCS {p.mcs:.1f}"
                          f"{' (at the cap)' if p.censored else ''}" for p in points)
    return LinkAdaptation(dl_mcs_by_cqi=tables["dl"], ul_mcs_by_cqi=tables["ul"],
                          dl_bler=blers["dl"], ul_bler=blers["ul"],
                          source=f"{source}: {described}")
