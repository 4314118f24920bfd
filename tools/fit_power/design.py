"""What a sweep's plan will let `hil fit-power` determine, from the model before measuring.

The plan's cells are predicted with the testbed's own link and power model (its
calibration): each policy under each condition gives the airtime, MCS and UL SNR a fit
reads, and the fit's own rule (`tools.fit_power.fit.determined`) says which coefficients
those cells determine under the meter's resolution alone, the best a measurement can do.
A coefficient this check calls held stays held on the testbed; one it calls determined may
still be held if the measurements are noisier or the model misses more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hil.base.model import (
    Calibration,
    cqi_to_snr,
    expected_round,
    make_caps,
    snr_to_cqi,
    ul_grant_snr_gain_db,
)
from hil.base.scenarios import Environment
from hil.base.thresholds import POLICY_FIELDS
from tools.collect.plan import SweepPlan
from tools.fit_power.fit import METER_RESOLUTION_W, TERMS, design_matrix, determined, term_reach

TOP_CQI = 15.0  # a condition that leaves the channel as the testbed has it: assumed clear


def predicted_cells(plan: SweepPlan, cal: Calibration) -> pd.DataFrame:
    """One row per policy and condition: what the model expects a cell to measure."""
    policy = plan.space.arrays()
    caps = make_caps(cal.cell, **policy)
    frames = []
    for index, condition in enumerate(plan.conditions):
        dl_cqi = _cqi(condition.dl_cqi, condition.dl_snr_db, cal)
        ul_cqi = _cqi(condition.ul_cqi, condition.ul_snr_db, cal)
        env = Environment(*(np.array([v]) for v in (condition.dl_load_mbps,
                                                    condition.ul_load_mbps, dl_cqi, ul_cqi)))
        outcome = expected_round(caps, env, cal)
        ul_snr = (cqi_to_snr(ul_cqi, cal.channel) + cal.channel.ul_snr_offset_db
                  + ul_grant_snr_gain_db(caps.ul_max_prb, cal.cell, cal.channel))
        frames.append(pd.DataFrame({
            "condition": index,
            "dl_prb": outcome.dl_airtime * cal.cell.nof_prb,
            "ul_prb": outcome.ul_airtime * cal.cell.nof_prb,
            "dl_mcs": outcome.dl_mcs.astype(float), "ul_mcs": outcome.ul_mcs.astype(float),
            "ul_snr_db": np.broadcast_to(ul_snr, outcome.dl_mcs.shape),
            "power_w": outcome.power_w,
            **{f"applied_{name}": policy[name] for name in POLICY_FIELDS},
        }))
    return pd.concat(frames, ignore_index=True)


def plan_determines(plan: SweepPlan, cal: Calibration) -> tuple[list[str], dict[str, str]]:
    """The coefficients the plan's cells would determine, and the others with what each
    needs."""
    cells = predicted_cells(plan, cal)
    admitted = determined(design_matrix(cells, cal), term_reach(cal), METER_RESOLUTION_W)
    return ([TERMS[i].key for i in admitted],
            {t.key: t.needs for i, t in enumerate(TERMS) if i not in admitted})


def _cqi(cqi: float | None, snr_db: float | None, cal: Calibration) -> float:
    if cqi is not None:
        return cqi
    return TOP_CQI if snr_db is None else float(snr_to_cqi(snr_db, cal.channel))
