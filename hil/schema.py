"""The one typed row per round, shared by live runs, dataset collection and replays.

Units live in the field names and again in each field's Arrow metadata (`unit`), so a
Parquet file read anywhere still says what its numbers mean. Nullable fields are those a
round can lack: an invalid round has no measurements, an uncapped threshold is null.
"""

from __future__ import annotations

import pyarrow as pa

from hil.base.thresholds import POLICY

SCHEMA_VERSION = 8


def _field(name: str, type_: pa.DataType, unit: str, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"unit": unit, "doc": doc})


_POLICY = [(t.name, pa.int16() if t.integer else pa.float64(), t.unit,
            f"{t.meaning} (null: {t.null_means})") for t in POLICY]

_PER_USER = [
    ("rnti", pa.int32(), "1", "the RNTIs the vBS reported"),
    ("dl_max_prb", pa.int16(), "PRB", "DL PRB cap per TTI the agent asked for (null: none)"),
    ("dl_rate_mbps", pa.float64(), "Mb/s", "DL throughput per TTI time"),
    ("dl_demand_mbps", pa.float64(), "Mb/s", "DL traffic arriving at the eNB"),
    ("dl_backlog_bytes", pa.int64(), "byte", "DL buffer at the window's end"),
    ("dl_cqi", pa.float64(), "1", "mean reported DL CQI"),
    ("dl_mcs", pa.float64(), "1", "mean DL MCS over TTIs with a grant"),
    ("dl_prb", pa.float64(), "PRB", "mean DL PRBs granted per TTI"),
    ("qci", pa.int16(), "1", "QCI of the user's default bearer, which tells its slice "
     "(null: the vBS did not report it)"),
]

ROUND_SCHEMA = pa.schema(
    [
        _field("round", pa.int64(), "1", "round index from 0", nullable=False),
        _field("time_utc", pa.timestamp("us", tz="UTC"), "us", "wall clock at round start",
               nullable=False),
        _field("t_start_s", pa.float64(), "s", "round start, monotonic, since run start",
               nullable=False),
        _field("t_end_s", pa.float64(), "s", "round end (recorded), monotonic, since run start",
               nullable=False),
        _field("overrun_s", pa.float64(), "s", "how far the round's work ran past its deadline",
               nullable=False),
        _field("policy_index", pa.int64(), "1", "index of the chosen policy in the policy space",
               nullable=False),
        _field("policy_prob", pa.float64(), "1", "probability with which the agent chose it",
               nullable=False),
        *[_field(f"policy_{n}", t, u, f"requested: {d}") for n, t, u, d in _POLICY],
        *[_field(f"applied_{n}", t, u, f"applied, as the vBS reports: {d}")
          for n, t, u, d in _POLICY],
        _field("applied_tti", pa.int64(), "TTI", "vBS TTI at which the thresholds took effect"),
        _field("nof_tti", pa.int64(), "TTI", "TTIs in the measurement window"),
        _field("window_s", pa.float64(), "s", "wall-clock length of the window at the vBS"),
        _field("dl_bits", pa.int64(), "bit", "DL bits acknowledged in the window"),
        _field("ul_bits", pa.int64(), "bit", "UL bits received OK in the window"),
        _field("dl_rate_mbps", pa.float64(), "Mb/s", "DL throughput per TTI time"),
        _field("ul_rate_mbps", pa.float64(), "Mb/s", "UL throughput per TTI time"),
        _field("dl_demand_mbps", pa.float64(), "Mb/s", "DL demand of the reward: the offered "
               "rate in TTI time where a generator runs, else dl_arrived_mbps "
               "(engine.round_demand)"),
        _field("ul_demand_mbps", pa.float64(), "Mb/s", "UL demand of the reward (as the DL's)"),
        _field("dl_arrived_mbps", pa.float64(), "Mb/s", "DL traffic that arrived at the eNB's "
               "queues (with the backlog at the window start), per TTI time"),
        _field("ul_arrived_mbps", pa.float64(), "Mb/s", "UL traffic that arrived at the UE's "
               "buffers (with the backlog at the window start), per TTI time"),
        _field("dl_cqi", pa.float64(), "1", "mean reported DL CQI"),
        _field("ul_snr_db", pa.float64(), "dB", "mean UL SNR"),
        _field("dl_mcs", pa.float64(), "1", "mean DL MCS over TTIs with a grant"),
        _field("ul_mcs", pa.float64(), "1", "mean UL MCS over TTIs with a grant"),
        _field("dl_prb", pa.float64(), "PRB", "mean DL PRBs granted per TTI"),
        _field("ul_prb", pa.float64(), "PRB", "mean UL PRBs granted per TTI"),
        _field("dl_bler", pa.float64(), "1", "DL block error rate"),
        _field("ul_bler", pa.float64(), "1", "UL block error rate"),
        _field("violations", pa.int64(), "TTI", "TTIs in which a grant exceeded a cap (must be 0)"),
        _field("power_w", pa.float64(), "W", "mean power of BBU + radio over the round"),
        _field("energy_j", pa.float64(), "J", "energy of BBU + radio over the round"),
        _field("meter_coverage", pa.float64(), "1", "share of the round that the meter's valid "
               "readings stand for (below meter.min_coverage the round is invalid)"),
        _field("host_cpu_pct", pa.float64(), "%", "busy share of all the BBU host's CPUs"),
        _field("enb_cpu_pct", pa.float64(), "%", "CPU of the eNB process (same scale as host)"),
        _field("ue_cpu_pct", pa.float64(), "%", "CPU of the UE process where it shares the "
               "host (same scale)"),
        _field("rapl_power_w", pa.float64(), "W", "CPU package power from RAPL"),
        _field("traffic_dl_mbps", pa.float64(), "Mb/s", "DL traffic offered by the generator"),
        _field("traffic_ul_mbps", pa.float64(), "Mb/s", "UL traffic offered by the generator"),
        *[_field(f"ue_{n}", pa.list_(t), u, f"per user, in the order of ue_rnti: {d}")
          for n, t, u, d in _PER_USER],
        _field("testbed_restarts", pa.int64(), "1", "crashed processes restarted so far"),
        _field("testbed_stage", pa.string(), "", "how far the testbed was up at the round's "
               "end: off, core up, eNB up, UE attached, traffic on (srsRAN); vBS up or vBS "
               "down (emulated)"),
        _field("utility", pa.float64(), "1", "log(1 + R_d/d_d) + log(1 + R_u/d_u)"),
        _field("reward_raw", pa.float64(), "1", "utility - delta * normalised power"),
        _field("reward", pa.float64(), "1", "reward scaled to [0, 1] with the declared bounds"),
        _field("valid", pa.bool_(), "1", "measurements complete; the agent learned from it",
               nullable=False),
        _field("invalid_reason", pa.string(), "", "why the round is invalid (null if valid)"),
    ],
    metadata={"schema": "vbs-hil.round", "schema_version": str(SCHEMA_VERSION)},
)
