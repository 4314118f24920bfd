"""The round engine: owns timing, learning order, recording and safe stopping.

One round, on a monotonic clock with period ``round_s / speedup`` (none when stepped: the
emulated vBS's `get` then simulates the round's TTIs, and step 3 is skipped):

1. the agent selects a policy (from what the previous round showed);
2. the probes start the round (the watchdog restarts a crashed process, traffic gets the
   round's demand, host metrics open their window); ``set`` pushes the thresholds: the vBS
   applies them and opens the round's KPI window; the meter starts its window;
3. wait for the round's deadline;
4. ``get`` closes the KPI window (measured entirely under this round's policy) and the
   meter reports the round's mean power;
5. the reward is computed; the agent learns, but only from a valid round;
6. the row is recorded (on disk before the next round starts); a checkpoint every N rounds.

A round whose control or meter exchange failed, whose window is empty or whose vBS applied
other thresholds than asked is recorded with ``valid = False`` and its reason, and is not
learned from. If the work between rounds runs past a deadline, the overrun is recorded and
the schedule skips to the next deadline that leaves at least half a window.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.base import Agent, Context, Decision, UserReport
from agents.policy_space import Policy, PolicySpace
from drivers.protocols import PowerMeter, PowerReading, RanControl, RoundProbe
from drivers.rtctl.messages import Thresholds, UserKpis, WindowReply
from hil import reward as rw
from hil.base import lte
from hil.base.errors import HilError, ResumeError
from hil.base.thresholds import POLICY_FIELDS
from hil.journal import RoundRecorder
from hil.recorder import RunDirectory

RoundCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class EngineParams:
    period_s: float
    checkpoint_every: int
    reward: rw.RewardParams
    give_up_after_invalid: int  # consecutive invalid rounds: the testbed is not working


@dataclass(frozen=True)
class RunOutcome:
    status: str  # "completed" | "interrupted" | "failed"
    reason: str
    next_round: int


STAGES = ("agent", "control", "meter", "record", "probes")
OVERHEADS_KEPT = 100_000


class RoundTimes:
    """Where the controller's time goes: wall time per stage, summed over the rounds, and
    each round's overhead (the wall time it did not spend waiting for its deadline), the
    last OVERHEADS_KEPT of them for percentiles, so a run of months stays bounded. What
    `hil bench` prints; a few perf_counter calls per round."""

    def __init__(self) -> None:
        self.stage_s = dict.fromkeys(STAGES, 0.0)
        self.rounds = 0
        self.overhead_s = 0.0
        self.overhead_ms: collections.deque[float] = collections.deque(maxlen=OVERHEADS_KEPT)

    def add(self, stage: str, since_s: float) -> float:
        """Count the time since `since_s` (perf_counter) to `stage`; returns now."""
        now = time.perf_counter()
        self.stage_s[stage] += now - since_s
        return now

    def end_round(self, overhead_s: float) -> None:
        self.rounds += 1
        self.overhead_s += overhead_s
        self.overhead_ms.append(1e3 * overhead_s)

    def breakdown_ms(self) -> dict[str, float]:
        """Mean ms per round of each stage and of the rest (`other`)."""
        rounds = max(self.rounds, 1)
        out = {stage: 1e3 * total / rounds for stage, total in self.stage_s.items()}
        out["other"] = max(0.0, 1e3 * self.overhead_s / rounds - sum(out.values()))
        return out


class _InvalidRound(Exception):
    """A measurement problem that makes this round invalid but lets the run go on."""


def _thresholds(policy: Policy, decision: Decision) -> dict[str, Any]:
    """What `set` asks for: the policy's cell caps, plus the decision's per-user caps."""
    thresholds: dict[str, Any] = policy.to_thresholds()
    if decision.ue_dl_max_prb:
        thresholds["ue"] = {rnti: {"dl_max_prb": cap}
                            for rnti, cap in decision.ue_dl_max_prb.items()}
    return thresholds


def _applied_matches(policy: Policy, decision: Decision, applied: Thresholds) -> bool:
    cell = all(
        getattr(applied, key) is not None and math.isclose(getattr(applied, key), want)
        for key, want in policy.to_thresholds().items()
    )
    return cell and all(rnti in applied.ue and applied.ue[rnti].dl_max_prb == cap
                        for rnti, cap in decision.ue_dl_max_prb.items())


class RoundEngine:
    def __init__(
        self, *, space: PolicySpace, agent: Agent, ran: RanControl, meter: PowerMeter,
        run_dir: RunDirectory, recorder: RoundRecorder, params: EngineParams,
        on_round: RoundCallback | None = None, probes: Sequence[RoundProbe] = (),
    ) -> None:
        self.space, self.agent, self.ran, self.meter = space, agent, ran, meter
        self.probes = list(probes)
        self.run_dir, self.recorder, self.params = run_dir, recorder, params
        self.on_round = on_round
        self.context = Context()
        self.next_round = 0  # the first round not yet recorded
        self.times = RoundTimes()
        self._t_origin = time.monotonic()
        self._invalid_in_a_row = 0
        self._last_invalid_reason: str | None = None

    # ------------------------------------------------------------------ resume
    def replay(self, rows: list[dict[str, Any]]) -> None:
        """Bring the agent from its checkpoint to the last recorded round, exactly.

        Agents are deterministic given their state, so selecting again must give the recorded
        policy; the recorded reward is then learned as it was live.
        """
        for row in rows:
            decision = self.agent.select(self.context)
            recorded = _recorded_user_caps(row)
            if decision.action != row["policy_index"] or (
                    recorded is not None and dict(decision.ue_dl_max_prb) != recorded):
                raise ResumeError(
                    f"round {row['round']}: the agent restored from the checkpoint chose policy "
                    f"{decision.action} (user caps {dict(decision.ue_dl_max_prb)}), the recording "
                    f"says {row['policy_index']} ({recorded}); the checkpoint "
                    f"and {self.run_dir.journal_path.name} do not belong together")
            if row["valid"]:
                self.context = _context_from(row)
                self.agent.update(decision, row["reward"], self.context)
            self.next_round = row["round"] + 1

    # ------------------------------------------------------------------ the loop
    def run(self, first_round: int, last_round: int, stop: threading.Event) -> RunOutcome:
        """Rounds first_round .. last_round-1; returns after the round in flight when stopped."""
        next_start = time.monotonic()
        self.next_round = k = first_round
        while k < last_round:
            if stop.is_set():
                return RunOutcome("interrupted", "stopped by signal", k)
            row, next_start = self.play_round(next_start)
            k = self.next_round
            if (reason := self.giving_up()) is not None:
                return RunOutcome("failed", reason, k)
        return RunOutcome("completed", f"ran {last_round} rounds", k)

    def play_round(self, start_nominal: float) -> tuple[dict[str, Any], float]:
        """Round `next_round`, nominally starting at `start_nominal` (monotonic): played,
        recorded (on disk before this returns), checkpointed when due. Returns its row and
        the next round's nominal start."""
        k = self.next_round
        row, next_start, busy_s = self._round(k, start_nominal, self.params.period_s)
        t0 = time.perf_counter()
        self.recorder.append(row)
        self.next_round = k + 1
        if self.next_round % self.params.checkpoint_every == 0:
            self.checkpoint(self.next_round)
        self.times.add("record", t0)
        if self.on_round:
            self.on_round(row)
        self.times.end_round(busy_s + time.perf_counter() - t0)
        self._invalid_in_a_row = 0 if row["valid"] else self._invalid_in_a_row + 1
        self._last_invalid_reason = row["invalid_reason"]
        return row, next_start

    def giving_up(self) -> str | None:
        """Why the testbed is taken for not working (too many invalid rounds in a row)."""
        if self._invalid_in_a_row < self.params.give_up_after_invalid:
            return None
        return (f"{self._invalid_in_a_row} invalid rounds in a row; the last: "
                f"{self._last_invalid_reason}")

    def checkpoint(self, next_round: int) -> None:
        self.run_dir.save_checkpoint({"round": next_round, "agent": self.agent.state_dict(),
                                      "context": self.context})

    def _round(self, k: int, start_nominal: float,
               period: float) -> tuple[dict[str, Any], float, float]:
        """One round: (its row, the next round's nominal start, the wall time it spent
        working rather than waiting for its deadline)."""
        times = self.times
        t_begin = time.perf_counter()
        decision = self.agent.select(self.context)
        t = times.add("agent", t_begin)
        policy = self.space.policy(decision.action)
        row = self._base_row(k, decision, policy)
        t_start = time.monotonic()
        row["t_start_s"] = t_start - self._t_origin
        row["overrun_s"] = max(0.0, t_start - start_nominal) if period else 0.0

        opened = None
        metering = False
        try:
            for probe in self.probes:  # first: the watchdog restarts a dead vBS before `set`
                probe.before_round(k)
            t = times.add("probes", t)
            opened = self.ran.set(_thresholds(policy, decision))
            t = times.add("control", t)
            self.meter.start()
            metering = True
            t = times.add("meter", t)
        except HilError as exc:
            row["invalid_reason"] = f"apply: {exc}"

        end_nominal = start_nominal + period
        busy_s = time.perf_counter() - t_begin
        if period:  # stepped (no period): the `get` below simulates the window
            while end_nominal - time.monotonic() < period / 2:
                end_nominal += period  # overran: skip to a deadline that leaves half a window
            time.sleep(max(0.0, end_nominal - time.monotonic()))

        t_wake = t = time.perf_counter()
        try:
            closed = self.ran.get()
            t = times.add("control", t)
            reading = self.meter.stop() if metering else None  # nothing to read if `set` failed
            t = times.add("meter", t)
            for probe in self.probes:
                row.update(probe.after_round())
            t = times.add("probes", t)
            if opened is not None:
                self._measure(row, policy, decision, opened, closed, reading)
        except HilError as exc:
            row["invalid_reason"] = row["invalid_reason"] or f"measure: {exc}"
        except _InvalidRound as exc:
            row["invalid_reason"] = str(exc)

        row["valid"] = row["invalid_reason"] is None
        if row["valid"]:  # what the round measured is both its feedback and the next context
            self.context = _context_from(row)
            t = time.perf_counter()
            self.agent.update(decision, row["reward"], self.context)
            times.add("agent", t)
        row["t_end_s"] = time.monotonic() - self._t_origin
        return row, end_nominal, busy_s + time.perf_counter() - t_wake

    def _base_row(self, k: int, decision: Decision, policy: Policy) -> dict[str, Any]:
        row: dict[str, Any] = {
            "round": k, "time_utc": datetime.now(UTC),
            "policy_index": decision.action, "policy_prob": decision.prob,
            "invalid_reason": None, "valid": False,
        }
        row.update({f"policy_{key}": value for key, value in policy._asdict().items()})
        return row

    def _measure(self, row: dict[str, Any], policy: Policy, decision: Decision,
                 opened: WindowReply, closed: WindowReply, reading: PowerReading) -> None:
        applied = opened.applied
        row["applied_tti"] = opened.applied_tti
        row.update({f"applied_{key}": getattr(applied, key) for key in POLICY_FIELDS})
        window, cell = closed.window, closed.cell
        row.update(nof_tti=window.nof_tti, window_s=window.wall_s)
        if window.nof_tti <= 0:
            raise _InvalidRound("empty KPI window (the vBS counted no TTI)")
        if not closed.ue:
            raise _InvalidRound("no user in the KPI window: the UE is detached, or not yet "
                                "attached again")
        if cell.dl_cqi_mean == 0 and cell.dl_bits_acked == 0 and cell.ul_bits_ok == 0:
            raise _InvalidRound("the link carried nothing and no CQI was reported: the UE is "
                                "out of sync or attaching again")
        if not _applied_matches(policy, decision, applied):
            raise _InvalidRound("the vBS applied other thresholds than requested")

        seconds = window.nof_tti * 1e-3  # rates per TTI time: srsRAN may run slower than real time
        start = opened.cell
        row.update(
            dl_arrived_mbps=(start.dl_backlog_bytes * 8 + cell.dl_bits_arrived) / seconds / 1e6,
            ul_arrived_mbps=(start.ul_backlog_bytes * 8 + cell.ul_bits_arrived) / seconds / 1e6)
        dl_demand, ul_demand = round_demand(row)
        row.update(
            dl_bits=cell.dl_bits_acked, ul_bits=cell.ul_bits_ok,
            dl_rate_mbps=cell.dl_bits_acked / seconds / 1e6,
            ul_rate_mbps=cell.ul_bits_ok / seconds / 1e6,
            dl_demand_mbps=dl_demand, ul_demand_mbps=ul_demand,
            dl_cqi=cell.dl_cqi_mean, ul_snr_db=cell.ul_snr_mean,
            dl_mcs=cell.dl_mcs_mean, ul_mcs=cell.ul_mcs_mean,
            dl_prb=cell.dl_prb_tti / window.nof_tti, ul_prb=cell.ul_prb_tti / window.nof_tti,
            dl_bler=cell.dl_bler, ul_bler=cell.ul_bler,
            violations=sum(cell.violations.model_dump().values()),
            power_w=reading.power_w, energy_j=reading.energy_j,
            meter_coverage=reading.coverage,
        )
        row.update(_per_user(decision, opened.ue, closed.ue, seconds))
        u, raw, f = rw.reward(row["dl_rate_mbps"], dl_demand, row["ul_rate_mbps"], ul_demand,
                              reading.power_w, self.params.reward)
        row.update(utility=float(u), reward_raw=float(raw), reward=float(f))


