"""Run agents x seeds over a reward environment and save what each (agent, seed) did.

One job is one agent on one seed: agents are per-seed Python objects that must step round
by round, so jobs run in parallel on the executor of `hil.executor` (processes here, or a
Dask cluster), seed by seed, and each job computes its environment's blocks itself
(vectorised over rounds and policies). A job returns its arrays; this process writes them
at once (atomically), so Ctrl-C loses only the jobs in flight, and running the same replay
again into the same directory skips what is already there. A job's numbers depend only on
the spec and its seed, so every executor gives the same ones.

Files in the output directory:

    spec.json                      what was replayed (a different replay refuses this folder)
    results/<agent>/seed-<s>.npz   per round: action, reward, power, select/update time,
                                   MetBS child; the agent's final probabilities
    env/seed-<s>.npz               per checkpoint: cumulative reward and power of every
                                   policy (the benchmark side, the same for every agent)
    env/<agent>/seed-<s>.npz       the same, per agent, where the rounds depend on the agent
                                   (C-adaptive: the adversary picks each round's kind
                                   against the agent's leader)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.registry import agent_params, make_agent
from hil.base.errors import HilError
from hil.executor import (
    IN_THIS_PROCESS,
    Callbacks,
    Executor,
    JobCounts,
    JobFailure,
    run_jobs,
)
from tools.replay.environments import (
    CONTEXT_FIELDS,
    KindBlock,
    RewardBlock,
    RewardEnvironment,
    worst_kind_for_leader,
)

CHILD_INFO_KEY = "child_name"
"""`Decision.info[CHILD_INFO_KEY]` names the child a meta-learner (MetBS) delegated to."""
CHECKPOINTS = 200
"""Points per curve: regret and energy are kept at this many rounds, evenly spaced."""
BLOCK_ENTRIES = 1 << 20
"""Rounds x policies per environment block (~8 MB per float64 array)."""


class ReplayError(HilError):
    """A replay cannot run or its results cannot be read or written."""


class Source(Protocol):
    """A picklable recipe for an environment: workers build their own copy per seed."""

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the source (compared with a folder's spec.json)."""
        ...

    def build(self, seed: int) -> RewardEnvironment:
        ...


@dataclass(frozen=True)
class ReplaySpec:
    source: Source
    agents: tuple[str, ...]
    seeds: tuple[int, ...]
    rounds: int
    agent_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source.describe(), "agents": list(self.agents),
                "seeds": list(self.seeds), "rounds": self.rounds,
                "agent_params": {a: dict(p) for a, p in self.agent_params.items()}}


@dataclass(frozen=True)
class ReplayOutcome:
    jobs_done: int
    jobs_total: int
    interrupted: bool
    failed: tuple[JobFailure, ...] = ()


@dataclass(frozen=True)
class JobResult:
    """What one (agent, seed) job did (`result`) and every policy's side (`benchmark`),
    which is the agent's own when its rounds depended on its play (`adaptive`)."""

    result: dict[str, np.ndarray]
    benchmark: dict[str, np.ndarray]
    adaptive: bool = False


def checkpoints(rounds: int) -> np.ndarray:
    """Round counts t (1..rounds) at which curves are kept; always ends at `rounds`."""
    return np.unique(np.linspace(1, rounds, min(rounds, CHECKPOINTS)).round().astype(np.int64))


def result_path(out: Path, agent: str, seed: int) -> Path:
    return out / "results" / agent / f"seed-{seed}.npz"


def env_path(out: Path, seed: int, agent: str | None = None) -> Path:
    """The seed's benchmark side; with `agent`, that agent's own (adaptive rounds)."""
    return out / "env" / (agent or "") / f"seed-{seed}.npz"


