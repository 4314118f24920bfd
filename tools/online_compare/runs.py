"""The runs of `hil compare`: every (agent, seed) is one `hil run` of the same config, made in
this process through the very code path of `hil run` (`hil.run.new_run`, `resume_run`,
`execute`), so the comparison measures what a run measures.

Runs live in `OUT/runs/<agent>/seed-<s>/<run directory>`. The same command again skips the
runs that completed and continues one that stopped midway from its checkpoint (a resumed
run goes on decision for decision), so an interrupted comparison costs only the round in
flight. `OUT/compare-spec.json` pins the config and the rounds: runs of another setup in
the same folder are refused, while more seeds or more agents may be added later. Runs of
older code are not told apart: after changing an agent, compare into a new folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil import run as runmod
from hil.base.errors import HilError, ResumeError
from hil.config import HilConfig, load_config
from hil.engine import RoundCallback
from hil.recorder import RunDirectory

SPEC_NAME = "compare-spec.json"


class CompareError(HilError):
    """A comparison that cannot go on as asked; says what to change."""


@dataclass(frozen=True)
class AgentSpec:
    """One compared agent: `NAME[:KEY=VALUE...]` as given (its label), values in YAML."""

    text: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """The label as a folder name."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.text)


def parse_agent(text: str) -> AgentSpec:
    """`fixed-slicing:rule=best-constant` -> fixed-slicing with {rule: best-constant}."""
    name, *items = text.split(":")
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CompareError(f"--agents {text!r}: expected NAME[:KEY=VALUE...], e.g. "
                               "fixed-slicing:rule=best-constant")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise CompareError(f"--agents {text!r}: the value of {key} is not YAML: "
                               f"{exc}") from exc
    return AgentSpec(text, name, params)


@dataclass(frozen=True)
class Plan:
    """What to run: every agent at every seed, `rounds` rounds of `config` each."""

    config: Path
    agents: tuple[AgentSpec, ...]
    seeds: tuple[int, ...]
    rounds: int
    out: Path

    def __post_init__(self) -> None:
        if not self.agents or not self.seeds or self.rounds < 1:
            raise CompareError("give at least one agent, one seed and one round")
        folders = [a.folder for a in self.agents]
        if len(set(folders)) < len(folders):
            raise CompareError("--agents: an agent is named twice; give each its own "
                               "parameters (NAME:KEY=VALUE)")

    def folder(self, agent: AgentSpec, seed: int) -> Path:
        return self.out / "runs" / agent.folder / f"seed-{seed}"

    def overrides(self, agent: AgentSpec, seed: int, base: HilConfig) -> dict[str, object]:
        """The run's config changes: the agent's parameters are the config's own for the
        config's agent (e.g. metahrl's pretraining), plus what the spec gives."""
        own = dict(base.agent.params) if agent.name == base.agent.name else {}
        return {"agent.name": agent.name, "agent.params": {**own, **agent.params},
                "rounds": self.rounds, "seed": seed}

    def config_for(self, agent: AgentSpec, seed: int) -> HilConfig:
        return load_config(self.config, self.overrides(agent, seed, load_config(self.config)))


def check_out(plan: Plan) -> None:
    """Pin the config and the rounds to `plan.out`, or refuse a folder holding another's."""
    path = plan.out / SPEC_NAME
    spec = {"config": str(plan.config.resolve()), "rounds": plan.rounds}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != spec:
            raise CompareError(f"{plan.out} holds a comparison of {saved}, not {spec}; "
                               "choose another --out")
        return
    plan.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))


def check_agents(plan: Plan) -> None:
    """Build every agent once before any run, so a wrong parameter stops the comparison at
    once instead of after the runs before it (agents pretrain or search lazily: cheap)."""
    for agent in plan.agents:
        runmod.build_agent(plan.config_for(agent, plan.seeds[0]))


def latest_run(folder: Path) -> Path | None:
    """The newest run directory in `folder` (their names start with a timestamp)."""
    runs = sorted(p for p in folder.glob("*") if RunDirectory(p).meta_path.exists())
    return runs[-1] if runs else None


def is_complete(run_dir: Path, rounds: int) -> bool:
    meta = RunDirectory(run_dir).read_meta()
    return meta["exit"]["status"] == "completed" and meta.get("rounds_done") == rounds


@dataclass(frozen=True)
class RunDone:
    run_dir: Path
    status: str  # completed | interrupted | failed
    reason: str
    ran: bool    # False: it had completed before


def run_one(plan: Plan, agent: AgentSpec, seed: int, *,
            on_start: Callable[[int, int], None] | None = None,
            on_round: RoundCallback | None = None) -> RunDone:
    """Make the run of (agent, seed) complete: skip it if it is, continue it if it stopped,
    else start it."""
    folder = plan.folder(agent, seed)
    previous = latest_run(folder)
    if previous is not None and is_complete(previous, plan.rounds):
        return RunDone(previous, "completed", "", ran=False)
    if previous is not None and RunDirectory(previous).checkpoint_path.exists():
        cfg, run_dir = runmod.resume_run(previous, None)
        resume = True
    else:
        cfg, run_dir = runmod.new_run(plan.config, plan.overrides(
            agent, seed, load_config(plan.config)), folder)
        resume = False
    try:
        result = runmod.execute(cfg, run_dir, resume=resume, on_start=on_start,
                                on_round=on_round)
    except ResumeError as exc:
        raise CompareError(f"{exc}; remove {run_dir.path} to run {agent.text} at seed {seed} "
                           "again from the start") from exc
    return RunDone(run_dir.path, result.outcome.status, result.outcome.reason, ran=True)


def run_all(plan: Plan, *, on_run: Callable[[AgentSpec, int, RunDone], None],
            on_start: Callable[[AgentSpec, int, int, int], None],
            on_round: RoundCallback) -> list[tuple[AgentSpec, int, RunDone]]:
    """Every run of the plan, seed by seed (so a stopped comparison has whole pairs);
    stops at the first run that does not complete."""
    check_agents(plan)
    check_out(plan)
    done: list[tuple[AgentSpec, int, RunDone]] = []
    for seed in plan.seeds:
        for agent in plan.agents:
            result = run_one(plan, agent, seed, on_round=on_round,
                             on_start=lambda first, total, a=agent, s=seed: on_start(
                                 a, s, first, total))
            on_run(agent, seed, result)
            done.append((agent, seed, result))
            if result.status != "completed":
                return done
    return done


def seeds(n: int) -> tuple[int, ...]:
    """Seeds 0..n-1, as `hil replay` and `hil metahrl` number them."""
    if n < 1:
        raise CompareError(f"--seeds {n}: give at least 1")
    return tuple(range(n))


def specs(texts: Sequence[str]) -> tuple[AgentSpec, ...]:
    return tuple(parse_agent(t) for t in texts)
