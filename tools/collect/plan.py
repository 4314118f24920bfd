"""What a sweep measures, and in which order: policies x conditions x repetitions.

A sweep holds every *cell* (one policy, under one condition, one repetition) for
`warmup_rounds + dwell_rounds` rounds; the warm-up rounds are discarded (queues and link
adaptation still carry the previous cell's policy), the dwell rounds are averaged. A block
(below) starts with `block_warmup_rounds` more, discarded too: a testbed just brought up
is still settling (srsRAN's outer-loop link adaptation climbs about one MCS step a second
from a fresh attach).

Conditions are what the policy does not set: the offered DL/UL load and the channel: on
the emulated vBS its mean DL/UL CQI, on srsRAN the SNR its channel emulators set (DL: the
eNB's AWGN, which the UE's CQI follows; UL: the noise floor under the UE's signal).
Changing them means restarting a process (the emulated vBS's trace, srsRAN's programs),
so cells are measured in *blocks*, one per
condition: the order of the blocks is random, and so is the order of the cells within a
block (repetitions of a policy included), both drawn from `seed`. The same plan always
gives the same order, which is what lets a restarted sweep skip the cells it finished.

`--grid` items are ``axis=v1,v2,...`` for any policy axis (`POLICY_FIELDS`) or condition
axis (`CONDITION_AXES`), or ``paper`` for the paper's 1080 policies. Axes not given keep the
config's policy space and the default condition (the paper's scenario A: 32/23 Mb/s,
CQI 15).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from agents.policy_space import PAPER_SPACE, PolicySpace
from hil.base.errors import HilError
from hil.base.thresholds import POLICY_FIELDS

CONDITION_AXES = ("dl_load_mbps", "ul_load_mbps", "dl_cqi", "ul_cqi", "dl_snr_db", "ul_snr_db")
CHANNEL_AXES = {"cqi": ("dl_cqi", "ul_cqi"), "snr": ("dl_snr_db", "ul_snr_db")}
"""Which channel axes a testbed can set: the emulated vBS CQIs, srsRAN's emulators SNRs."""
DEFAULT_CONDITION = {"dl_load_mbps": 32.0, "ul_load_mbps": 23.0, "dl_cqi": 15.0, "ul_cqi": 15.0,
                     "dl_snr_db": None, "ul_snr_db": None}
"""The paper's scenario A: the cell's capacity offered both ways over a perfect channel
(srsRAN: its config's channel emulators)."""


class PlanError(HilError):
    """A grid or sweep option that cannot be measured as given."""


@dataclass(frozen=True)
class Condition:
    """What a block of cells faces; a channel of None is left as the testbed has it."""

    dl_load_mbps: float
    ul_load_mbps: float
    dl_cqi: float | None
    ul_cqi: float | None
    dl_snr_db: float | None = None
    ul_snr_db: float | None = None

    def label(self) -> str:
        parts = [f"dl {self.dl_load_mbps:g} Mb/s", f"ul {self.ul_load_mbps:g} Mb/s"]
        if self.dl_cqi is not None:
            parts.append(f"cqi {self.dl_cqi:g}/{self.ul_cqi:g}")
        for name, value in (("dl snr", self.dl_snr_db), ("ul snr", self.ul_snr_db)):
            if value is not None:
                parts.append(f"{name} {value:g} dB")
        return ", ".join(parts)


@dataclass(frozen=True)
class Cell:
    """One measurement: `policy_index` of the plan's space under condition `condition`; a
    reference cell (`reference_block`: its block's number) measures the plan's reference
    policy again at the start of a block, so that the sweep sees drift over time."""

    order: int  # position in the plan's measuring order
    condition: int
    policy_index: int
    rep: int
    reference_block: int | None = None

    @property
    def cell_id(self) -> str:
        if self.reference_block is not None:
            return f"c{self.condition}-p{self.policy_index}-ref{self.reference_block}"
        return f"c{self.condition}-p{self.policy_index}-r{self.rep}"