def prepare_out(spec: ReplaySpec, out: Path) -> None:
    """Write spec.json, or check that the folder holds this very replay (to continue it)."""
    described = json.loads(json.dumps(spec.describe()))  # as it reads back (tuples: lists)
    spec_file = out / "spec.json"
    if spec_file.exists():
        previous = json.loads(spec_file.read_text())
        differing = [k for k in described if previous.get(k) != described[k]]
        if differing:
            raise ReplayError(
                f"{out} holds results of another replay (its {', '.join(differing)} differ); "
                "choose another --out or delete that folder")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(described, indent=2) + "\n")
    except OSError as exc:
        raise ReplayError(f"cannot write {spec_file}: {exc.strerror or exc}; "
                          "choose a writable --out") from exc


def run_replay(spec: ReplaySpec, out: Path, *, executor: Executor = IN_THIS_PROCESS,
               on_rounds: Callable[[int], None] | None = None,
               on_counts: Callable[[JobCounts], None] | None = None) -> ReplayOutcome:
    """Run every (agent, seed) job not yet saved in `out`; Ctrl-C keeps what finished.

    `on_rounds(n)` is called (in this process) as jobs advance by n rounds, `on_counts` as
    jobs start and end. On Ctrl-C the jobs in flight are dropped; the saved ones stay.
    """
    _check_rounds(spec)
    prepare_out(spec, out)
    jobs = [(a, s) for s in spec.seeds for a in spec.agents]  # seed by seed: an interrupted
    # replay still compares every agent on the seeds it finished
    todo = [(a, s) for a, s in jobs if not result_path(out, a, s).exists()]
    report = on_rounds or (lambda n: None)
    report((len(jobs) - len(todo)) * spec.rounds)
    callbacks = Callbacks(partial(save_job, out), report, on_counts or (lambda counts: None))
    try:
        failed = run_jobs(partial(run_job, spec), todo, executor, callbacks)
    except KeyboardInterrupt:
        done = sum(result_path(out, a, s).exists() for a, s in jobs)
        return ReplayOutcome(done, len(jobs), interrupted=True)
    return ReplayOutcome(len(jobs) - len(failed), len(jobs), False, tuple(failed))


def save_job(out: Path, job: tuple[str, int], done: JobResult) -> None:
    """Write a finished job's files: the seed's benchmark side, then the agent's result
    (whose presence marks the job done)."""
    agent, seed = job
    _save(env_path(out, seed, agent if done.adaptive else None), done.benchmark)
    _save(result_path(out, agent, seed), done.result)


def _check_rounds(spec: ReplaySpec) -> None:
    if spec.rounds < 1:
        raise ReplayError(f"--rounds must be at least 1, got {spec.rounds}")
    available = spec.source.build(spec.seeds[0]).rounds_available
    if available is not None and spec.rounds > available:
        raise ReplayError(f"the source has {available} rounds, {spec.rounds} were asked; "
                          f"use --rounds {available} or fewer")


