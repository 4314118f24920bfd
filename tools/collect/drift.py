"""The power drift a sweep saw: its reference cells measure one policy again at the start of
every block, so between them only the condition (a level each) and time change. A warming
BBU or a meter's creeping offset shows as a slope in W per hour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Drift:
    w_per_hour: float
    low: float  # 95 % interval
    high: float
    references: int

    def describe(self) -> str:
        return (f"{self.w_per_hour * 1000:+.1f} mW/h (95 %: {self.low * 1000:+.1f} .. "
                f"{self.high * 1000:+.1f}) from {self.references} reference cells")


def hours_since_start(cells: pd.DataFrame) -> np.ndarray:
    """When each cell was measured (the middle of its dwell rounds; sweeps before that was
    recorded: its start), in hours from the first cell's."""
    column = "dwell_mid_utc" if "dwell_mid_utc" in cells.columns else "time_utc"
    t = pd.to_datetime(cells[column].fillna(cells["time_utc"]), utc=True)
    return ((t - t.min()).dt.total_seconds() / 3600.0).to_numpy(float)


def drift_identifiable(cells: pd.DataFrame) -> bool:
    """Whether the cells can tell drift from the conditions: some condition was measured in
    blocks at different times (the reference cells of a drift-aware sweep say so)."""
    if "reference_block" not in cells.columns:
        return False
    refs = cells[cells["reference_block"].notna()]
    return bool((refs.groupby("condition")["reference_block"].nunique() > 1).any())


def reference_drift(cells: pd.DataFrame, power_column: str = "power_w") -> Drift | None:
    """Least squares of the reference cells' power on time, with a level per condition;
    None without enough of them (two blocks of some condition at different times)."""
    if "reference_block" not in cells.columns:
        return None
    refs = cells[cells["reference_block"].notna() & ~cells["failed"].astype(bool)]
    refs = refs[np.isfinite(refs[power_column].astype(float))]
    conditions = pd.factorize(refs["condition"])[0]
    n_levels = int(conditions.max()) + 1 if len(refs) else 0
    if len(refs) < n_levels + 2:
        return None
    x = np.column_stack([hours_since_start(refs), np.eye(n_levels)[conditions]])
    y = refs[power_column].to_numpy(float)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(y) - x.shape[1]
    sigma2 = float(np.sum((y - x @ beta) ** 2)) / dof
    se = float(np.sqrt(sigma2 * np.linalg.pinv(x.T @ x)[0, 0]))
    from scipy import stats  # 2 s to import: only a drift fit needs it, not every sweep

    half = float(stats.t.ppf(0.975, dof)) * se
    return Drift(float(beta[0]), float(beta[0] - half), float(beta[0] + half), len(y))
