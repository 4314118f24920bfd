"""The emulated vBS serving several users in slices (eMBB, URLLC, mMTC), for schedulers that
cap users (`hil run ... --agent metahrl`).

It speaks rtctl v1 exactly like `drivers.emulated.vbs.EmulatedVbs` (same server, clock,
windows and meter) but simulates one DU of `hil.base.slices` instead of one user:
users get RNTIs FIRST_RNTI, FIRST_RNTI + 1, ... in slice order, and every `BLOCK_TTI` TTIs
the cell grants PRBs as the thresholds allow:

- a user with a per-user cap (`thresholds.ue.<rnti>.dl_max_prb`) gets up to that many PRBs
  per TTI; users without one share what the caps leave of the cell's DL budget
  (`dl_prb_ratio`) equally; if the caps add up to more than the budget they are scaled
  down, so the cell never grants more than its budget (violations stay 0);
- the DL gain scales every user's transmit power (the model's power fraction).

The window reports each user's KPIs under its RNTI, with the QCI of its slice
(`hil.base.slices.SLICE_QCI`), and their sums as the cell's; the UL is
idle (this DU model is downlink only). MCS caps are accepted and echoed but not modelled
here: the slicing model's link adaptation picks the MCS.
"""

from __future__ import annotations

import numpy as np

from drivers.emulated.vbs import EmulatedVbs, TtiClock
from drivers.rtctl.messages import CapCounters, CellKpis, Thresholds, UserKpis
from hil.base import model
from hil.base.slices import SLICE_QCI, DuProfile, SlicedCell, StepKpis

FIRST_RNTI = 70
BLOCK_TTI = 100  # a 1 s round is 10 steps of the DU model (which costs ~0.3 ms a step)
_ZERO = CapCounters(dl_mcs=0, dl_prb=0, ul_mcs=0, ul_prb=0)


def user_rntis(profile: DuProfile) -> list[int]:
    """The RNTIs of a DU's users, in slice order (the order of `profile.user_slice`)."""
    return list(range(FIRST_RNTI, FIRST_RNTI + profile.n_ues))


def grant_prbs(caps: list[int | None], budget: int) -> np.ndarray:
    """PRBs per TTI for each user: caps where given, the rest of `budget` shared equally
    (largest remainder) by the uncapped; caps scaled down if they exceed the budget."""
    capped = np.array([c is not None for c in caps])
    want = np.array([c or 0 for c in caps], dtype=float)
    if want.sum() > budget:
        want = want * budget / want.sum()
    grant = np.floor(want + 1e-9)
    left = budget - grant.sum()
    free = np.flatnonzero(~capped)
    if len(free):
        share = np.full(len(free), left / len(free))
        grant[free] = np.floor(share)
        extra = int(round(left - grant[free].sum()))
        grant[free[:extra]] += 1
    return grant.astype(np.int64)


class _UserSums:
    """A window's running sums per user."""

    def __init__(self, n_ues: int) -> None:
        self.arrived = np.zeros(n_ues)
        self.delivered = np.zeros(n_ues)
        self.prb_tti = np.zeros(n_ues)
        self.sched_tti = np.zeros(n_ues)
        self.mcs_sum = np.zeros(n_ues)   # over scheduled TTIs
        self.cqi_sum = np.zeros(n_ues)   # over all TTIs
        self.nof_tti = 0

    def add(self, k: StepKpis) -> None:
        scheduled = np.minimum(k.prb_tti_used, k.n_tti)
        self.arrived += k.arrived_bits
        self.delivered += k.delivered_bits
        self.prb_tti += k.prb_tti_used
        self.sched_tti += scheduled
        self.mcs_sum += k.mcs * scheduled
        self.cqi_sum += k.cqi * k.n_tti
        self.nof_tti += k.n_tti


class SlicedVbs(EmulatedVbs):
    """EmulatedVbs whose TTIs are those of a sliced DU with several users."""

    def __init__(self, cal: model.Calibration, profile: DuProfile, *, seed: int,
                 clock: TtiClock | None = None, defaults: Thresholds | None = None) -> None:
        self.profile = profile
        self.rntis = user_rntis(profile)
        self._cell = SlicedCell(profile, cal, seed=seed)
        self._users = _UserSums(profile.n_ues)
        self._queue_bits = np.zeros(profile.n_ues)
        super().__init__(cal, scenario=None, seed=seed, clock=clock, defaults=defaults)

    def _caps_for(self, thr: Thresholds) -> tuple[np.ndarray, float]:  # type: ignore[override]
        """PRBs per TTI per user, and the power fraction of the DL gain."""
        caps = [c.dl_max_prb if (c := thr.ue.get(r)) else None for r in self.rntis]
        budget = int(model.prb_budget(thr.dl_prb_ratio, self.cal.cell))
        return grant_prbs(caps, budget), float(10 ** (thr.dl_gain_db / 10))

    def catch_up(self) -> int:
        now = self.due_tti()
        prb, power_frac = self._caps
        power = np.full(self.profile.n_ues, power_frac)
        while self._tti + BLOCK_TTI <= now:
            kpis = self._cell.step(prb * BLOCK_TTI, power, BLOCK_TTI)
            self._users.add(kpis)
            self._queue_bits = kpis.queue_bits
            self._meter.nof_tti += BLOCK_TTI
            self._meter.energy_j += kpis.power_w * BLOCK_TTI * model.TTI_S
            self._tti += BLOCK_TTI
        return self._tti

    def take_kpis(self) -> tuple[CellKpis, dict[int, UserKpis]]:
        """The cell's KPIs and each user's, with the QCI of its slice (how a scheduler on the
        controller tells the user's slice, as it would from srsENB)."""
        s, self._users = self._users, _UserSums(self.profile.n_ues)
        qci = [SLICE_QCI[k] for k in self.profile.user_slice]
        users = {r: UserKpis(**dict(_kpis(s, i, s.nof_tti, self._queue_bits[i])), qci=qci[i])
                 for i, r in enumerate(self.rntis)}
        return _kpis(s, slice(None), s.nof_tti, self._queue_bits.sum()), users


def _count(values: np.ndarray, who: int | slice) -> int:
    """Whole bits (or PRB-TTIs) per user, so that the cell's count is the sum of its users'."""
    return int(np.sum(np.floor(values[who])))


def _kpis(s: _UserSums, who: int | slice, nof_tti: int, queue_bits: float) -> CellKpis:
    """One user's KPIs (an index) or the cell's (a slice over all users: sums)."""
    sched = float(np.sum(s.sched_tti[who]))
    return CellKpis(
        dl_bits_acked=_count(s.delivered, who), ul_bits_ok=0,
        dl_bits_arrived=_count(s.arrived, who), ul_bits_arrived=0,
        dl_prb_tti=_count(s.prb_tti, who), ul_prb_tti=0,
        dl_sched_tti=int(min(sched, nof_tti) if isinstance(who, slice) else sched),
        ul_sched_tti=0,
        dl_mcs_mean=float(np.sum(s.mcs_sum[who]) / sched) if sched else 0.0, ul_mcs_mean=0.0,
        dl_cqi_mean=float(np.mean(s.cqi_sum[who]) / nof_tti) if nof_tti else 0.0,
        ul_snr_mean=0.0, dl_backlog_bytes=int(queue_bits // 8), ul_backlog_bytes=0,
        dl_bler=0.0, ul_bler=0.0, cap_hits=_ZERO, violations=_ZERO)