# ------------------------------------------------------------------------------ one job
def run_job(spec: ReplaySpec, job: tuple[str, int], report: Callable[[int], None]) -> JobResult:
    """Step one agent through `spec.rounds` rounds of the seed's environment."""
    agent_name, seed = job
    env = spec.source.build(seed)
    params = dict(spec.agent_params.get(agent_name, {}))
    space = getattr(env, "space", None)  # agents that use the policies' features get them
    if space is not None and "policy_space" in agent_params(agent_name):
        params.setdefault("policy_space", space)
    agent = make_agent(agent_name, env.n_actions, seed=seed, horizon=spec.rounds, **params)
    rounds = spec.rounds
    record = {
        "action": np.empty(rounds, np.int32), "reward": np.empty(rounds, np.float32),
        "power_w": np.empty(rounds, np.float32), "select_us": np.empty(rounds, np.float32),
        "update_us": np.empty(rounds, np.float32), "child": np.full(rounds, -1, np.int16),
        "kind": np.full(rounds, -1, np.int8),  # C-adaptive: the kind the adversary picked
    }
    children: dict[str, int] = {}
    stats = _BenchmarkSide(rounds, env.n_actions)
    clock = time.perf_counter_ns
    previous = np.full(len(CONTEXT_FIELDS), np.nan)
    for block in _blocks(env, rounds):
        adaptive = isinstance(block, KindBlock)
        for i in range(len(block)):
            if adaptive:  # the adversary picks this round's kind, seeing the learner
                kind = worst_kind_for_leader(agent.probabilities(), block.by_kind_reward[i])
                block.realize(i, kind, previous)
                record["kind"][block.start + i] = kind
            t = block.start + i
            t0 = clock()
            decision = agent.select(block.context_at(i))
            t1 = clock()
            value = float(block.reward[i, decision.action])
            agent.update(decision, value, block.measured_at(i))
            t2 = clock()
            record["action"][t], record["reward"][t] = decision.action, value
            record["power_w"][t] = block.power_w[i, decision.action]
            record["select_us"][t], record["update_us"][t] = (t1 - t0) / 1e3, (t2 - t1) / 1e3
            child = decision.info.get(CHILD_INFO_KEY) if decision.info else None
            if child is not None:
                record["child"][t] = children.setdefault(str(child), len(children))
            previous = block.measured[i]
        stats.add(block)
        report(len(block))
    return JobResult(
        result={**record, "final_probs": np.asarray(agent.probabilities(), np.float64),
                "child_names": np.array(list(children), dtype=str)},
        benchmark={**stats.arrays(),
                   "idle_power_w": np.float64(getattr(env, "idle_power_w", np.nan))},
        adaptive=bool(getattr(env, "adaptive", False)))


def _blocks(env: RewardEnvironment, rounds: int) -> Iterator[RewardBlock]:
    size = max(1, min(rounds, BLOCK_ENTRIES // env.n_actions))
    for start in range(0, rounds, size):
        yield env.block(start, min(start + size, rounds))


class _BenchmarkSide:
    """Cumulative reward and power of every policy at the checkpoints: what any fixed
    policy, the best in hindsight included, would have got up to each checkpoint; and the
    cumulative per-round minimum power over all policies (the ideal minimum energy, an
    oracle that knows every round) and maximum reward (an oracle that plays each round's
    best policy: how much a landscape rewards tracking its contexts)."""

    def __init__(self, rounds: int, n_actions: int) -> None:
        self.at = checkpoints(rounds)
        self.reward = np.zeros((len(self.at), n_actions))
        self.power_w = np.zeros((len(self.at), n_actions))
        self.min_power_w = np.zeros((len(self.at), 1))
        self.max_reward = np.zeros((len(self.at), 1))
        self._sum_reward = np.zeros(n_actions)
        self._sum_power = np.zeros(n_actions)
        self._sum_min_power = np.zeros(1)
        self._sum_max_reward = np.zeros(1)

    def add(self, block: RewardBlock) -> None:
        stop = block.start + len(block)
        inside = (self.at > block.start) & (self.at <= stop)
        rows = self.at[inside] - block.start - 1
        for total, values, out in ((self._sum_reward, block.reward, self.reward),
                                   (self._sum_power, block.power_w, self.power_w),
                                   (self._sum_min_power, block.power_w.min(axis=1, keepdims=True),
                                    self.min_power_w),
                                   (self._sum_max_reward, block.reward.max(axis=1, keepdims=True),
                                    self.max_reward)):
            cumulative = np.cumsum(values, axis=0)
            out[inside] = total + cumulative[rows]
            total += cumulative[-1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"rounds": self.at, "policy_reward": self.reward, "policy_power_w": self.power_w,
                "min_power_w": self.min_power_w[:, 0], "max_reward": self.max_reward[:, 0]}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically: readers (and a later resume) see all of it or nothing."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReplayError(f"cannot write {path}: {exc.strerror or exc}; "
                          "check free space in --out") from exc