def round_demand(row: dict[str, Any]) -> tuple[float, float]:
    """The round's DL and UL demand (Mb/s per TTI time), which the reward divides by.

    Where a traffic generator reports the rate it offered (`traffic_*_mbps`, wall clock),
    that rate in TTI time (the link may run slower than real time): a full queue at the vBS
    drops what it cannot hold, so what arrived there undercounts what was asked of it
    whenever a cap binds (measured on srsRAN: 5 Mb/s "arrived" of 36 offered under the
    smallest caps). Without a generator (the emulated vBS, which drops nothing before
    counting), what arrived, the backlog at the window start included (`*_arrived_mbps`).
    """
    tti_per_wall = row["nof_tti"] * 1e-3 / row["window_s"] if row.get("window_s") else None
    out = []
    for direction in ("dl", "ul"):
        offered = row.get(f"traffic_{direction}_mbps")
        out.append(offered / tti_per_wall if offered is not None and tti_per_wall
                   else row[f"{direction}_arrived_mbps"])
    return out[0], out[1]


def _recorded_user_caps(row: dict[str, Any]) -> dict[int, int] | None:
    """The per-user caps a recorded round asked for; None if the round recorded no users."""
    if not row.get("ue_rnti"):
        return None
    return {r: c for r, c in zip(row["ue_rnti"], row["ue_dl_max_prb"]) if c is not None}