@dataclass(frozen=True)
class SweepPlan:
    space: PolicySpace
    conditions: tuple[Condition, ...]
    reps: int
    dwell_rounds: int
    warmup_rounds: int
    seed: int
    block_warmup_rounds: int = 0
    blocks_per_condition: int = 1
    reference_policy: int | None = None

    def __post_init__(self) -> None:
        for name in ("reps", "dwell_rounds", "blocks_per_condition"):
            if getattr(self, name) < 1:
                raise PlanError(f"--{name.replace('_', '-')} must be at least 1")
        if self.reference_policy is not None and not (
                0 <= self.reference_policy < self.space.size):
            raise PlanError(f"--reference-policy must be a policy index 0..{self.space.size - 1}"
                            f", got {self.reference_policy}")
        if self.warmup_rounds < 0 or self.block_warmup_rounds < 0:
            raise PlanError("--warmup-rounds and --block-warmup-rounds must be 0 or more")

    @property
    def rounds_per_cell(self) -> int:
        return self.warmup_rounds + self.dwell_rounds

    @property
    def n_blocks(self) -> int:
        return len(self.conditions) * self.blocks_per_condition

    @property
    def n_cells(self) -> int:
        """Every cell, the reference cells (one per block) included."""
        references = self.n_blocks if self.reference_policy is not None else 0
        return self.space.size * len(self.conditions) * self.reps + references

    def blocks(self) -> list[list[Cell]]:
        """Every cell in measuring order (deterministic in `seed`): each condition's cells
        in random order, dealt into `blocks_per_condition` blocks, and all blocks in random
        order, so that drift over the sweep's time is not one condition's; each block starts
        with a reference cell if the plan has a reference policy."""
        rng = np.random.default_rng(self.seed)
        dealt = []
        for condition in rng.permutation(len(self.conditions)):
            pairs = [(p, r) for p in range(self.space.size) for r in range(self.reps)]
            shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
            dealt += [(int(condition), shuffled[k::self.blocks_per_condition])
                      for k in range(self.blocks_per_condition)]
        if self.blocks_per_condition > 1:
            dealt = [dealt[i] for i in rng.permutation(len(dealt))]
        order = itertools.count()
        blocks = []
        for number, (condition, pairs) in enumerate(dealt):
            reference = ([Cell(next(order), condition, self.reference_policy, 0, number)]
                         if self.reference_policy is not None else [])
            blocks.append(reference + [Cell(next(order), condition, *pair) for pair in pairs])
        return [b for b in blocks if b]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `from_dict(to_dict())` gives an equal plan (sweep.json keeps it)."""
        return {"space": {f.name: list(getattr(self.space, f.name)) for f in fields(self.space)},
                "conditions": [asdict(c) for c in self.conditions], "reps": self.reps,
                "dwell_rounds": self.dwell_rounds, "warmup_rounds": self.warmup_rounds,
                "seed": self.seed, "block_warmup_rounds": self.block_warmup_rounds,
                **({"blocks_per_condition": self.blocks_per_condition}
                   if self.blocks_per_condition != 1 else {}),
                **({"reference_policy": self.reference_policy}
                   if self.reference_policy is not None else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepPlan:
        return cls(PolicySpace(**data["space"]), tuple(Condition(**c) for c in data["conditions"]),
                   data["reps"], data["dwell_rounds"], data["warmup_rounds"], data["seed"],
                   data.get("block_warmup_rounds", 0), data.get("blocks_per_condition", 1),
                   data.get("reference_policy"))


def parse_grid(items: list[str], base: PolicySpace, *, channel: str,
               rows: list[str] = ()) -> tuple[PolicySpace, tuple[Condition, ...]]:
    """The policy space and conditions of `--grid` items over `base` (the config's space).

    `channel`: the channel axes the testbed can set, `cqi` (the emulated vBS) or `snr`
    (srsRAN's channel emulators); the other kind is refused, and a testbed's channel that
    no axis sets is left as its config has it. `rows` (`--condition` items,
    ``axis=v,axis=v``) give the conditions one by one instead of as a product of axes, for
    conditions that go together (a poor channel with a light load).
    """
    policy: dict[str, tuple[float, ...]] = {}  # MCS values stay int (PolicySpace checks)
    condition: dict[str, tuple[float, ...]] = {}
    for item in items:
        if item == "paper":
            policy.update({f.name: getattr(PAPER_SPACE, f.name) for f in fields(PAPER_SPACE)})
            continue
        axis, sep, values = item.partition("=")
        if not sep or not values:
            raise PlanError(f"--grid {item!r}: write axis=v1,v2,... (or `paper`)")
        try:
            numbers = tuple(_number(v) for v in values.split(","))
        except ValueError:
            raise PlanError(f"--grid {item!r}: values must be numbers separated by "
                            "commas") from None
        if axis in POLICY_FIELDS:
            policy[axis] = numbers
        elif axis in CONDITION_AXES:
            if rows:
                raise PlanError(f"--grid {axis}: give conditions either as --grid axes or as "
                                "--condition rows, not both")
            _check_condition_values(f"--grid {axis}", axis, numbers)
            if len(set(numbers)) != len(numbers):
                raise PlanError(f"--grid {axis}: values must be unique, got {values}")
            condition[axis] = numbers
        else:
            raise PlanError(f"--grid {item!r}: unknown axis {axis!r}; policy axes: "
                            f"{', '.join(POLICY_FIELDS)}; condition axes: "
                            f"{', '.join(CONDITION_AXES)}")
    listed = [_condition_row(row) for row in rows]
    given = {axis for row in listed for axis in row} | set(condition)
    for kind, axes in CHANNEL_AXES.items():
        refused = [a for a in axes if a in given and kind != channel]
        if refused:
            settable = " and ".join(CHANNEL_AXES[channel])
            raise PlanError(f"--grid {refused[0]}: this testbed sets its channel by {settable} "
                            f"(the emulated vBS by CQI, srsRAN's channel emulators by SNR)")
    try:
        space = PolicySpace(**{f.name: policy.get(f.name, getattr(base, f.name))
                               for f in fields(base)})
    except ValueError as exc:
        raise PlanError(f"--grid: {exc}") from None
    defaults = {a: v if a not in CHANNEL_AXES["cqi"] or channel == "cqi" else None
                for a, v in DEFAULT_CONDITION.items()}
    if listed:
        conditions = tuple(Condition(**{**defaults, **row}) for row in listed)
        if len(set(conditions)) != len(conditions):
            raise PlanError("--condition: the same condition is given twice")
        return space, conditions
    axes = [condition.get(a, (defaults[a],)) for a in CONDITION_AXES]
    return space, tuple(Condition(*values) for values in itertools.product(*axes))


def _condition_row(row: str) -> dict[str, float]:
    """One `--condition` item: ``axis=value,axis=value``."""
    values: dict[str, float] = {}
    for part in row.split(","):
        axis, sep, text = part.partition("=")
        if not sep or axis not in CONDITION_AXES:
            raise PlanError(f"--condition {row!r}: write axis=value,axis=value with condition "
                            f"axes ({', '.join(CONDITION_AXES)})")
        try:
            values[axis] = float(text)
        except ValueError:
            raise PlanError(f"--condition {row!r}: {axis} must be a number") from None
        _check_condition_values(f"--condition {row!r}", axis, (values[axis],))
    return values


def _check_condition_values(where: str, axis: str, numbers: tuple[float, ...]) -> None:
    if any(not np.isfinite(v) or (v < 0 and not axis.endswith("snr_db")) for v in numbers):
        raise PlanError(f"{where}: values must be finite and >= 0")
    if axis.endswith("cqi") and any(v > 15 for v in numbers):
        raise PlanError(f"{where}: a CQI is at most 15")


def _number(text: str) -> float:
    """`5` as int (an MCS must be one), `0.2` as float."""
    try:
        return int(text)
    except ValueError:
        return float(text)
