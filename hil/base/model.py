"""The link and power model of a vBS (srsENB + B210 on a small PC): pure and vectorised.

Two entry points share every formula:

- `simulate_window` runs the TTIs of one measurement window, as the emulated srsENB does:
  per TTI, link adaptation picks an MCS from the (delayed, quantised) CQI, the caps in force
  clamp MCS and PRBs, fading decides whether the transport block is decoded, the queues
  follow arrivals and deliveries, and power follows what was scheduled. The window's KPIs
  are exact sums over its TTIs.
- `expected_round` gives the expected outcome of whole rounds for many policies and
  environments at once (no queue memory, fading averaged), for offline replays and to know
  which policies the model makes best.

Power has the published form (Ayala-Romero et al., ICC 2021 and INFOCOM 2021):
``P = idle + radio + P_dl(a, m) + P_ul(a, m) + r(a_u) * clip(g0(m_u) - snr_u, 0, span)``
with ``P_x(a, m) = a * (c_a + c_am * m + c_amm * m^2) + c_aa * a^2`` (quadratic in airtime
``a`` and MCS ``m``), turbo-decoding effort that grows below the SNR threshold
``g0(m) = required_snr(m) + margin`` and is flat above it, and a fixed radio share plus a
linear transmit part scaled by the DL gain. Because link adaptation raises the MCS with
SNR until it saturates, power rises with SNR up to ~28 dB and is flat above, as measured.
All coefficients come from a calibration YAML (`testbed_configs/calibration/`), never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from hil.base import lte
from hil.base.scenarios import Environment
from hil.base.validation import StrictModel, load_yaml

TTI_S = 1e-3
BITS_PER_TTI_PER_MBPS = 1e6 * TTI_S


# ----------------------------------------------------------------------------- calibration
class CellParams(StrictModel):
    nof_prb: int = Field(50, ge=6, le=100, description="cell bandwidth in PRBs")
    dl_rbg_size: int = Field(3, ge=1, le=4, description="DL allocation granularity (PRBs)")
    ul_pucch_prb: int = Field(2, ge=0, le=20, description="UL PRBs reserved for PUCCH")
    dl_queue_limit_bytes: int = Field(1_000_000, gt=0, description="DL buffer (RLC) size")
    ul_queue_limit_bytes: int = Field(500_000, gt=0, description="UL buffer size at the UE")


class LinkAdaptation(StrictModel):
    """The MCS a testbed's link adaptation settles on at each reported CQI (0..15), measured.

    Without it the model's link adaptation is the 3GPP one: the highest MCS whose efficiency
    the CQI's (TS 36.213 Table 7.2.3-1) reaches, at the BLER target. srsRAN's runs much higher
    (measured over ZMQ: CQI 8 -> MCS 25 at ~5 % BLER, where the table gives ~15): its outer
    loop raises the MCS while blocks get through. With a table, an MCS's required SNR is the
    SNR of the CQI at which the table reaches it, so the block error rate at the MCS link
    adaptation picks is the target, as the outer loop makes it."""

    dl_mcs_by_cqi: tuple[float, ...] = Field(..., min_length=16, max_length=16)
    ul_mcs_by_cqi: tuple[float, ...] = Field(..., min_length=16, max_length=16)
    dl_bler: float = Field(0.1, gt=0, lt=0.5, description="the DL BLER it settles at")
    ul_bler: float = Field(0.1, gt=0, lt=0.5, description="the UL BLER it settles at")
    source: str = Field("", description="what the table was measured from")

    @model_validator(mode="after")
    def _monotone(self) -> LinkAdaptation:
        for name in ("dl_mcs_by_cqi", "ul_mcs_by_cqi"):
            table = np.asarray(getattr(self, name))
            if np.any(np.diff(table) < 0) or table.min() < 0 or table.max() > lte.MAX_MCS:
                raise ValueError(f"{name} must be non-decreasing within 0..{lte.MAX_MCS}")
        return self


class ChannelParams(StrictModel):
    fading_sigma_db: float = Field(1.0, ge=0, le=10, description="per-TTI SNR spread")
    bler_slope_per_db: float = Field(1.5, gt=0, description="steepness of the BLER curve")
    bler_target: float = Field(0.1, gt=0, lt=0.5, description="BLER at the MCS's required SNR")
    cqi_delay_tti: int = Field(4, ge=0, le=80, description="age of the CQI link adaptation uses")
    ul_snr_offset_db: float = Field(0.0, description="UL SNR relative to the scenario's CQI")
    ul_fixed_total_power: bool = Field(
        False, description="the UE sends every grant at one total power (srsUE has no UL power "
        "control), so a grant of fewer PRBs puts more power, and SNR, on each: "
        "+10 log10(full band / PRBs); the scenario's UL CQI is then the full band's")
    link_adaptation: LinkAdaptation | None = Field(
        None, description="measured MCS per CQI; none: the 3GPP efficiency table's")
    snr_at_cqi_db: tuple[float, ...] | None = Field(
        None, min_length=16, max_length=16, description="the SNR (dB, on the testbed's own "
        "scale, e.g. srsRAN's channel emulator) at which the UE reports each CQI 0..15, "
        "measured; none: the NUC testbed's anchors (hil.base.lte)")

    @field_validator("snr_at_cqi_db")
    @classmethod
    def _rising(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and np.any(np.diff(value) <= 0):
            raise ValueError("snr_at_cqi_db must rise with the CQI")
        return value


class DirectionPower(StrictModel):
    """P_x(a, m) = a * (a_w + am_w * m + amm_w * m^2) + aa_w * a^2."""

    a_w: float = 0.0
    am_w: float = 0.0
    amm_w: float = 0.0
    aa_w: float = 0.0


class DecodePower(StrictModel):
    """Extra UL decoding power below the SNR threshold: (r0_w + r1_w * a) per dB, capped."""

    r0_w_per_db: float = Field(0.0, ge=0)
    r1_w_per_db: float = Field(0.0, ge=0)
    margin_db: float = Field(3.0, description="g0(m) = required SNR of m + margin")
    span_db: float = Field(10.0, gt=0, description="the effort stops growing this far below g0")


class PowerParams(StrictModel):
    idle_w: float = Field(..., gt=0, description="BBU running srsENB with nothing scheduled")
    radio_fixed_w: float = Field(3.0, ge=0, description="B210 amplifier, always on")
    radio_tx_w: float = Field(0.0, ge=0, description="extra radio power at full DL airtime, 0 dB")
    dl: DirectionPower = DirectionPower()
    ul: DirectionPower = DirectionPower()
    ul_decode: DecodePower = DecodePower()


class PowerDrift(StrictModel):
    """A slow drift of the power, as a warming BBU or a meter's creeping offset would show:
    a test knob of the emulated vBS (drift-aware sweeps, tests/test_collect.py). It follows
    the wall clock, so it carries on across the emulator processes of a sweep's blocks."""

    w_per_hour: float = Field(..., description="added power per hour of wall time")
    since_unix_s: float = Field(..., ge=0, description="when the drift starts (Unix time)")

    def power_w(self, now_unix_s: float) -> float:
        return self.w_per_hour * max(now_unix_s - self.since_unix_s, 0.0) / 3600.0


