"""Cells in the column layout of the public `dataset_dlul.csv`, so other tools can read them.

The layout (Ayala-Romero et al.'s public dataset; `tools/replay/dataset.py` reads it) has
one row per configuration.
Mapping from `cells.parquet`:

| dataset_dlul | from the cell | unit |
|---|---|---|
| selected_mcs_dl/ul, selected_airtime_dl/ul | the thresholds the vBS confirmed | 1 |
| txgain_dl | `applied_dl_gain_db` (<= 0, relative to full power; the paper's: USRP gain) | dB |
| txgain_ul | empty: the UE's gain is not controlled | |
| traffic_load_dl/ul | the load offered (condition) | Mb/s |
| thr_dl/ul, bler_dl/ul, cqi_dl | means over the dwell rounds | Mb/s, 1, 1 |
| cqi_ul | the CQI of the mean UL SNR | 1 |
| mean_snr_ul | mean UL SNR | dB |
| pm_power, pm_var | meter power: mean, variance across dwell rounds | W, W^2 |
| rapl_power | RAPL package power (empty where the host has none) | W |
| failed_experiment | 1 if a dwell round was invalid | |

The CSV carries no units; `cells.parquet` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hil.base import lte

DLUL_COLUMNS = {
    "selected_mcs_dl": "applied_dl_max_mcs", "selected_mcs_ul": "applied_ul_max_mcs",
    "selected_airtime_dl": "applied_dl_prb_ratio", "selected_airtime_ul": "applied_ul_prb_ratio",
    "txgain_dl": "applied_dl_gain_db", "traffic_load_dl": "cond_dl_load_mbps",
    "traffic_load_ul": "cond_ul_load_mbps", "thr_dl": "dl_rate_mbps", "thr_ul": "ul_rate_mbps",
    "bler_dl": "dl_bler", "bler_ul": "ul_bler", "cqi_dl": "dl_cqi", "mean_snr_ul": "ul_snr_db",
    "pm_power": "power_w", "pm_var": "power_w_var", "rapl_power": "rapl_power_w",
}


def to_dlul(cells: pd.DataFrame) -> pd.DataFrame:
    """One dataset_dlul row per cell, in measuring order."""
    cells = cells.sort_values("order")
    out = pd.DataFrame({column: cells[source].to_numpy() for column, source in
                        DLUL_COLUMNS.items()})
    # A policy the vBS never confirmed (every round invalid) keeps the one requested.
    for column, source in DLUL_COLUMNS.items():
        if source.startswith("applied_"):
            requested = cells[source.replace("applied_", "policy_")].to_numpy()
            out[column] = out[column].where(out[column].notna(), requested)
    snr = cells["ul_snr_db"].to_numpy(dtype=float)
    out["cqi_ul"] = np.where(np.isfinite(snr), lte.snr_db_to_cqi(np.nan_to_num(snr)), np.nan)
    out["txgain_ul"] = np.nan
    out["failed_experiment"] = cells["failed"].astype(int).to_numpy()
    order = ["selected_mcs_dl", "selected_mcs_ul", "selected_airtime_dl", "selected_airtime_ul",
             "txgain_dl", "txgain_ul", "traffic_load_dl", "traffic_load_ul", "thr_dl", "thr_ul",
             "bler_dl", "bler_ul", "cqi_dl", "cqi_ul", "mean_snr_ul", "pm_power", "pm_var",
             "rapl_power", "failed_experiment"]
    return out[order]


def write_dlul_csv(cells: pd.DataFrame, path: Path) -> Path:
    """Write the export (replaced atomically: a reader never sees half a file)."""
    tmp = path.with_suffix(".csv.tmp")
    to_dlul(cells).to_csv(tmp, index=False, na_rep="")
    tmp.replace(path)
    return path
