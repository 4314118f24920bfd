"""The round probes a testbed adds to the engine (`drivers.protocols.RoundProbe`).

Each turns one driver into the few columns of the round's row it stands for, so the engine
stays the same whether a testbed measures its host, drives traffic or watches processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from drivers.host.metrics import HostMetrics
from drivers.traffic.iperf3 import Iperf3Traffic, TrafficError
from hil.base.liveness import ALIVE_CHECK_S, AliveChecker
from hil.base.scenarios import Scenario
from hil.bringup import Bringup

log = logging.getLogger(__name__)


@dataclass
class HostMetricsProbe:
    """CPU of the host, of the eNB process and of the UE process where one runs here, RAPL
    package power, over the round (the metrics name the eNB first, then the UE)."""

    metrics: HostMetrics
    _started: bool = field(default=False, init=False)

    def before_round(self, round_index: int) -> None:
        self.metrics.start()
        self._started = True

    def after_round(self) -> dict[str, Any]:
        if not self._started:  # the round failed before its start
            return {}
        self._started = False
        reading = self.metrics.stop()
        enb, *ue = reading.processes_cpu_pct.values()
        return {"host_cpu_pct": reading.host_cpu_pct, "enb_cpu_pct": enb,
                "ue_cpu_pct": ue[0] if ue else None, "rapl_power_w": reading.rapl_power_w}


@dataclass
class TrafficProbe:
    """Offers each round the demand the scenario (or trace) gives for it.

    A flow that ended without a usable report is logged, not held against the round: the
    new flows run all the same, and the round is measured by the eNB (what arrived at it
    is its demand), not by iperf3. Flows that cannot start (SshError) do fail the round.
    """

    traffic: Iperf3Traffic
    scenario: Scenario
    _offered: dict[str, Any] = field(default_factory=dict, init=False)

    def before_round(self, round_index: int) -> None:
        env = self.scenario.epochs(round_index, round_index + 1)
        dl_mbps, ul_mbps = float(env.dl_demand_mbps[0]), float(env.ul_demand_mbps[0])
        self._offered = {}
        try:
            self.traffic.set_demand(dl_mbps, ul_mbps)
        except TrafficError as exc:  # raised only after the new flows started
            log.warning("round %d: %s", round_index, exc)
        self._offered = {"traffic_dl_mbps": dl_mbps, "traffic_ul_mbps": ul_mbps}

    def after_round(self) -> dict[str, Any]:
        return self._offered


class WatchdogProbe:
    """Restarts a crashed srsRAN process (and what depends on it) between rounds.

    Whether the processes run is asked in a thread of its own (`hil.base.liveness`): a round
    reads the last answer, and only when it says one died (or could not be asked) does the
    round ask again itself and restart from the step that died. A crash is noticed within
    about `every_s`; the rounds in between are recorded invalid by their own failed
    exchanges, as before.
    """

    def __init__(self, bringup: Bringup, every_s: float = ALIVE_CHECK_S) -> None:
        self.bringup = bringup
        self._alive = AliveChecker(bringup.all_alive, every_s, name="srsran-alive")

    def before_round(self, round_index: int) -> None:
        if self._alive():
            return
        self.bringup.watch()
        self._alive.reset()

    def close(self) -> None:
        self._alive.close()

    def after_round(self) -> dict[str, Any]:
        return {"testbed_restarts": self.bringup.restarts,
                "testbed_stage": self.bringup.stage.label}
