"""The testbed/experiment config: one YAML file, validated on load.

Errors name the file and the dotted key (e.g. ``zmq-emulated.yaml: clock.speedup: Input
should be greater than 0``). Relative paths inside a config are relative to the config file,
so a config can be run from any directory.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agents.policy_space import PAPER_SPACE, PolicySpace
from hil.validation import StrictModel, read_yaml, validate


class ClockConfig(StrictModel):
    """How fast time runs: `realtime` on hardware; `accelerated` runs the emulated vBS's
    TTI clock `speedup` times faster than wall time (CI), so a 1 s round takes 1/speedup s."""

    mode: Literal["realtime", "accelerated"] = "realtime"
    speedup: float = Field(1.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def _realtime_means_one(self) -> ClockConfig:
        if self.mode == "realtime" and self.speedup != 1.0:
            raise ValueError("speedup only applies with mode: accelerated")
        return self


class ScenarioConfig(StrictModel):
    name: Literal["A", "B", "C", "mixed", "trace"] = "A"
    trace: Path | None = None
    switch_epoch: int = Field(5000, ge=0, description="mixed: B for this many rounds, then C")

    @model_validator(mode="after")
    def _trace_needs_file(self) -> ScenarioConfig:
        if self.name == "trace" and self.trace is None:
            raise ValueError("scenario 'trace' needs `trace: path/to/trace.csv`")
        return self


class EmulatorConfig(StrictModel):
    calibration: Path = Path("calibration/emulated-nuc.yaml")
    scenario: ScenarioConfig = ScenarioConfig()
    startup_timeout_s: float = Field(20.0, gt=0)


class HostConfig(StrictModel):
    """A testbed machine reached over SSH (key or agent authentication only)."""

    hostname: str = Field(..., min_length=1)
    port: int = Field(22, ge=1, le=65535)
    username: str = Field(default_factory=getpass.getuser, min_length=1,
                          description="default: the user running hil, as ssh does")
    key_path: Path | None = None
    use_agent: bool = True
    known_hosts_path: Path | None = Field(None, description="default: ~/.ssh/known_hosts")
    trust_unknown_host: bool = Field(False, description="add an unknown host key (first use)")
    state_dir: str | None = Field(None, description="logs and PID files on the host")


class VbsConfig(StrictModel):
    kind: Literal["emulated"] = "emulated"
    host: str | None = Field(None, description="a `hosts` entry to run on; none: this machine")
    # Port 0: the emulated vBS binds a free port and reports it (no clashes between runs).
    control_endpoint: str = "tcp://127.0.0.1:0"
    timeout_s: float = Field(0.5, gt=0, le=60)
    retries: int = Field(3, ge=0, le=100)
    give_up_after_invalid_rounds: int = Field(
        30, ge=1, description="stop the run after this many invalid rounds in a row")
    emulator: EmulatorConfig = EmulatorConfig()


class MeterConfig(StrictModel):
    """`emulated`: the emulated vBS's own meter socket. `gpm8213`: a GW-Instek GPM-8213 over
    pyvisa-py at `resource` (`TCPIP0::host::23::SOCKET` or `ASRL/dev/ttyACM0::INSTR`); with
    the emulated vBS and no resource, its SCPI twin, so the real driver runs end to end."""

    kind: Literal["emulated", "gpm8213"] = "emulated"
    endpoint: str = "tcp://127.0.0.1:0"
    resource: str | None = None
    poll_s: float = Field(1.0, gt=0, le=60, description="gpm8213: seconds between readings")
    use_integrator: bool = False
    timeout_s: float = Field(0.5, gt=0, le=60)


class AgentConfig(StrictModel):
    name: Literal["bsvbs", "random"] = "bsvbs"
    horizon: int | None = Field(None, gt=0, description="BSvBS: T for Lemma 1 (default: rounds)")
    gamma: float | None = Field(None, gt=0, le=1, description="BSvBS: exploration, overrides T")


class RewardConfig(StrictModel):
    delta: float = Field(1.5, ge=0, description="weight of normalised power against utility")
    power_min_w: float = Field(9.0, ge=0, description="power that counts as 0 in the reward")
    power_max_w: float = Field(16.0, gt=0, description="power that counts as 1 in the reward")

    @model_validator(mode="after")
    def _ordered(self) -> RewardConfig:
        if self.power_max_w <= self.power_min_w:
            raise ValueError("power_max_w must be greater than power_min_w")
        return self


class RecordingConfig(StrictModel):
    out_dir: Path = Path("runs")
    checkpoint_every: int = Field(500, ge=1, description="rounds between checkpoints")
    plot: bool = True


class HilConfig(StrictModel):
    name: str = Field(..., min_length=1)
    seed: int = Field(0, ge=0)
    rounds: int = Field(1000, ge=1)
    round_s: float = Field(1.0, gt=0, le=3600)
    clock: ClockConfig = ClockConfig()
    vbs: VbsConfig = VbsConfig()
    meter: MeterConfig = MeterConfig()
    agent: AgentConfig = AgentConfig()
    # `paper` or the five lists; validated by PolicySpace itself (its errors name the field)
    policy_space: PolicySpace = PAPER_SPACE
    reward: RewardConfig = RewardConfig()
    recording: RecordingConfig = RecordingConfig()
    hosts: dict[str, HostConfig] = {}

    @model_validator(mode="after")
    def _vbs_host_is_declared(self) -> HilConfig:
        if self.vbs.host is not None and self.vbs.host not in self.hosts:
            known = ", ".join(self.hosts) or "none declared"
            raise ValueError(f"vbs.host {self.vbs.host!r} is not in `hosts` ({known})")
        return self

    @property
    def period_s(self) -> float:
        """Wall-clock length of a round."""
        return self.round_s / self.clock.speedup

    @field_validator("policy_space", mode="before")
    @classmethod
    def _paper_by_name(cls, value: object) -> object:
        return PAPER_SPACE if value == "paper" else value


def _under(base: Path, path: Path | None) -> Path | None:
    """A path from the config file: `~` expanded, relative ones taken from `base`."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def resolve_paths(cfg: HilConfig, base: Path) -> HilConfig:
    """Make every relative path in ``cfg`` relative to ``base`` (the config file's folder)."""
    hosts = {name: host.model_copy(update={"key_path": _under(base, host.key_path),
                                           "known_hosts_path": _under(base, host.known_hosts_path)})
             for name, host in cfg.hosts.items()}
    emu = cfg.vbs.emulator
    scenario = emu.scenario.model_copy(update={"trace": _under(base, emu.scenario.trace)})
    emu = emu.model_copy(update={"calibration": _under(base, emu.calibration),
                                 "scenario": scenario})
    return cfg.model_copy(update={"hosts": hosts,
                                  "vbs": cfg.vbs.model_copy(update={"emulator": emu})})


def apply_overrides(data: dict, overrides: dict[str, object]) -> dict:
    """Set dotted keys (``agent.name``) from the command line; None means 'not given'."""
    for dotted_key, value in overrides.items():
        if value is None:
            continue
        *parents, last = dotted_key.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[last] = value
    return data


def load_config(path: Path | str, overrides: dict[str, object] | None = None) -> HilConfig:
    """Read, apply command-line overrides (dotted keys), validate, resolve relative paths."""
    path = Path(path)
    data = apply_overrides(read_yaml(path), overrides or {})
    return resolve_paths(validate(path, HilConfig, data), path.resolve().parent)


def config_from_dict(data: dict, source: str = "run.json") -> HilConfig:
    """Re-validate a config stored in a run directory (paths there are already absolute)."""
    return validate(source, HilConfig, data)
