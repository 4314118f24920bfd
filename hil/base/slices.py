"""One DU whose users are in slices (eMBB, URLLC, mMTC): the downlink model that the Meta-HRL
environment trains on and that the sliced emulated vBS serves. Pure numpy.

A step covers `n_tti` TTIs. The allocation unit is the PRB-TTI: the cell has
`nof_prb * n_tti` of them per step and each user gets some. Per user:

- arrivals: the slice's mean rate with gamma-distributed burstiness (coefficient of
  variation `burst`; URLLC and mMTC traffic is bursty, eMBB steady);
- channel: the user's mean CQI (drawn around the DU's at reset) as SNR, plus fading, plus
  the transmit power fraction in dB; link adaptation picks the MCS from the reported CQI;
- service: bits per PRB-TTI = TBS(MCS, N_PRB) / N_PRB from the LTE tables (`lte.tbs_bits`),
  times the probability of decoding (`model.bler`); the queue drains by what its PRB-TTIs
  carry, and PRB-TTIs a user has no data for are left unused;
- delay: the queue over the user's service rate, in ms (capped at MAX_DELAY_MS).

Power comes from the calibration's power model (`model.power_w`): DL airtime = PRB-TTIs used
over those available, the PRB-weighted mean MCS, and the mean power fraction as DL gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.base import lte, model
from hil.base.repo import REPO

SLICES = ("embb", "urllc", "mmtc")
SLICE_QCI = (9, 7, 8)
"""The QCI of each slice's users' default bearer, how a vBS tells a slicing scheduler a user's
slice (the EPC gives it per subscriber: srsEPC's user_db.csv). From 3GPP TS 23.203 table
6.1.7: eMBB 9 (the default bearer: buffered video, TCP), URLLC 7 (100 ms delay budget:
live video, interactive gaming), mMTC 8 (as 9 at a higher priority). A lab convention, not a
standard's mapping: a lab that slices by other QCIs changes it here."""
MAX_DELAY_MS = 1000.0
TOP_MCS = lte.MAX_MCS


@dataclass(frozen=True)
class SliceProfile:
    """A slice's users: how many, their mean offered DL rate and burstiness, and QoS targets."""

    n_ues: int
    demand_mbps: float         # mean offered rate per user
    burst: float               # coefficient of variation of a step's arrivals
    delay_target_ms: float = 0.0   # URLLC: queue delay target
    min_rate_mbps: float = 0.0     # mMTC: minimum rate per device


@dataclass(frozen=True)
class DuProfile:
    """One DU (one meta-learning task): its slices and its channel."""

    name: str
    slices: tuple[SliceProfile, SliceProfile, SliceProfile]
    cqi_mean: float
    cqi_spread: float          # sd of the users' mean CQI around the DU's
    fading_sigma_db: float     # per-step SNR spread

    @property
    def n_ues(self) -> int:
        return sum(s.n_ues for s in self.slices)

    @property
    def user_slice(self) -> np.ndarray:
        """The slice index of every user; users are ordered by slice."""
        return np.repeat(np.arange(len(SLICES)), [s.n_ues for s in self.slices])


@dataclass(frozen=True)
class StepKpis:
    """What one step delivered, per user (arrays of n_ues), and the DU's power."""

    arrived_bits: np.ndarray
    delivered_bits: np.ndarray
    queue_bits: np.ndarray     # at the step's end
    delay_ms: np.ndarray
    cqi: np.ndarray            # reported
    mcs: np.ndarray
    prb_tti_used: np.ndarray
    power_w: float
    n_tti: int


def bits_per_prb_tti(mcs: np.ndarray, nof_prb: int) -> np.ndarray:
    """DL bits one PRB carries in one TTI at `mcs` (the full-band TBS per PRB)."""
    return lte.tbs_bits(mcs, nof_prb, "dl") / nof_prb


def capacity_mbps(cqi: float, cal: model.Calibration) -> float:
    """What the whole cell carries at one CQI, error-free (the load scale of a DU)."""
    mcs = model.la_mcs(model.reported_cqi(lte.cqi_to_snr_db(cqi)), "dl")
    return float(bits_per_prb_tti(mcs, cal.cell.nof_prb) * cal.cell.nof_prb * 1e3 / 1e6)


def _counts(n: int, shares: np.ndarray) -> tuple[int, ...]:
    """n split by shares, at least 1 each, summing to n (largest remainder)."""
    extra = n - len(shares)
    raw = shares * extra
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: extra - counts.sum()]] += 1
    return tuple(int(c) + 1 for c in counts)


