"""The kinds of testbed, one module each: what the engine, `hil check` and `hil collect` ask
of a kind instead of testing `vbs.kind` (labgrid's strategies are the model).

A kind's config is a member of the union `hil.config.VbsConfig`, which names the module
(`testbed_module`); the module's `TESTBED` is a `TestbedKind`. A new kind of vBS is its
config class in that union and one new module here.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from drivers.protocols import PowerMeter, RanControl, RoundProbe
from hil.base.errors import HilError

if TYPE_CHECKING:  # types only: hil.config names the kinds' modules, it imports none
    from hil.config import HilConfig, ScenarioConfig

@dataclass(frozen=True)
class Warn:
    """What a check found that works but that the operator must hear on every run (a
    risk they chose), printed as a WARN line."""

    detail: str


Check = Callable[[], "str | Warn"]
"""A check of `hil check`: returns what it found, or raises HilError saying what to fix."""


class TestbedError(HilError):
    """The testbed could not be brought up."""


@dataclass
class Testbed:
    """A testbed that is up: what the engine drives, and how to take it down."""

    ran: RanControl
    meter: PowerMeter
    stop_vbs: Callable[[], None]
    probes: list[RoundProbe] = dataclasses.field(default_factory=list)

    def close(self) -> None:
        try:
            self.ran.close()
            self.meter.close()
        finally:
            self.stop_vbs()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TestbedKind(ABC):
    """One kind of vBS: its bring-up, its checks, its lock and what a sweep can set on it."""

    checked_by_bringup: ClassVar[bool]
    """`hil check` brings it up once and measures a short window (quick enough to)."""
    sweep_channel: ClassVar[Literal["cqi", "snr"]]
    """How a sweep's conditions set its channel: a CQI the model takes, or an SNR of the
    channel emulator."""

    @abstractmethod
    def start(self, cfg: HilConfig, log_dir: Path) -> Testbed:
        """Bring it up (on failure, take down what came up): the engine's capabilities."""

    @abstractmethod
    def checks(self, cfg: HilConfig) -> Iterator[tuple[str, Check]]:
        """Its own checks for `hil check`, after the hosts' (named, in the order they run)."""

    def python_hosts(self, cfg: HilConfig) -> set[str]:
        """The hosts that run this checkout's Python for it."""
        return set()

    @abstractmethod
    def cell_prb(self, cfg: HilConfig) -> int:
        """The cell's bandwidth in PRBs (a PRB ratio's budget is a share of it)."""

    @abstractmethod
    def lock_host(self, cfg: HilConfig) -> str | None:
        """The `hosts` entry whose lock a run holds (None: it runs on this machine)."""

    def shared_locally(self, cfg: HilConfig) -> bool:
        """Whether two runs on this machine would share it (so a run locks it here)."""
        return True

    @abstractmethod
    def conditioned(self, cfg: HilConfig, scenario: ScenarioConfig, dl_snr_db: float | None,
                    ul_snr_db: float | None) -> dict[str, Any]:
        """The config changes that put it in one condition of a sweep: the condition's demand
        and CQIs are the one-row trace of `scenario`, its SNRs (None: left as they are)
        those of a channel emulator."""

    def sweep_problem(self, cfg: HilConfig) -> str | None:
        """Why a sweep cannot set its conditions ("key: what to do"), or None."""
        return None

    @abstractmethod
    def provenance(self, cfg: HilConfig) -> dict[str, Any]:
        """What a dataset states about it: kind, host, build or model (read, never guessed)."""

    def model_calibration(self, cfg: HilConfig) -> Path | None:
        """The calibration it runs, if it is a model (None for a real vBS)."""
        return None

    @abstractmethod
    def vbs_process(self, cfg: HilConfig) -> VbsProcess:
        """The vBS's own process (what a crash would end): where it runs and its name."""

    def ue_control_endpoint(self, cfg: HilConfig) -> str | None:
        """Where the controller reaches the UE's own control socket (PROTOCOL.md section 14),
        or None when the UE has none."""
        return None


@dataclass(frozen=True)
class VbsProcess:
    """The vBS's process: on `host` (a `hosts` entry) under the name its SshHost started it
    with, or, with `host` None, a child of the controller whose command line holds `name`."""

    host: str | None
    name: str


def kind_of(cfg: HilConfig) -> TestbedKind:
    """The kind of `cfg.vbs`, from the module its config class names."""
    kind: TestbedKind = importlib.import_module(cfg.vbs.testbed_module).TESTBED
    return kind


def start_testbed(cfg: HilConfig, log_dir: Path) -> Testbed:
    """Bring up the testbed the config describes; on any failure, take down what came up."""
    return kind_of(cfg).start(cfg, log_dir)