def _per_user(decision: Decision, opened: dict[int, UserKpis], closed: dict[int, UserKpis],
              seconds: float) -> dict[str, list[Any]]:
    """The `ue_*` columns: each reported user's DL over the window, and the cap asked for it."""
    rntis = sorted(closed)

    def demand(rnti: int) -> float:
        start = opened[rnti].dl_backlog_bytes * 8 if rnti in opened else 0
        return (start + closed[rnti].dl_bits_arrived) / seconds / 1e6

    return {
        "ue_rnti": rntis,
        "ue_dl_max_prb": [decision.ue_dl_max_prb.get(r) for r in rntis],
        "ue_dl_rate_mbps": [closed[r].dl_bits_acked / seconds / 1e6 for r in rntis],
        "ue_dl_demand_mbps": [demand(r) for r in rntis],
        "ue_dl_backlog_bytes": [closed[r].dl_backlog_bytes for r in rntis],
        "ue_dl_cqi": [closed[r].dl_cqi_mean for r in rntis],
        "ue_dl_mcs": [closed[r].dl_mcs_mean for r in rntis],
        "ue_dl_prb": [closed[r].dl_prb_tti / (seconds * 1e3) for r in rntis],
        "ue_qci": [closed[r].qci for r in rntis],
    }


def _context_from(row: dict[str, Any]) -> Context:
    """What a contextual agent may know before the next decision: the last valid round."""
    ul_snr = row.get("ul_snr_db")
    columns = ("ue_rnti", "ue_dl_demand_mbps", "ue_dl_rate_mbps", "ue_dl_backlog_bytes",
               "ue_dl_cqi", "ue_dl_mcs", "ue_dl_prb", "ue_qci")
    n_users = len(row.get("ue_rnti") or ())
    # runs recorded before the QCI was reported have no `ue_qci`: their users' QCIs are unknown
    users = tuple(UserReport(*values) for values in zip(
        *(row.get(c) or [None] * n_users for c in columns)))
    return Context(
        dl_cqi=row.get("dl_cqi"),
        ul_cqi=None if ul_snr is None else float(lte.snr_db_to_cqi(ul_snr)),
        dl_demand_mbps=row.get("dl_demand_mbps"), ul_demand_mbps=row.get("ul_demand_mbps"),
        users=users,
    )
