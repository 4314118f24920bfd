"""The Meta-HRL experiments: each job trains one method with one seed on the fixed training
DUs, then adapts it to every held-out DU shot by shot (`tools.metahrl.protocol`: the pools,
the per-DU scores, the fixed schedulers and the paired differences).

Methods (all trained for the same number of iterations, with the same data collection per
DU and iteration, then adapted by the same procedure, `agents.meta_hrl.training.adapt`):

    meta-hrl      two-level DDPG + MAML across DUs, adaptive TD-variance weights (softmin)
    meta-hrl-softmax  the same with softmax weights (the summary is ambiguous on the direction)
    drl           flat DDPG over the joint action, trained on all DUs (no hierarchy, no meta)
    tl            two-level DDPG trained on one DU only, then fine-tuned (transfer learning)
    mtl           two-level DDPG trained on the mean loss of all DUs (multi-task, no inner loop)
    scratch       two-level networks as initialised, adapted only (a network from scratch)
    uniform-meta  meta-hrl with uniform task weights (ablation)
    static-var    meta-hrl with the weights of the first iteration kept (ablation)

A job's result is plain JSON so that a sweep can stop and resume, and the report reads
them all back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.meta_hrl.env import Family
from agents.meta_hrl.flat import FlatLearner
from agents.meta_hrl.hrl import HrlConfig, HrlLearner
from agents.meta_hrl.training import (
    AdamStep,
    AdaptConfig,
    AdaptStep,
    IterationStats,
    Learner,
    TrainConfig,
    Trainer,
    adapt,
    evaluate,
)
from tools.metahrl.protocol import Pools

_META = TrainConfig(method="maml", weighting="adaptive", direction="softmin")
_JOINT = TrainConfig(method="joint")
METHODS: dict[str, tuple[str, TrainConfig | None, bool]] = {
    # name: (learner, training config or None = no training, train on DU 0 only)
    "meta-hrl": ("hrl", _META, False),
    "drl": ("flat", _JOINT, False),
    "tl": ("hrl", _JOINT, True),
    "mtl": ("hrl", _JOINT, False),
    "scratch": ("hrl", None, False),
    "uniform-meta": ("hrl", replace(_META, weighting="uniform"), False),
    "static-var": ("hrl", replace(_META, weighting="static"), False),
    "meta-hrl-softmax": ("hrl", replace(_META, direction="softmax"), False),
}


@dataclass(frozen=True)
class Setup:
    """How big the network of DUs is and how long each method trains."""

    n_dus: int = 7
    n_ues: int = 30
    iterations: int = 100
    shots: int = 30
    first_order: bool = False
    n_heldout: int = 12
    updates_per_iteration: int = 10
    family: Family = "visible"
    eval_every: int = 10          # iterations between zero-shot evaluations on the held-out DUs
    power_control: bool = True    # False: no power head, users at full power (as online)
    tasks_per_update: int = 7     # MAML's meta-batch (and MTL's): DUs per update

    @property
    def tag(self) -> str:
        batch = f"-{self.tasks_per_update}tpu" if self.tasks_per_update < self.n_dus else ""
        return (f"{self.n_dus}du-{self.n_ues}ue-{self.iterations}it-{self.n_heldout}held"
                f"-{self.updates_per_iteration}up{batch}{self.pools.suffix}")

    @property
    def pools(self) -> Pools:
        return Pools(self.n_dus, self.n_heldout, self.n_ues, self.family, self.power_control)


@dataclass(frozen=True)
class JobResult:
    method: str
    seed: int
    setup: Setup
    train_reward: list[float]        # mean reward of the steps collected, per iteration
    adapt_reward: list[list[float]]  # per held-out DU: reward after 0..shots shots
    iteration_s: float               # mean wall time of one training iteration
    wall_s: float
    inner_action_change: float = float("nan")  # MAML: mean over iterations (IterationStats)
    weighting_cosine: float = float("nan")     # MAML: mean over iterations (IterationStats)
    heldout_iterations: list[int] = field(default_factory=list)
    heldout_reward: list[list[float]] = field(default_factory=list)
    """Zero-shot reward on every held-out DU after each of `heldout_iterations` (the
    convergence the scaling claim is judged on: not the noisy training reward)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        return cls(**{**data, "setup": Setup(**data["setup"])})


