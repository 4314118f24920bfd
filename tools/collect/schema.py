"""The one typed row per measured cell of a sweep (`cells.parquet`).

Like the round schema (`hil/schema.py`, which it borrows the policy columns from), units are
in the names and in each field's Arrow metadata. Measured columns are the mean over the
cell's valid dwell rounds (`n_samples` of them), `_var` their sample variance across those
rounds; they are null when no round was valid.
"""

from __future__ import annotations

import pyarrow as pa

from hil.base.thresholds import POLICY_FIELDS
from hil.schema import ROUND_SCHEMA

CELL_SCHEMA_VERSION = 4

_MEASURED = [  # (round column, also its variance?)
    ("power_w", True), ("rapl_power_w", True), ("dl_rate_mbps", True), ("ul_rate_mbps", True),
    ("dl_demand_mbps", False), ("ul_demand_mbps", False), ("dl_arrived_mbps", False),
    ("ul_arrived_mbps", False), ("dl_bler", False), ("ul_bler", False),
    ("dl_cqi", False), ("ul_snr_db", False), ("dl_mcs", False), ("ul_mcs", False),
    ("dl_prb", False), ("ul_prb", False), ("host_cpu_pct", False), ("enb_cpu_pct", True),
    ("ue_cpu_pct", True),
    ("traffic_dl_mbps", False), ("traffic_ul_mbps", False),
]
MEASURED_MEANS = tuple(name for name, _ in _MEASURED)
MEASURED_VARS = tuple(name for name, var in _MEASURED if var)


def _field(name: str, type_: pa.DataType, unit: str, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"unit": unit, "doc": doc})


def _from_round(name: str, doc_prefix: str = "") -> pa.Field:
    """The round schema's field `name`, same type and unit, its doc after `doc_prefix`."""
    source = ROUND_SCHEMA.field(name)
    return _field(name, source.type, source.metadata[b"unit"].decode(),
                  doc_prefix + source.metadata[b"doc"].decode())


def _squared(unit: str) -> str:
    return f"({unit})^2" if "/" in unit else f"{unit}^2"


_ROUND_POLICY = [f"{side}_{n}" for side in ("policy", "applied") for n in POLICY_FIELDS]

CELL_SCHEMA = pa.schema(
    [
        _field("cell_id", pa.string(), "", "c<condition>-p<policy_index>-r<rep>", nullable=False),
        _field("order", pa.int64(), "1", "position in the plan's measuring order", nullable=False),
        _field("condition", pa.int64(), "1", "index of the condition in the plan", nullable=False),
        _field("policy_index", pa.int64(), "1", "index of the policy in the plan's grid",
               nullable=False),
        _field("rep", pa.int64(), "1", "repetition from 0", nullable=False),
        _field("reference_block", pa.int64(), "1", "a reference cell: the plan's reference "
               "policy measured again at the start of this block (null: a cell of the grid)"),
        *[_from_round(n) for n in _ROUND_POLICY],
        _field("cond_dl_load_mbps", pa.float64(), "Mb/s", "DL load offered (condition)"),
        _field("cond_ul_load_mbps", pa.float64(), "Mb/s", "UL load offered (condition)"),
        _field("cond_dl_cqi", pa.float64(), "1", "mean DL CQI of the channel (condition; null: "
               "as the testbed has it)"),
        _field("cond_ul_cqi", pa.float64(), "1", "mean UL CQI of the channel (condition)"),
        _field("cond_dl_snr_db", pa.float64(), "dB", "SNR of the eNB's DL channel emulator "
               "(condition; srsRAN; null: the config's)"),
        _field("cond_ul_snr_db", pa.float64(), "dB", "`snr` of the eNB's UL channel emulator: "
               "the noise floor under the UE's signal (condition; srsRAN; null: the config's); "
               "the SNR it gives is ul_snr_db"),
        _field("warmup_rounds", pa.int64(), "1", "rounds held and discarded first",
               nullable=False),
        _field("dwell_rounds", pa.int64(), "1", "rounds held and measured", nullable=False),
        _field("round_s", pa.float64(), "s", "length of a round (testbed time)", nullable=False),
        _field("n_samples", pa.int64(), "1", "valid dwell rounds the means are over",
               nullable=False),
        *[_from_round(n, "mean over the dwell rounds: ") for n in MEASURED_MEANS],
        *[_field(f"{n}_var", pa.float64(),
                 _squared(ROUND_SCHEMA.field(n).metadata[b"unit"].decode()),
                 f"sample variance of {n} across the dwell rounds") for n in MEASURED_VARS],
        _field("violations", pa.int64(), "TTI", "TTIs in which a grant exceeded a cap (sum)"),
        _field("testbed_restarts", pa.int64(), "1", "processes restarted during the cell"),
        _field("failed", pa.bool_(), "1", "a dwell round was invalid", nullable=False),
        _field("attempt", pa.int64(), "1", "which measurement of the cell this is, from 1: a "
               "failed cell is measured again at the sweep's end; its last row is its own"),
        _field("failed_reason", pa.string(), "", "the first invalid round's reason"),
        _field("block", pa.string(), "", "run directory of the rounds (under blocks/)",
               nullable=False),
        _field("first_round", pa.int64(), "1", "first round of the cell in its block",
               nullable=False),
        _field("time_utc", pa.timestamp("us", tz="UTC"), "us", "wall clock at the cell's start",
               nullable=False),
        _field("dwell_mid_utc", pa.timestamp("us", tz="UTC"), "us", "wall clock in the middle "
               "of the cell's dwell rounds, when its means were measured (drift is fitted "
               "against it)"),
    ],
    metadata={"schema": "vbs-hil.cell", "schema_version": str(CELL_SCHEMA_VERSION)},
)


def last_attempts(table: pa.Table) -> pa.Table:
    """The table with one row per cell, its last: a cell that failed and was measured again
    keeps its earlier rows in the journal (nothing recorded is rewritten), and those are
    not its result."""
    ids = table.column("cell_id").to_pylist()
    last = {cell_id: i for i, cell_id in enumerate(ids)}
    return table if len(last) == len(ids) else table.take(sorted(last.values()))
