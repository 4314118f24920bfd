"""The bring-up state machine: order up and down, restart of a dead step and what follows it."""

from __future__ import annotations

import threading

import pytest

from hil.base.errors import HilError
from hil.bringup import Bringup, BringupError, Stage, Step


class FakeProgram:
    """Records every up/down in a shared journal; `dead` simulates a crash."""

    def __init__(self, name: str, journal: list[str], fail_up: bool = False) -> None:
        self.name, self.journal, self.fail_up = name, journal, fail_up
        self.running = False

    def up(self) -> None:
        self.journal.append(f"up {self.name}")
        self.running = True
        if self.fail_up:
            raise HilError(f"{self.name} did not become ready")

    def down(self) -> None:
        self.journal.append(f"down {self.name}")
        self.running = False

    def step(self, stage: Stage) -> Step:
        return Step(stage, self.name, self.up, self.down, lambda: self.running)


def chain(journal: list[str], failing: str | None = None, max_restarts: int = 3):
    names = {Stage.CORE_UP: "epc", Stage.ENB_UP: "enb", Stage.UE_ATTACHED: "ue",
             Stage.TRAFFIC_ON: "traffic"}
    programs = {name: FakeProgram(name, journal, fail_up=name == failing)
                for name in names.values()}
    steps = [programs[name].step(stage) for stage, name in names.items()]
    return Bringup(steps, max_restarts=max_restarts), programs


LEFTOVERS_DOWN = ["down traffic", "down ue", "down enb", "down epc"]
"""What `up` does first: whatever a killed controller left running goes, last first."""


def test_up_goes_core_enb_ue_traffic_and_down_goes_back_in_reverse():
    journal: list[str] = []
    bringup, _ = chain(journal)
    bringup.up()
    assert bringup.stage is Stage.TRAFFIC_ON
    bringup.down()
    assert bringup.stage is Stage.OFF
    assert journal == [*LEFTOVERS_DOWN, "up epc", "up enb", "up ue", "up traffic",
                       "down traffic", "down ue", "down enb", "down epc"]


def test_up_first_stops_a_chain_a_killed_controller_left_running_ue_first():
    journal: list[str] = []
    bringup, programs = chain(journal)
    for program in programs.values():  # what a SIGKILLed run left on its hosts
        program.running = True
    bringup.up()
    assert journal == [*LEFTOVERS_DOWN, "up epc", "up enb", "up ue", "up traffic"]


def test_a_failed_step_is_stopped_and_what_came_up_before_it_is_taken_down():
    journal: list[str] = []
    bringup, programs = chain(journal, failing="ue")
    with pytest.raises(HilError, match="ue did not become ready"):
        bringup.up()
    assert journal == [*LEFTOVERS_DOWN, "up epc", "up enb", "up ue", "down ue", "down enb",
                       "down epc"]
    assert bringup.stage is Stage.OFF
    assert not any(program.running for program in programs.values())


def test_a_crashed_enb_is_restarted_with_the_ue_and_traffic_that_depend_on_it():
    journal: list[str] = []
    bringup, programs = chain(journal)
    bringup.up()
    assert bringup.watch() is None  # all alive: nothing done
    journal.clear()
    programs["enb"].running = False
    assert bringup.watch() == "enb"
    assert journal == ["down traffic", "down ue", "down enb", "up enb", "up ue", "up traffic"]
    assert bringup.stage is Stage.TRAFFIC_ON and bringup.restarts == 1


def test_after_max_restarts_the_next_crash_gives_up_naming_the_step():
    journal: list[str] = []
    bringup, programs = chain(journal, max_restarts=1)
    bringup.up()
    programs["ue"].running = False
    bringup.watch()
    programs["ue"].running = False
    with pytest.raises(BringupError, match="ue died again after 1 restarts"):
        bringup.watch()


def test_teardown_tries_every_step_and_reports_the_ones_that_failed():
    journal: list[str] = []
    bringup, programs = chain(journal)
    bringup.up()

    def broken_down() -> None:
        raise HilError("connection lost")
    bringup.steps[1] = Step(Stage.ENB_UP, "enb", programs["enb"].up, broken_down, lambda: True)
    with pytest.raises(BringupError, match="enb: connection lost"):
        bringup.down()
    assert "down epc" in journal and bringup.stage is Stage.OFF


def test_a_step_marked_down_beside_previous_goes_down_while_the_one_before_it_does():
    journal: list[str] = []
    bringup, programs = chain(journal)
    enb_going = threading.Event()

    def enb_down() -> None:
        enb_going.set()
        programs["enb"].down()

    def ue_down() -> None:  # srsUE waiting for a detach that does not come
        assert enb_going.wait(5), "the eNB went only after the UE"
        programs["ue"].down()
    steps = bringup.steps
    steps[1] = Step(Stage.ENB_UP, "enb", programs["enb"].up, enb_down, lambda: True)
    steps[2] = Step(Stage.UE_ATTACHED, "ue", programs["ue"].up, ue_down, lambda: True,
                    down_beside_previous=True)
    bringup.up()
    bringup.down()
    assert journal[-1] == "down epc" and set(journal[-3:-1]) == {"down ue", "down enb"}
    assert bringup.stage is Stage.OFF


def test_steps_must_reach_increasing_stages():
    step = FakeProgram("x", []).step(Stage.ENB_UP)
    with pytest.raises(ValueError, match="increasing"):
        Bringup([step, step])
