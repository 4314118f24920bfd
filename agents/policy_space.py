"""The finite grid of threshold policies that the agents choose from.

A policy is x = (P_d, M_d, B_d, M_u, B_u) in the paper's order: DL transmit gain, DL maximum
MCS, DL maximum share of PRBs, UL maximum MCS, UL maximum share of PRBs. The grid is the
Cartesian product of one tuple of values per dimension; agents only see the flat index
(C order over those five dimensions), the engine turns it back into thresholds.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from hil.base.thresholds import POLICY


class Policy(NamedTuple):
    """One threshold policy, in the paper's order x = (P_d, M_d, B_d, M_u, B_u): the fields
    of `hil.base.thresholds.POLICY` (a test holds the two to the same names and order)."""

    dl_gain_db: float
    dl_max_mcs: int
    dl_prb_ratio: float
    ul_max_mcs: int
    ul_prb_ratio: float

    def to_thresholds(self) -> dict[str, Any]:
        """The thresholds as the control protocol names them, in plain Python types."""
        return {t.name: int(value) if t.integer else float(value)
                for t, value in zip(POLICY, self)}  # checked when the space was made


@dataclass(frozen=True)
class PolicySpace:
    """The values allowed in each dimension; the policies are all their combinations.

    Any sequence is accepted per field (e.g. a YAML list) and stored as a tuple of plain
    Python numbers. Invalid values raise ValueError naming the field.
    """

    dl_gain_db: tuple[float, ...]
    dl_max_mcs: tuple[int, ...]
    dl_prb_ratio: tuple[float, ...]
    ul_max_mcs: tuple[int, ...]
    ul_prb_ratio: tuple[float, ...]

    def __post_init__(self) -> None:
        for threshold in POLICY:  # the limits are the protocol's (hil/base/thresholds.py)
            name = threshold.name
            try:
                values = tuple(threshold.check(v) for v in getattr(self, name))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"policy space {name}: {exc}") from None
            if not values:
                raise ValueError(f"policy space {name}: needs at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"policy space {name}: values must be unique, got {values}")
            # The dataclass is frozen; the normalised tuple replaces the input once, here.
            object.__setattr__(self, name, values)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """Number of values per dimension, in the order of `Policy`."""
        return tuple(len(getattr(self, f.name)) for f in fields(self))  # type: ignore[return-value]

    @property
    def size(self) -> int:
        """Number of policies, |X|."""
        return math.prod(self.shape)

    def policy(self, index: int) -> Policy:
        """The policy at a flat index (C order over `shape`)."""
        index = operator.index(index)
        if not 0 <= index < self.size:
            raise IndexError(f"policy index {index} is not in 0..{self.size - 1}")
        coords = np.unravel_index(index, self.shape)
        return Policy(*(getattr(self, f.name)[int(c)] for f, c in zip(fields(self), coords)))

    def index(self, policy: Policy) -> int:
        """The flat index of a policy of this space; ValueError naming the first value not in it."""
        coords = []
        for f, value in zip(fields(self), policy):
            allowed = getattr(self, f.name)
            if value not in allowed:
                raise ValueError(f"policy {f.name}={value!r} is not in this space's {allowed}")
            coords.append(allowed.index(value))
        return int(np.ravel_multi_index(coords, self.shape))

    def arrays(self) -> dict[str, np.ndarray]:
        """Each dimension's value for every policy, in index order, for vectorised models."""
        grids = np.meshgrid(
            *(np.asarray(getattr(self, f.name)) for f in fields(self)), indexing="ij"
        )
        return {f.name: grid.ravel() for f, grid in zip(fields(self), grids)}


PAPER_SPACE = PolicySpace(
    dl_gain_db=(0.0,),  # P_d = {3 W}: the B210 at full gain
    dl_max_mcs=(0, 5, 11, 16, 22, 27),
    dl_prb_ratio=(0.0, 0.2, 0.6, 0.8, 1.0),
    ul_max_mcs=(0, 5, 9, 14, 18, 23),
    ul_prb_ratio=(0.01, 0.2, 0.4, 0.6, 0.8, 1.0),
)
"""The evaluation grid of the BSvBS paper, |X| = 1080."""

PAPER_SUBSET_16 = PolicySpace(
    dl_gain_db=(0.0,),
    dl_max_mcs=(5, 27),
    dl_prb_ratio=(0.2, 1.0),
    ul_max_mcs=(5, 23),
    ul_prb_ratio=(0.2, 1.0),
)
"""Two values per MCS and PRB axis, |X| = 16, as in the paper's Sec. VI-C. The paper does
not list its values; these are ours: the lowest non-zero and the highest of each axis of
the paper's grid (a zero cap would starve a direction)."""

NAMED_SPACES = {"paper": PAPER_SPACE, "paper16": PAPER_SUBSET_16}
"""Spaces a config's `policy_space` or `hil replay --policy-space` may name."""