def sample_profiles(n_dus: int, n_ues: int, seed: int,
                    cal: model.Calibration | None = None) -> list[DuProfile]:
    """A task distribution of heterogeneous DUs: slice mixes, loads (40-130 % of what the
    cell carries at the DU's channel) and channels differ; deterministic per seed."""
    if n_dus < 1 or n_ues < len(SLICES):
        raise ValueError(f"need n_dus >= 1 and n_ues >= {len(SLICES)} (a user per slice), "
                         f"got n_dus={n_dus}, n_ues={n_ues}")
    cal = cal or default_calibration()
    rng = np.random.default_rng(seed)
    profiles = []
    for g in range(n_dus):
        counts = _counts(n_ues, rng.dirichlet([4.0, 3.0, 3.0]))
        cqi_mean = float(rng.uniform(7.0, 13.0))
        load = float(rng.uniform(0.4, 1.3)) * capacity_mbps(cqi_mean, cal)
        share = rng.dirichlet([7.0, 2.0, 1.0])  # of the load: eMBB, URLLC, mMTC
        per_user = load * share / np.array(counts)
        slices = (
            SliceProfile(counts[0], float(per_user[0]), float(rng.uniform(0.1, 0.4))),
            SliceProfile(counts[1], float(per_user[1]), float(rng.uniform(0.8, 1.6)),
                         delay_target_ms=float(rng.uniform(5.0, 20.0))),
            SliceProfile(counts[2], float(per_user[2]), float(rng.uniform(0.5, 1.2)),
                         min_rate_mbps=float(0.5 * per_user[2])),
        )
        profiles.append(DuProfile(f"du{seed}-{g}", slices, cqi_mean,
                                  float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.5, 2.0))))
    return profiles


def du_profile(n_ues: int, seed: int) -> DuProfile:
    """The DU a sliced emulated vBS serves (`vbs.emulator.du`): the first DU that
    `sample_profiles` draws for (n_ues, seed), so both sides agree from two numbers."""
    return sample_profiles(1, n_ues, seed)[0]


def slice_of_qci(qci: int | None) -> int | None:
    """The slice (index into SLICES) of a user whose default bearer has this QCI; None if
    the QCI is unknown or no slice's."""
    return SLICE_QCI.index(qci) if qci in SLICE_QCI else None


def default_calibration() -> model.Calibration:
    return model.load_calibration(REPO / "testbed_configs/calibration/emulated-nuc.yaml")


