"""The thresholds a policy sets, with their limits: the one definition that the policy
space (agents/policy_space.py), the round schema (hil/schema.py), the rtctl protocol module
(drivers/rtctl/messages.py) and the emulator's caps (hil/base/model.py, through the same
LTE limits) read.

The order is the paper's, x = (P_d, M_d, B_d, M_u, B_u) (Ayala-Romero et al., BSvBS,
Sec. III): DL transmit gain, DL maximum MCS, DL maximum share of PRBs, UL maximum MCS, UL
maximum share of PRBs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

MAX_MCS = 28
"""Highest LTE MCS index for data, DL and UL (3GPP TS 36.213 tables 7.1.7.1-1 and
8.6.1-1; 29-31 only signal retransmissions)."""
MAX_PRB = 110
"""Most PRBs of an LTE carrier (3GPP TS 36.213 table 7.1.7.2.1-1 has columns 1..110)."""
MIN_GAIN_DB = -40.0
"""Lowest DL gain a vBS accepts: 40 dB below full power is already below any CQI 1."""


@dataclass(frozen=True)
class Threshold:
    """One threshold: its key in the protocol, its values, and what null means there."""

    name: str
    integer: bool
    low: float
    high: float
    unit: str
    meaning: str
    null_means: str = "uncapped"

    def describe(self) -> str:
        """Its values, as an error message names them: `an integer 0..28, or null (uncapped)`."""
        values = (f"an integer {self.low:g}..{self.high:g}" if self.integer
                  else f"a number {self.low:g}..{self.high:g}")
        unit = f" ({self.unit})" if self.unit not in ("1", "") else ""
        return f"{values}{unit}, or null ({self.null_means})"

    def check(self, value: Any) -> int | float:
        """`value` as a plain int or float; TypeError or ValueError saying what it must be
        (the caller names the threshold)."""
        if isinstance(value, bool) or not isinstance(
                value, numbers.Integral if self.integer else numbers.Real):
            raise TypeError(f"must be {'an integer' if self.integer else 'a number'}, got "
                            f"{value!r}")
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"must be in {self.low:g}..{self.high:g}, got {value!r}")
        return int(value) if self.integer else float(value)


POLICY = (
    Threshold("dl_gain_db", False, MIN_GAIN_DB, 0.0, "dB",
              "DL cell gain relative to full power", null_means="0 dB"),
    Threshold("dl_max_mcs", True, 0, MAX_MCS, "1", "DL maximum MCS"),
    Threshold("dl_prb_ratio", False, 0.0, 1.0, "1", "DL maximum share of PRBs"),
    Threshold("ul_max_mcs", True, 0, MAX_MCS, "1", "UL maximum MCS"),
    Threshold("ul_prb_ratio", False, 0.0, 1.0, "1", "UL maximum share of PRBs"),
)
"""A policy's thresholds, in the paper's order."""

POLICY_FIELDS: tuple[str, ...] = tuple(t.name for t in POLICY)
"""Their keys, in the paper's order."""

USER_PRB = Threshold("dl_max_prb", True, 0, MAX_PRB, "PRB", "PRBs per TTI a user may get")
"""A per-user PRB cap (`thresholds.ue.<rnti>.dl_max_prb`; `ul_max_prb` alike)."""