class Calibration(StrictModel):
    """Everything the model needs about one testbed's hardware and channel."""

    name: str = "unnamed"
    cell: CellParams = CellParams()
    channel: ChannelParams = ChannelParams()
    power: PowerParams
    drift: PowerDrift | None = Field(None, description="emulated vBS only: a power drift")


def load_calibration(path: Path) -> Calibration:
    return load_yaml(path, Calibration)


# ----------------------------------------------------------------------------- caps
@dataclass(frozen=True)
class Caps:
    """The effective limits for one user, after cell and per-user caps are combined.

    `*_prb_budget` is the protocol's budget (rtctl v1, 5.2): floor(ratio * N_PRB + 1e-6),
    tightened by a per-user cap; `*_max_prb` is what a scheduler can grant within it (DL in
    whole RBGs, UL without the PUCCH PRBs). Grants are checked against the budget, so a
    violation is counted independently of how the limit was enforced. Array-valued fields
    broadcast, so `expected_round` evaluates many policies at once.
    """

    dl_max_mcs: np.ndarray | int
    ul_max_mcs: np.ndarray | int
    dl_prb_budget: np.ndarray | int
    ul_prb_budget: np.ndarray | int
    dl_max_prb: np.ndarray | int
    ul_max_prb: np.ndarray | int
    dl_gain_db: np.ndarray | float