def trains(method: str) -> bool:
    """Whether `method` trains before adapting (all but `scratch`)."""
    return METHODS[method][1] is not None


def _learner(kind: str, setup: Setup, seed: int) -> Learner:
    if kind == "hrl":
        return HrlLearner(HrlConfig(power_head=setup.power_control), seed=seed)
    return FlatLearner(setup.n_ues, seed=seed)


@dataclass
class Trained:
    learner: Learner
    stats: list[IterationStats]   # each iteration's
    iteration_s: float            # mean wall time of an iteration
    adaptation: AdaptStep         # how the model adapts to a new DU
    heldout_iterations: list[int] = field(default_factory=list)
    heldout_reward: list[list[float]] = field(default_factory=list)  # (points, held-out DUs)


def train(method: str, seed: int, setup: Setup,
          on_iteration: Callable[[], None] | None = None) -> Trained:
    """Train `method` with `seed` on the DUs of `setup`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    kind, config, one_du = METHODS[method]
    torch.set_num_threads(1)
    learner = _learner(kind, setup, seed)
    if config is None:
        return Trained(learner, [], 0.0, AdamStep())
    envs, heldout = setup.pools.training(), setup.pools.heldout()
    trainer = Trainer(learner, envs[:1] if one_du else envs,
                      replace(config, first_order=setup.first_order,
                              updates_per_iteration=setup.updates_per_iteration,
                              tasks_per_update=setup.tasks_per_update), seed=seed)
    stats, points, rewards = [], [], []
    train_s = 0.0
    for iteration in range(1, setup.iterations + 1):
        t0 = time.perf_counter()
        stats.append(trainer.step())
        train_s += time.perf_counter() - t0
        if iteration % setup.eval_every == 0 or iteration == setup.iterations:
            points.append(iteration)
            rewards.append(_zero_shot(learner, heldout))
        if on_iteration:
            on_iteration()
    return Trained(learner, stats, train_s / max(setup.iterations, 1), trainer.adaptation(),
                   points, rewards)


def _zero_shot(learner: Learner, heldout: list) -> list[float]:
    """The deterministic policy's reward on each held-out DU, as it stands (no adaptation)."""
    cfg = AdaptConfig()
    return [evaluate(learner, learner.params(), env, steps=cfg.eval_steps, seed=cfg.eval_seed)
            for env in heldout]


def run_job(method: str, seed: int, setup: Setup,
            on_iteration: Callable[[], None] | None = None) -> JobResult:
    """Train `method` with `seed`, adapt it to every held-out DU, return the curves."""
    t0 = time.perf_counter()
    trained = train(method, seed, setup, on_iteration)
    learner, stats = trained.learner, trained.stats
    curves = [adapt(learner, learner.params(), target, setup.shots, AdaptConfig(),
                    trained.adaptation, seed=seed)[0]
              for target in setup.pools.heldout()]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return JobResult(method, seed, setup, [s.reward for s in stats], curves, trained.iteration_s,
                     time.perf_counter() - t0, mean([s.inner_action_change for s in stats]),
                     mean([s.weighting_cosine for s in stats]), trained.heldout_iterations,
                     trained.heldout_reward)


def job_path(out: Path, method: str, seed: int, setup: Setup) -> Path:
    return out / "jobs" / f"{setup.tag}-{'fo' if setup.first_order else 'so'}-{method}-s{seed}.json"


def save_job(path: Path, result: JobResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json()))
    tmp.replace(path)


def load_jobs(out: Path) -> list[JobResult]:
    return [JobResult.from_json(json.loads(p.read_text()))
            for p in sorted((out / "jobs").glob("*.json"))]


def converged_at(curve: np.ndarray, share: float = 0.95) -> int:
    """Index of the first point of `curve` that has made `share` of its best improvement
    over the first point; 0 when it never improves on it. (Each point evaluates a
    deterministic policy on one fixed episode, so no smoothing.) Shots to converge on an
    adaptation curve; evaluation points to converge on a held-out training curve."""
    c = np.asarray(curve, dtype=float)
    gain = c.max() - c[0]
    if gain <= 0:
        return 0
    return int(np.argmax(c >= c[0] + share * gain))
