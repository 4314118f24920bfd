"""Holding thresholds on a testbed that is up, as a run's rounds would, and reading what its
windows delivered: what the acceptance suite checks the caps with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.messages import UeWindowReply, WindowReply
from hil.config import HilConfig
from hil.testbeds import Testbed

UNCAPPED: dict[str, Any] = {"dl_max_mcs": None, "ul_max_mcs": None, "dl_prb_ratio": None,
                            "ul_prb_ratio": None, "dl_gain_db": None, "ue": None}
"""Every threshold lifted: a hold changes only what it names."""
SETTLE_S = 5.0
"""Testbed seconds a testbed is left after its traffic starts: the flows and the link
adaptation settle."""
RBG_SLACK_PRB = 3
"""A retransmission keeps its first size, so a scheduled TTI may exceed a PRB budget by up
to one DL resource block group (3 PRBs at 10 MHz)."""


def wait_testbed_s(cfg: HilConfig, testbed_s: float) -> None:
    """Let `testbed_s` of the testbed's time pass: wall seconds at the config's pace (its
    `period_s` per `round_s`); none when stepped (the next `get` simulates a round)."""
    time.sleep(testbed_s * cfg.period_s / cfg.round_s)


def keep_up(bed: Testbed) -> None:
    """What a run's round does before the vBS is set: each probe starts its round (the
    watchdog restarts a crashed process, iperf3 offers the scenario's demand, renewing its
    flows when they near their limit)."""
    for probe in bed.probes:
        probe.before_round(0)
        probe.after_round()


def hold(bed: Testbed, cfg: HilConfig, thresholds: dict[str, Any], testbed_s: float
         ) -> WindowReply:
    """Put `thresholds` in force (all others lifted), hold them, return their window."""
    keep_up(bed)
    return _held(bed, cfg, thresholds, testbed_s)


def _held(bed: Testbed, cfg: HilConfig, thresholds: dict[str, Any], testbed_s: float
          ) -> WindowReply:
    """`hold` on a testbed its probes have just kept up."""
    bed.ran.set({**UNCAPPED, **thresholds})
    wait_testbed_s(cfg, testbed_s)
    return bed.ran.get()


@dataclass(frozen=True)
class UeHold:
    """One hold under one UE power cap: what the UE and the eNB measured over it."""

    ue: UeWindowReply
    enb: WindowReply


def hold_ue(bed: Testbed, cfg: HilConfig, ue: RtctlClient, cap_dbm: float | None,
            testbed_s: float) -> UeHold:
    """The UE's power capped at `cap_dbm` (None: lifted), the eNB's thresholds lifted, held;
    both windows of the hold."""
    keep_up(bed)  # first: a UE the watchdog restarts would drop a cap set before it
    ue.set({"ul_max_tx_power_dbm": cap_dbm})
    enb_window = _held(bed, cfg, {}, testbed_s)
    ue_window = ue.get()
    assert isinstance(ue_window, UeWindowReply)
    return UeHold(ue_window, enb_window)


def rate_mbps(window: WindowReply, direction: str, rnti: int | None = None) -> float:
    """What the window delivered in one direction (to user `rnti`, or the cell's), per TTI
    counted (not per wall second: srsRAN over ZMQ runs slower than real time)."""
    kpis = window.cell if rnti is None else window.ue[rnti]
    bits = kpis.dl_bits_acked if direction == "dl" else kpis.ul_bits_ok
    return bits / (window.window.nof_tti * 1e-3) / 1e6 if window.window.nof_tti else 0.0


def cap_breaches(window: WindowReply, n_prb: int) -> list[str]:
    """How the window broke the caps in force (empty: it kept them): the vBS's own
    violation counters, and the MCS and PRBs it used against each cap."""
    applied, cell = window.applied, window.cell
    found = [f"cell violated {name} in {count} TTIs"
             for name, count in cell.violations.model_dump().items() if count]
    found += [f"user {rnti} violated {name} in {count} TTIs"
              for rnti, kpis in window.ue.items()
              for name, count in kpis.violations.model_dump().items() if count]
    for direction, cap, mean in (("DL", applied.dl_max_mcs, cell.dl_mcs_mean),
                                 ("UL", applied.ul_max_mcs, cell.ul_mcs_mean)):
        if cap is not None and mean > cap + 1e-9:
            found.append(f"{direction} MCS {mean:.2f} above its cap {cap}")
    # TTIs in which a user waited for signalling are exempt from the budget (PROTOCOL.md
    # 5.2) and may use the whole band; every other scheduled TTI keeps within it
    for direction, ratio, prb_tti, sched_tti, exempt in (
            ("DL", applied.dl_prb_ratio, cell.dl_prb_tti, cell.dl_sched_tti,
             cell.signalling_exempt.dl_prb),
            ("UL", applied.ul_prb_ratio, cell.ul_prb_tti, cell.ul_sched_tti,
             cell.signalling_exempt.ul_prb)):
        if ratio is None:
            continue
        capped_tti = max(0, sched_tti - exempt)
        allowed = capped_tti * (ratio * n_prb + RBG_SLACK_PRB) + min(exempt, sched_tti) * n_prb
        if prb_tti > allowed:
            found.append(f"{direction} used {prb_tti} PRB-TTIs, more than the {allowed:.0f} "
                         f"its ratio {ratio} allows")
    return found