def prb_budget(ratio: np.ndarray | float | None, cell: CellParams) -> np.ndarray:
    """PRBs per TTI a ratio allows (None: all); 1e-6 absorbs binary rounding (0.58 * 50)."""
    ratio = 1.0 if ratio is None else ratio
    return np.floor(np.asarray(ratio, dtype=float) * cell.nof_prb + 1e-6).astype(int)


def dl_grantable_prbs(budget: np.ndarray | int, cell: CellParams) -> np.ndarray:
    """The largest set of whole RBGs within a budget (50 PRB: 16 RBGs of 3 and one of 2)."""
    size = cell.dl_rbg_size
    n_full, last = divmod(cell.nof_prb, size)
    full = np.minimum(np.asarray(budget) // size, n_full)
    extra = np.where((last > 0) & (np.asarray(budget) - full * size >= last), last, 0)
    return full * size + extra


def ul_grantable_prbs(budget: np.ndarray | int, cell: CellParams) -> np.ndarray:
    """Within the budget, and never on the PRBs PUCCH occupies."""
    return np.minimum(np.asarray(budget), cell.nof_prb - cell.ul_pucch_prb)


def make_caps(
    cell: CellParams,
    *,
    dl_max_mcs: np.ndarray | int | None = None,
    ul_max_mcs: np.ndarray | int | None = None,
    dl_prb_ratio: np.ndarray | float | None = None,
    ul_prb_ratio: np.ndarray | float | None = None,
    dl_gain_db: np.ndarray | float = 0.0,
    ue_dl_max_prb: int | None = None,
    ue_ul_max_prb: int | None = None,
) -> Caps:
    """Combine thresholds (None = uncapped) into effective caps."""
    dl_budget, ul_budget = prb_budget(dl_prb_ratio, cell), prb_budget(ul_prb_ratio, cell)
    if ue_dl_max_prb is not None:
        dl_budget = np.minimum(dl_budget, ue_dl_max_prb)
    if ue_ul_max_prb is not None:
        ul_budget = np.minimum(ul_budget, ue_ul_max_prb)
    return Caps(
        dl_max_mcs=lte.MAX_MCS if dl_max_mcs is None else np.asarray(dl_max_mcs),
        ul_max_mcs=lte.MAX_MCS if ul_max_mcs is None else np.asarray(ul_max_mcs),
        dl_prb_budget=dl_budget, ul_prb_budget=ul_budget,
        dl_max_prb=dl_grantable_prbs(dl_budget, cell),
        ul_max_prb=ul_grantable_prbs(ul_budget, cell),
        dl_gain_db=np.asarray(dl_gain_db, dtype=float),
    )


# ----------------------------------------------------------------------------- link
DIRECTIONS: tuple[lte.Direction, lte.Direction] = ("dl", "ul")
_MCS = np.arange(lte.MAX_MCS + 1)
# Per-direction lookups derived once from `lte`, stacked (row 0 DL, row 1 UL) so that a TTI
# costs table reads and both directions go through each numpy call together.
_REQUIRED_SNR_DB = np.stack([lte.required_snr_db(_MCS, d) for d in DIRECTIONS])     # (2, 29)
_LA_MCS_BY_CQI = np.stack([lte.la_mcs(np.arange(16), d) for d in DIRECTIONS])      # (2, 16)
_TBS_BITS = np.stack([lte.tbs_bits(_MCS[:, None], np.arange(lte.MAX_PRB + 1)[None, :], d)
                      for d in DIRECTIONS]).astype(float)                            # (2, 29, 111)
_ROW = np.array([[0], [1]])
_CQI = np.arange(16, dtype=float)


@dataclass(frozen=True)
class LinkTables:
    """Per direction (row 0 DL, row 1 UL): the SNR each MCS needs (at the BLER target) and
    the MCS link adaptation picks per reported CQI."""

    required_snr_db: np.ndarray  # (2, 29)
    la_mcs_by_cqi: np.ndarray  # (2, 16), int
    ul_table: np.ndarray | None = None
    """The measured UL table (MCS per CQI, 16 floats): the eNB adapts to its own SNR
    estimate, continuously, not to an integer CQI report; None: the UL picks per integer
    CQI as the DL does."""
    channel: ChannelParams | None = None
    """Whose CQI scale the tables are on (None: the NUC's anchors)."""

    def dl_mcs(self, snr_db: np.ndarray) -> np.ndarray:
        """The DL MCS link adaptation picks for the CQI the UE reports at an SNR."""
        return self.la_mcs_by_cqi[0][reported_cqi(snr_db, self.channel)]

    def ul_mcs(self, snr_db: np.ndarray) -> np.ndarray:
        """The UL MCS link adaptation picks at an UL SNR."""
        cqi = snr_to_cqi(snr_db, self.channel)
        return self._ul_mcs_at(cqi, whole_cqi(cqi))

    def picked_mcs(self, cqi: np.ndarray, reported: np.ndarray) -> np.ndarray:
        """Both directions' MCS (rows DL, UL) from a continuous CQI and its report
        (`whole_cqi`): what `dl_mcs` and `ul_mcs` pick, with the SNR mapped once."""
        return np.stack([self.la_mcs_by_cqi[0][reported[0]],
                         self._ul_mcs_at(cqi[1], reported[1])])

    def _ul_mcs_at(self, cqi: np.ndarray, reported: np.ndarray) -> np.ndarray:
        if self.ul_table is None:
            return self.la_mcs_by_cqi[1][reported]
        return np.round(np.interp(cqi, _CQI, self.ul_table)).astype(np.int64)


_STANDARD_TABLES = LinkTables(_REQUIRED_SNR_DB, _LA_MCS_BY_CQI)


def link_tables(channel: ChannelParams) -> LinkTables:
    """The 3GPP tables, or those of the calibration's measured link adaptation."""
    la = channel.link_adaptation
    if la is None:
        return _STANDARD_TABLES if channel.snr_at_cqi_db is None else _scaled_standard(channel)
    return _measured_tables(channel)


def _scaled_standard(channel: ChannelParams) -> LinkTables:
    """The 3GPP tables with SNRs on the channel's CQI scale (the CQI stays the meeting
    point: an MCS needs the SNR of the CQI whose efficiency it has)."""
    anchors = lte.snr_db_to_cqi(_REQUIRED_SNR_DB)
    return LinkTables(cqi_to_snr(anchors, channel), _LA_MCS_BY_CQI, channel=channel)


@lru_cache(maxsize=8)
def _measured_tables(channel: ChannelParams) -> LinkTables:
    la = channel.link_adaptation
    assert la is not None
    required, picked = [], []
    for table in (np.asarray(la.dl_mcs_by_cqi), np.asarray(la.ul_mcs_by_cqi)):
        required.append(cqi_to_snr(_cqi_reaching(table, _MCS), channel))
        picked.append(np.round(table).astype(np.int64))  # the measured mean, as a whole MCS
    return LinkTables(np.stack(required), np.stack(picked),
                      ul_table=np.asarray(la.ul_mcs_by_cqi), channel=channel)


def _cqi_reaching(table: np.ndarray, mcs: np.ndarray) -> np.ndarray:
    """min{c : T(c) >= m} for the piecewise-linear table T over CQI 0..15, on a 0.01 grid;
    above the table's top, its last rising segment continued."""
    grid = np.linspace(0.0, 15.0, 1501)
    values = np.interp(grid, _CQI, table)
    index = np.searchsorted(values, mcs - 1e-9, side="left")
    cqi = grid[np.minimum(index, len(grid) - 1)]
    rising = np.flatnonzero(np.diff(table) > 0)
    if rising.size == 0:
        return np.where(mcs <= table[-1], 0.0, 15.0 + (mcs - table[-1]))
    step = rising[-1]
    per_mcs = 1.0 / (table[step + 1] - table[step])  # CQI per MCS on the last rise
    return np.where(mcs > table[-1], 15.0 + (mcs - table[-1]) * per_mcs, cqi)


def _bler_logit_offset(channel: ChannelParams, direction: lte.Direction) -> float:
    """The logistic's offset that puts the BLER at the target at the required SNR: the
    channel's, or the BLER a measured link adaptation settles at in `direction`."""
    la = channel.link_adaptation
    target = channel.bler_target if la is None else getattr(la, f"{direction}_bler")
    return float(np.log((1 - target) / target))


def bler(mcs: np.ndarray, snr_db: np.ndarray, direction: lte.Direction,
         channel: ChannelParams) -> np.ndarray:
    """Block error rate: logistic in SNR, equal to the target at the MCS's required SNR."""
    required = link_tables(channel).required_snr_db[DIRECTIONS.index(direction)]
    margin = np.asarray(snr_db) - required[mcs]
    return 1.0 / (1.0 + np.exp(channel.bler_slope_per_db * margin
                                + _bler_logit_offset(channel, direction)))


def cqi_to_snr(cqi: object, channel: ChannelParams | None = None) -> np.ndarray:
    """SNR (dB) of a continuous CQI: the channel's measured scale, or the NUC's anchors."""
    scale = None if channel is None else channel.snr_at_cqi_db
    if scale is None:
        return lte.cqi_to_snr_db(cqi)
    return lte.interp_linear_ends(cqi, _CQI, np.asarray(scale))


def snr_to_cqi(snr_db: object, channel: ChannelParams | None = None) -> np.ndarray:
    """Continuous CQI (0..15) of an SNR: the inverse of `cqi_to_snr`."""
    scale = None if channel is None else channel.snr_at_cqi_db
    if scale is None:
        return lte.snr_db_to_cqi(snr_db)
    return np.clip(lte.interp_linear_ends(snr_db, np.asarray(scale), _CQI), 0.0, 15.0)


def reported_cqi(snr_db: np.ndarray, channel: ChannelParams | None = None) -> np.ndarray:
    """The integer CQI a UE reports for an SNR (0 = out of range)."""
    return whole_cqi(snr_to_cqi(snr_db, channel))


def whole_cqi(cqi: np.ndarray) -> np.ndarray:
    """The integer CQI reported for a continuous one (0..15)."""
    return np.clip(np.floor(cqi + 1e-9), 0, 15).astype(np.int64)


def la_mcs(cqi: np.ndarray, direction: lte.Direction,
           channel: ChannelParams | None = None) -> np.ndarray:
    """The MCS link adaptation picks for an integer reported CQI (the 3GPP table's, or the
    calibration's measured one)."""
    tables = _STANDARD_TABLES if channel is None else link_tables(channel)
    return tables.la_mcs_by_cqi[DIRECTIONS.index(direction)][cqi]


def ul_grant_snr_gain_db(prbs: np.ndarray | int, cell: CellParams,
                         channel: ChannelParams) -> np.ndarray:
    """How much higher the UL SNR of a grant of `prbs` is than over the full band (0 with UL
    power control; measured over srsRAN's ZMQ radio: +6.0 dB at 9 of 41 PRBs)."""
    if not channel.ul_fixed_total_power:
        return np.zeros(np.shape(prbs))
    full = cell.nof_prb - cell.ul_pucch_prb
    return 10.0 * np.log10(full / np.maximum(np.asarray(prbs, dtype=float), 1.0))


def direction_power(a: np.ndarray, m: np.ndarray, p: DirectionPower) -> np.ndarray:
    return a * (p.a_w + p.am_w * m + p.amm_w * m * m) + p.aa_w * a * a


def power_w(
    dl_airtime: np.ndarray, dl_mcs: np.ndarray, ul_airtime: np.ndarray, ul_mcs: np.ndarray,
    ul_snr_db: np.ndarray, dl_gain_db: np.ndarray | float, params: PowerParams,
    tables: LinkTables = _STANDARD_TABLES,
) -> np.ndarray:
    """Power of BBU + radio for the given airtimes (0..1), MCS and UL SNR; broadcasts.
    `tables` (the calibration's `link_tables`) give each UL MCS's required SNR."""
    dec = params.ul_decode
    required = tables.required_snr_db[1][np.asarray(ul_mcs, dtype=np.int64)]
    below = np.clip(required + dec.margin_db - ul_snr_db, 0, dec.span_db)
    decode = np.where(ul_airtime > 0, (dec.r0_w_per_db + dec.r1_w_per_db * ul_airtime) * below, 0)
    tx_share = 10 ** (np.asarray(dl_gain_db) / 10) * dl_airtime
    radio = params.radio_fixed_w + params.radio_tx_w * tx_share
    return (params.idle_w + radio + direction_power(dl_airtime, dl_mcs, params.dl)
            + direction_power(ul_airtime, ul_mcs, params.ul) + decode)


# ----------------------------------------------------------------------------- one window
@dataclass
class LinkState:
    """What carries over from one window to the next: queues (bits, [DL, UL]) and the SNRs
    link adaptation has yet to act on (shape (2, cqi_delay_tti))."""

    backlog_bits: np.ndarray = field(default_factory=lambda: np.zeros(2))
    snr_pipeline_db: np.ndarray | None = None


KPI_FIELDS = ("bits_delivered", "bits_arrived", "prb_tti", "sched_tti", "mcs_sum", "tb_failed",
              "cqi_sum", "snr_sum_db", "cap_hits_mcs", "cap_hits_prb", "violations_mcs",
              "violations_prb")
"""Sums over a window's TTIs, per direction: the rows of `WindowKpis.sums`."""


@dataclass(frozen=True)
class WindowKpis:
    """A window's sums: `sums[d, i]` is KPI_FIELDS[i] of direction d (0 DL, 1 UL)."""

    nof_tti: int
    sums: np.ndarray
    backlog_bits: np.ndarray
    energy_j: float

    def get(self, direction: lte.Direction, name: str) -> float:
        return float(self.sums[DIRECTIONS.index(direction), KPI_FIELDS.index(name)])


def simulate_window(
    caps: Caps, env_per_tti: Environment, state: LinkState, rng: np.random.Generator,
    cal: Calibration,
) -> tuple[WindowKpis, LinkState]:
    """Run the TTIs of one window (env given per TTI) under scalar caps.

    Row 0 of every (2, n) array is the DL, row 1 the UL.
    """
    cell, channel = cal.cell, cal.channel
    tables = link_tables(channel)
    n, delay = len(env_per_tti), channel.cqi_delay_tti
    gain = float(caps.dl_gain_db)
    offsets = np.array([[gain], [channel.ul_snr_offset_db + float(
        ul_grant_snr_gain_db(int(caps.ul_max_prb), cell, channel))]])
    cqi_env = np.stack([env_per_tti.dl_cqi, env_per_tti.ul_cqi])
    snr = cqi_to_snr(cqi_env, channel) + offsets + rng.normal(0.0, channel.fading_sigma_db,
                                                              (2, n))

    # Link adaptation acts on the CQI of `delay` TTIs ago (the first window: the current one).
    pipeline = state.snr_pipeline_db
    if pipeline is None:
        pipeline = np.repeat(snr[:, :1], delay, axis=1)
    seen = np.concatenate([pipeline, snr], axis=1)
    cqi_seen = snr_to_cqi(seen[:, :n], channel)
    cqi = whole_cqi(cqi_seen)
    mcs_la = tables.picked_mcs(cqi_seen, cqi)
    max_mcs = np.array([[int(caps.dl_max_mcs)], [int(caps.ul_max_mcs)]])
    max_prb = np.array([int(caps.dl_max_prb), int(caps.ul_max_prb)])
    budget = np.array([[int(caps.dl_prb_budget)], [int(caps.ul_prb_budget)]])
    mcs = np.minimum(mcs_la, max_mcs)

    arrivals = np.stack([env_per_tti.dl_demand_mbps, env_per_tti.ul_demand_mbps]) \
        * BITS_PER_TTI_PER_MBPS
    cap_bits = _TBS_BITS[_ROW, mcs, max_prb[:, None]]
    margin = snr - tables.required_snr_db[_ROW, mcs]
    offsets_logit = np.array([[_bler_logit_offset(channel, d)] for d in DIRECTIONS])
    p_error = 1.0 / (1.0 + np.exp(channel.bler_slope_per_db * margin + offsets_logit))
    success = rng.random((2, n)) >= p_error
    capacity = np.where(success, cap_bits, 0.0)
    # Lindley recursion Q_k = max(Q_{k-1} + arrivals_k - capacity_k, 0), vectorised:
    # Q_k = S_k - min(-Q_0, min_{j<=k} S_j) with S the cumulative net input.
    backlog = state.backlog_bits
    s = np.cumsum(arrivals - capacity, axis=1)
    queue = s - np.minimum(np.minimum.accumulate(s, axis=1), -backlog[:, None])
    offered = np.concatenate([backlog[:, None], queue[:, :-1]], axis=1) + arrivals
    attempted = np.minimum(offered, cap_bits)
    delivered = np.where(success, attempted, 0.0)
    scheduled = attempted > 0

    prb = np.where(scheduled, max_prb[:, None], 0)
    for row, direction in enumerate(DIRECTIONS):  # few TTIs need fewer PRBs than the cap
        partial = np.flatnonzero(scheduled[row] & (attempted[row] < cap_bits[row]))
        if partial.size:
            prb[row, partial] = lte.prbs_needed(mcs[row, partial], attempted[row, partial],
                                                direction, max_prb[row])
    rbg = cell.dl_rbg_size
    prb[0] = np.minimum(-(-prb[0] // rbg) * rbg, max_prb[0])  # DL grants whole RBGs

    full_prb = np.array([cell.nof_prb, cell.nof_prb - cell.ul_pucch_prb])
    prb_capped = (max_prb < full_prb)[:, None]
    mcs_used = np.where(scheduled, mcs, 0)
    sums = np.stack([
        delivered.sum(axis=1), arrivals.sum(axis=1), prb.sum(axis=1), scheduled.sum(axis=1),
        mcs_used.sum(axis=1), (scheduled & ~success).sum(axis=1), cqi.sum(axis=1),
        snr.sum(axis=1), (scheduled & (mcs_la > max_mcs)).sum(axis=1),
        ((offered > cap_bits) & prb_capped).sum(axis=1),
        (scheduled & (mcs > max_mcs)).sum(axis=1), (prb > budget).sum(axis=1),
    ], axis=1)

    airtime = prb / cell.nof_prb
    watts = power_w(airtime[0], mcs_used[0], airtime[1], mcs_used[1], snr[1], gain, cal.power,
                    tables)
    limits = np.array([cell.dl_queue_limit_bytes, cell.ul_queue_limit_bytes]) * 8.0
    new_backlog = np.minimum(queue[:, -1], limits) if n else backlog
    kpis = WindowKpis(n, sums, new_backlog, float(watts.sum() * TTI_S))
    return kpis, LinkState(new_backlog, seen[:, n:])


# ----------------------------------------------------------------------------- expectations
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(7)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


@dataclass(frozen=True)
class RoundOutcome:
    """Expected per-round figures; arrays broadcast over (environments, policies)."""

    dl_rate_mbps: np.ndarray
    ul_rate_mbps: np.ndarray
    dl_demand_mbps: np.ndarray
    ul_demand_mbps: np.ndarray
    dl_mcs: np.ndarray
    ul_mcs: np.ndarray
    dl_airtime: np.ndarray
    ul_airtime: np.ndarray
    power_w: np.ndarray


def _expected_direction(
    direction: lte.Direction, snr_db: np.ndarray, demand_mbps: np.ndarray, max_mcs: np.ndarray,
    max_prb: np.ndarray, cell: CellParams, channel: ChannelParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tables = link_tables(channel)
    picked = tables.dl_mcs(snr_db) if direction == "dl" else tables.ul_mcs(snr_db)
    mcs = np.minimum(picked, max_mcs)
    # Average the decoding success over the per-TTI fading (Gauss-Hermite quadrature).
    p_ok = sum(w * (1 - bler(mcs, snr_db + channel.fading_sigma_db * x, direction, channel))
               for x, w in zip(_GH_NODES, _GH_WEIGHTS))
    cap_rate = _TBS_BITS[DIRECTIONS.index(direction)][mcs, max_prb] / BITS_PER_TTI_PER_MBPS * p_ok
    rate = np.minimum(demand_mbps, cap_rate)
    # Airtime: the share of the cap's PRBs needed to carry the rate, failed blocks included.
    load = np.divide(rate, cap_rate, out=np.zeros(np.broadcast(rate, cap_rate).shape),
                     where=cap_rate > 0)
    airtime = load * max_prb / cell.nof_prb
    return rate, np.where(rate > 0, mcs, 0), airtime


def expected_round(caps: Caps, env: Environment, cal: Calibration) -> RoundOutcome:
    """Expected outcome of full rounds; env arrays shape (N, 1), caps arrays shape (K,) -> (N, K).

    Any broadcastable shapes work. Queues do not carry over between rounds here, so rates
    never exceed the demand of the round itself.
    """
    cell, channel = cal.cell, cal.channel
    dl_snr = cqi_to_snr(env.dl_cqi, channel) + caps.dl_gain_db
    ul_snr = (cqi_to_snr(env.ul_cqi, channel) + channel.ul_snr_offset_db
              + ul_grant_snr_gain_db(caps.ul_max_prb, cell, channel))
    dl_rate, dl_mcs, dl_air = _expected_direction(
        "dl", dl_snr, env.dl_demand_mbps, caps.dl_max_mcs, caps.dl_max_prb, cell, channel)
    ul_rate, ul_mcs, ul_air = _expected_direction(
        "ul", ul_snr, env.ul_demand_mbps, caps.ul_max_mcs, caps.ul_max_prb, cell, channel)
    watts = power_w(dl_air, dl_mcs, ul_air, ul_mcs, ul_snr, caps.dl_gain_db, cal.power,
                    link_tables(channel))
    shape = np.broadcast(dl_rate, ul_rate, watts).shape
    return RoundOutcome(
        *(np.broadcast_to(a, shape) for a in (
            dl_rate, ul_rate, env.dl_demand_mbps, env.ul_demand_mbps, dl_mcs, ul_mcs,
            dl_air, ul_air, watts)))