class SlicedCell:
    """The state of one DU's users (queues, mean channels) and its step."""

    def __init__(self, profile: DuProfile, cal: model.Calibration, seed: int) -> None:
        self.profile, self.cal = profile, cal
        self.user_slice = profile.user_slice
        self.demand_mbps = np.repeat([s.demand_mbps for s in profile.slices],
                                     [s.n_ues for s in profile.slices])
        self.burst = np.repeat([s.burst for s in profile.slices], [s.n_ues for s in profile.slices])
        self.queue_limit_bits = cal.cell.dl_queue_limit_bytes * 8.0
        self.idle_w = float(model.power_w(0.0, 0, 0.0, 0, 30.0, 0.0, cal.power))
        self.max_w = float(model.power_w(1.0, TOP_MCS, 0.0, 0, 30.0, 0.0, cal.power))
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Empty queues and new mean channels; the same seed gives the same episode."""
        if seed is not None:
            self._seed = seed
        self.rng = np.random.default_rng(self._seed)
        p = self.profile
        self.mean_cqi = np.clip(p.cqi_mean + self.rng.normal(0.0, p.cqi_spread, p.n_ues), 1.0, 15.0)
        self.queue_bits = np.zeros(p.n_ues)

    def step(self, prb_tti: np.ndarray, power_frac: np.ndarray, n_tti: int) -> StepKpis:
        """Serve `n_tti` TTIs: user u gets prb_tti[u] of the cell's PRB-TTIs at power_frac[u]
        of full power; the caller decides the split, so any scheduler can drive the cell."""
        if n_tti < 1:
            raise ValueError(f"n_tti must be >= 1, got {n_tti}")
        n, units = self.profile.n_ues, self.cal.cell.nof_prb * n_tti
        prb_tti = np.asarray(prb_tti, dtype=float)
        power_frac = np.asarray(power_frac, dtype=float)
        if prb_tti.shape != (n,) or power_frac.shape != (n,):
            raise ValueError(f"prb_tti and power_frac need one value per user ({n})")
        if np.any(prb_tti < 0):
            raise ValueError(f"prb_tti must be >= 0, got {prb_tti.min():g}")
        if prb_tti.sum() > units:
            raise ValueError(f"prb_tti: {prb_tti.sum():.0f} PRB-TTIs granted, "
                             f"{prb_tti.sum() - units:.0f} more than the {units} the cell has "
                             f"in {n_tti} TTIs")
        if np.any((power_frac < 0) | (power_frac > 1)):
            raise ValueError(f"power_frac must be in [0, 1], got {power_frac.min():g} to "
                             f"{power_frac.max():g}")
        rng = self.rng
        mean_arrival = self.demand_mbps * 1e6 * n_tti * model.TTI_S
        shape = 1.0 / np.maximum(self.burst, 1e-3) ** 2
        arrived = rng.gamma(shape, mean_arrival / shape)
        power_db = 10 * np.log10(np.maximum(power_frac, 1e-6))
        mean_snr = lte.cqi_to_snr_db(self.mean_cqi) + power_db
        snr = mean_snr + rng.normal(0.0, self.profile.fading_sigma_db, n)
        cqi = model.reported_cqi(mean_snr)
        mcs = model.la_mcs(cqi, "dl")
        success = 1.0 - model.bler(mcs, snr, "dl", self.cal.channel)
        per_unit = bits_per_prb_tti(mcs, self.cal.cell.nof_prb) * success * (power_frac > 0)
        offered = self.queue_bits + arrived
        delivered = np.minimum(offered, prb_tti * per_unit)
        used = np.where(per_unit > 0, np.minimum(prb_tti, np.ceil(delivered / np.maximum(
            per_unit, 1e-9))), 0.0)
        self.queue_bits = np.minimum(offered - delivered, self.queue_limit_bits)
        service_bits_per_ms = prb_tti * per_unit / n_tti
        delay = np.where(self.queue_bits <= 0, 0.0, np.minimum(
            MAX_DELAY_MS, self.queue_bits / np.maximum(service_bits_per_ms, 1e-9)))
        airtime = used.sum() / units
        weights = used / used.sum() if used.sum() else np.full(n, 1.0 / n)
        gain_db = 10 * np.log10(max(float(weights @ power_frac), 1e-6))
        power = float(model.power_w(airtime, float(weights @ mcs), 0.0, 0, 30.0, gain_db,
                                    self.cal.power))
        return StepKpis(arrived, delivered, self.queue_bits.copy(), delay, cqi.astype(float),
                        mcs.astype(float), used, power, n_tti)


def slice_qos(kpis: StepKpis, profile: DuProfile) -> np.ndarray:
    """QoS satisfaction of each slice in [0, 1] over a step:

    - eMBB: mean over users of min(1, delivered rate / mean demand);
    - URLLC: mean over users of min(1, delay target / queue delay) (1 within the target);
    - mMTC: share of devices that got their minimum rate, or all they offered if less.
    """
    seconds = kpis.n_tti * model.TTI_S
    rate_mbps = kpis.delivered_bits / seconds / 1e6
    offered_mbps = (kpis.delivered_bits + kpis.queue_bits) / seconds / 1e6
    masks = _slice_masks(profile)
    embb, urllc, mmtc = profile.slices
    return np.array([
        _mean(np.minimum(1.0, rate_mbps / max(embb.demand_mbps, 1e-9)), masks[0]),
        _mean(np.minimum(1.0, urllc.delay_target_ms / np.maximum(kpis.delay_ms, 1e-9)), masks[1]),
        _mean(rate_mbps >= np.minimum(mmtc.min_rate_mbps, offered_mbps) - 1e-9, masks[2]),
    ])


def _slice_masks(profile: DuProfile) -> list[np.ndarray]:
    return [profile.user_slice == k for k in range(len(SLICES))]


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(values[mask])) if mask.any() else 1.0
