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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.meta_hrl.flat import FlatLearner
from agents.meta_hrl.hrl import HrlLearner
from agents.meta_hrl.training import (
    AdaptConfig,
    IterationStats,
    Learner,
    TrainConfig,
    Trainer,
    adapt,
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
    iterations: int = 200
    shots: int = 30
    first_order: bool = False
    n_heldout: int = 16
    updates_per_iteration: int = 1

    @property
    def tag(self) -> str:
        return (f"{self.n_dus}du-{self.n_ues}ue-{self.iterations}it-{self.n_heldout}held"
                f"-{self.updates_per_iteration}up")

    @property
    def pools(self) -> Pools:
        return Pools(self.n_dus, self.n_heldout, self.n_ues)


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        return cls(**{**data, "setup": Setup(**data["setup"])})


def trains(method: str) -> bool:
    """Whether `method` trains before adapting (all but `scratch`)."""
    return METHODS[method][1] is not None


def _learner(kind: str, n_ues: int, seed: int) -> Learner:
    return HrlLearner(seed=seed) if kind == "hrl" else FlatLearner(n_ues, seed=seed)


def train(method: str, seed: int, setup: Setup, on_iteration: Callable[[], None] | None = None,
          ) -> tuple[Learner, list[IterationStats], float]:
    """Train `method` with `seed` on the DUs of `setup`: (learner, each iteration's
    statistics, mean seconds per iteration)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    kind, config, one_du = METHODS[method]
    torch.set_num_threads(1)
    learner = _learner(kind, setup.n_ues, seed)
    if config is None:
        return learner, [], 0.0
    envs = setup.pools.training()
    trainer = Trainer(learner, envs[:1] if one_du else envs,
                      replace(config, first_order=setup.first_order,
                              updates_per_iteration=setup.updates_per_iteration), seed=seed)
    stats = []
    t0 = time.perf_counter()
    for _ in range(setup.iterations):
        stats.append(trainer.step())
        if on_iteration:
            on_iteration()
    return learner, stats, (time.perf_counter() - t0) / max(setup.iterations, 1)


def run_job(method: str, seed: int, setup: Setup,
            on_iteration: Callable[[], None] | None = None) -> JobResult:
    """Train `method` with `seed`, adapt it to every held-out DU, return the curves."""
    t0 = time.perf_counter()
    learner, stats, iteration_s = train(method, seed, setup, on_iteration)
    curves = [adapt(learner, learner.params(), target, setup.shots, AdaptConfig(), seed=seed)[0]
              for target in setup.pools.heldout()]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return JobResult(method, seed, setup, [s.reward for s in stats], curves, iteration_s,
                     time.perf_counter() - t0, mean([s.inner_action_change for s in stats]),
                     mean([s.weighting_cosine for s in stats]))


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


def iterations_to_converge(rewards: np.ndarray, share: float = 0.95) -> int:
    """First iteration at which the smoothed training reward has made `share` of its total
    improvement (final level = mean of the last tenth; smoothing over a tenth of the run)."""
    r = np.asarray(rewards, dtype=float)
    if len(r) == 0:
        return 0
    width = max(1, len(r) // 10)
    smooth = np.convolve(r, np.ones(width) / width, mode="valid")
    start, final = smooth[0], r[-width:].mean()
    if final <= start:
        return 0
    return int(np.argmax(smooth >= start + share * (final - start))) + width


def shots_to_converge(curve: np.ndarray, share: float = 0.95) -> int:
    """First shot whose normalised reward has made `share` of the best improvement over
    shot 0; 0 when adaptation never improves on the initialisation. (Each point is the
    evaluation of a deterministic policy on one fixed episode, so no smoothing.)"""
    c = np.asarray(curve, dtype=float)
    gain = c.max() - c[0]
    if gain <= 0:
        return 0
    return int(np.argmax(c >= c[0] + share * gain))
