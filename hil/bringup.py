"""The testbed's bring-up state machine: off -> core up -> eNB up -> UE attached -> traffic on.

A testbed is a chain of steps, each needing the ones before it (the eNB registers with the
core, the UE attaches through the eNB, traffic flows through the UE). `up` walks the chain
forward; `down` walks back from the last step reached, so traffic stops first, the UE
goes while its eNB does (it sends its detach at once: `Step.down_beside_previous`) and the
core goes last; `watch`, called between rounds, finds a step whose process has
died, takes down the steps after it (they lost what they stood on) and brings them all up
again, at most `max_restarts` times per run, then gives up with the reason (`all_alive`
only asks, for a watcher that asks off the round's critical path: `hil.probes`).

The steps are plain callables, so the machine is tested without srsRAN;
`hil.testbeds.srsran_processes` builds the srsRAN chain from a config.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hil.base.errors import HilError

log = logging.getLogger(__name__)


class Stage(enum.IntEnum):
    OFF = 0
    CORE_UP = 1
    ENB_UP = 2
    UE_ATTACHED = 3
    TRAFFIC_ON = 4

    @property
    def label(self) -> str:
        """As a round's `testbed_stage` records it."""
        return ("off", "core up", "eNB up", "UE attached", "traffic on")[self]


class BringupError(HilError):
    """A step of the testbed could not be brought up, or kept up."""


@dataclass(frozen=True)
class Step:
    """Reaching `stage`: `up` brings it up (raises HilError), `alive` says it still is.

    `down_beside_previous`: its `down` may run at the same time as that of the step before
    it, for a step whose going needs nothing from the one below (srsUE, which sends its detach
    at once and then waits up to 5 s for a release that srsRAN's ZMQ radio never brings,
    while srsENB takes 3.5 s to stop, measured: down in 5.3 s instead of 8.8)."""

    stage: Stage
    name: str
    up: Callable[[], None]
    down: Callable[[], None]
    alive: Callable[[], bool]
    down_beside_previous: bool = False


class Bringup:
    def __init__(self, steps: Sequence[Step], *, max_restarts: int = 3) -> None:
        stages = [step.stage for step in steps]
        if stages != sorted(stages) or len(set(stages)) != len(stages):
            raise ValueError(f"steps must reach increasing stages, got {stages}")
        self.steps = list(steps)
        self.max_restarts = max_restarts
        self.stage = Stage.OFF
        self.restarts = 0

    def up(self) -> None:
        """Bring every step up in order; on a failure, take down what came up, then raise.

        Every step is first taken down, last first: a controller killed before its teardown
        leaves its chain running, and a chain brought up beside those leftovers did not
        attach its UE (measured on srsRAN over ZMQ: nothing after "Attaching UE..." for
        120 s)."""
        for failure in _take_down(self.steps):
            log.warning("stopping a leftover %s", failure)
        try:
            self._up_from(0)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Take the reached steps down, last first; every step is tried even if one fails."""
        failures = _take_down(self.steps[:self._reached()])
        self.stage = Stage.OFF
        if failures:
            raise BringupError("teardown incomplete: " + "; ".join(failures))

    def all_alive(self) -> bool:
        """Whether every step reached is still up (asks each; restarts nothing)."""
        return all(step.alive() for step in self.steps[:self._reached()])

    def watch(self) -> str | None:
        """Restart from the first step found dead; what was restarted, or None if all live."""
        for index in range(self._reached()):
            step = self.steps[index]
            if step.alive():
                continue
            if self.restarts >= self.max_restarts:
                raise BringupError(f"{step.name} died again after {self.restarts} restarts; "
                                   "giving up (see its log)")
            self.restarts += 1
            log.warning("%s died: restarting it and what depends on it (restart %d of %d)",
                        step.name, self.restarts, self.max_restarts)
            for failure in _take_down(self.steps[index:self._reached()]):
                log.warning("stopping %s", failure)
            self.stage = self.steps[index - 1].stage if index else Stage.OFF
            self._up_from(index)
            return step.name
        return None

    def _up_from(self, index: int) -> None:
        for step in self.steps[index:]:
            log.info("bring-up: %s", step.name)
            try:
                step.up()
            except BaseException:
                try:  # a process that started but never became ready must not linger
                    step.down()
                except HilError as exc:
                    log.warning("stopping %s after its failed start: %s", step.name, exc)
                raise
            self.stage = step.stage

    def _reached(self) -> int:
        """How many steps are up."""
        return sum(step.stage <= self.stage for step in self.steps) if self.stage else 0


def _take_down(steps: Sequence[Step]) -> list[str]:
    """Take `steps` down, last first, each marked `down_beside_previous` at the same time as
    the one before it; every step is tried. Returns the failures, as "name: error"."""
    def attempt(step: Step) -> str | None:
        try:
            step.down()
        except HilError as exc:
            return f"{step.name}: {exc}"
        return None

    outcomes: list[str | None] = []
    index = len(steps) - 1
    while index >= 0:
        if steps[index].down_beside_previous and index:
            with ThreadPoolExecutor(max_workers=2) as pool:
                outcomes += pool.map(attempt, steps[index - 1:index + 1])
            index -= 2
        else:
            outcomes.append(attempt(steps[index]))
            index -= 1
    return [failure for failure in outcomes if failure is not None]
