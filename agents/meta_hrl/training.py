"""Training across DUs (MAML or joint), adaptation to a new DU, and evaluation.

One trainer serves every method of the comparison, so that they differ only in what the
issue says they differ in:

- `maml`: the meta-update of `agents.meta_hrl.maml`, with adaptive (softmin or softmax),
  static or uniform task weights (Meta-HRL and its ablations);
- `joint`: one network trained on the mean loss of all its DUs, no inner loop (MTL when
  given all DUs; TL's pre-training when given one).

The learner (two-level `HrlLearner` or flat `FlatLearner`) brings the networks, how a DU is
run, and the loss. Every meta-iteration each DU first runs `collect_steps` environment
steps with the current parameters plus exploration noise into its replay buffers.

Adaptation (`adapt`) is the same for every method: from an initialisation, each shot runs
`shot_steps` steps on the new DU and takes one gradient step of size `lr` (the inner-loop
step of MAML) on a batch of that DU's data. Evaluation runs the deterministic policy for
`eval_steps` steps of a fixed episode, so curves of different methods see the same traffic.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch

from agents.meta_hrl.ddpg import Params, clone_params, soft_update
from agents.meta_hrl.env import DuSlicingEnv
from agents.meta_hrl.maml import Direction, Weighting, inner_update, variance_weights

Method = Literal["maml", "joint"]


class Rollout(Protocol):
    def step(self, params: Params, rng: np.random.Generator | None, *,
             learn: bool = True) -> float: ...
    def ready(self, batch_size: int) -> bool: ...
    def sample(self, batch_size: int, rng: np.random.Generator) -> Any: ...


class Learner(Protocol):
    nets: torch.nn.Module

    def params(self) -> Params: ...
    def rollout(self, env: DuSlicingEnv, seed: int) -> Rollout: ...
    def loss(self, params: Params, targets: Params,
             batch: Any) -> tuple[torch.Tensor, torch.Tensor]: ...
    def actions(self, params: Params, batch: Any) -> torch.Tensor:
        """Every action the actors take on the batch's states, flattened."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "maml"
    inner_lr: float = 0.01        # alpha, also the adaptation step
    outer_lr: float = 1e-3        # beta (Adam), the critics' step
    actor_lr_ratio: float = 0.1   # the actors step this much slower than the critics
    first_order: bool = False
    weighting: Weighting = "adaptive"
    direction: Direction = "softmin"
    temperature: float = 1.0
    collect_steps: int = 10       # per DU and meta-iteration
    updates_per_iteration: int = 1  # Adam steps per meta-iteration, each on fresh batches
    warmup_steps: int = 100       # per DU, noisy steps before the first update
    batch_size: int = 32
    tau: float = 0.01             # soft update of the target networks

    def __post_init__(self) -> None:
        if self.updates_per_iteration < 1:
            raise ValueError(f"updates_per_iteration must be >= 1, got "
                             f"{self.updates_per_iteration}")


@dataclass(frozen=True)
class IterationStats:
    iteration: int
    reward: float                      # mean reward of the steps collected this iteration
    loss: float
    weights: np.ndarray
    td_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inner_action_change: float = float("nan")
    """MAML: mean |change| of the actions (on [-1, 1]) the inner step makes, over tasks."""
    weighting_cosine: float = float("nan")
    """MAML: cosine between the task-weighted and the uniformly weighted meta-gradient."""


def param_groups(params: Params, lr: float, actor_ratio: float) -> list[dict[str, Any]]:
    """Adam groups: the actors learn `actor_ratio` times slower than the critics, so that a
    policy does not chase a critic that has not yet learnt (Adam's step ignores the scale
    of a loss, so a smaller actor loss would not do this)."""
    actors = [p for k, p in params.items() if "actor" in k]
    critics = [p for k, p in params.items() if "actor" not in k]
    return [{"params": critics, "lr": lr}, {"params": actors, "lr": lr * actor_ratio}]


class Trainer:
    """Meta- or joint training of one learner's parameters over a set of DUs."""

    def __init__(self, learner: Learner, envs: Sequence[DuSlicingEnv], config: TrainConfig,
                 *, seed: int) -> None:
        if not envs:
            raise ValueError("give at least one DU to train on")
        self.learner, self.config = learner, config
        self.params = learner.params()
        self.targets = clone_params(self.params, requires_grad=False)
        self.optimizer = torch.optim.Adam(param_groups(self.params, config.outer_lr,
                                                       config.actor_lr_ratio))
        self.rng = np.random.default_rng(seed)
        seeds = np.random.SeedSequence(seed).generate_state(len(envs))
        self.rollouts = [learner.rollout(env, int(s)) for env, s in zip(envs, seeds)]
        self.static_weights: np.ndarray | None = None
        self.iteration = 0
        for rollout in self.rollouts:
            for _ in range(config.warmup_steps):
                rollout.step(self.params, self.rng)

    def step(self) -> IterationStats:
        """One meta-iteration (or joint iteration): collect, then `updates_per_iteration`
        updates, each on fresh batches. The statistics are those of the last update."""
        cfg = self.config
        rewards = [rollout.step(self.params, self.rng)
                   for rollout in self.rollouts for _ in range(cfg.collect_steps)]
        maml = cfg.method == "maml"
        uniform = np.full(len(self.rollouts), 1.0 / len(self.rollouts))
        for _ in range(cfg.updates_per_iteration):
            grads, losses, variances, moved = self._task_gradients()
            weights = self.task_weights(np.asarray(variances)) if maml else uniform
            self.optimizer.zero_grad()
            for name, param in self.params.items():
                param.grad = sum(float(w) * g[name] for w, g in zip(weights, grads))
            self.optimizer.step()
            soft_update(self.targets, self.params, cfg.tau)
        self.iteration += 1
        return IterationStats(
            self.iteration, float(np.mean(rewards)), float(np.dot(weights, losses)), weights,
            np.asarray(variances), float(np.mean(moved)) if maml else float("nan"),
            _cosine(_combine(grads, weights), _combine(grads, uniform)) if maml
            else float("nan"))

    def task_weights(self, td_variance: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.weighting == "uniform":
            return np.full(len(td_variance), 1.0 / len(td_variance))
        if cfg.weighting == "static":
            if self.static_weights is None:
                self.static_weights = variance_weights(td_variance, cfg.direction, cfg.temperature)
            return self.static_weights
        return variance_weights(td_variance, cfg.direction, cfg.temperature)

    def _task_gradients(self) -> tuple[list[Params], list[float], list[float], list[float]]:
        """Per DU: the gradient (w.r.t. the shared parameters) of its loss, the variance of
        its TD errors and (MAML) how far the inner step moved its actions. With MAML the
        loss is that of the parameters adapted on a train batch, evaluated on a validation
        batch. Gradients are taken task by task, so only one task's graph is alive at a
        time."""
        cfg = self.config
        grads: list[Params] = []
        losses, variances, moved = [], [], []
        for rollout in self.rollouts:
            params, batch = self.params, rollout.sample(cfg.batch_size, self.rng)
            if cfg.method == "maml":
                params = inner_update(lambda p, b=batch: self.learner.loss(p, self.targets, b)[0],
                                      self.params, cfg.inner_lr, first_order=cfg.first_order)
                with torch.no_grad():
                    moved.append(float((self.learner.actions(params, batch)
                                        - self.learner.actions(self.params, batch)).abs().mean()))
                batch = rollout.sample(cfg.batch_size, self.rng)
            loss, td = self.learner.loss(params, self.targets, batch)
            grads.append(self._gradient(loss))
            losses.append(float(loss.detach()))
            variances.append(float(td.var()))
        return grads, losses, variances, moved

    def _gradient(self, loss: torch.Tensor) -> Params:
        names = list(self.params)
        grads = torch.autograd.grad(loss, [self.params[k] for k in names], allow_unused=True)
        return {k: torch.zeros_like(self.params[k]) if g is None else g
                for k, g in zip(names, grads)}


def _combine(grads: list[Params], weights: np.ndarray) -> torch.Tensor:
    """The weighted sum of per-task gradients, flattened into one vector."""
    return sum(float(w) * torch.cat([g[k].flatten() for k in sorted(g)])
               for w, g in zip(weights, grads))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


@dataclass(frozen=True)
class AdaptConfig:
    lr: float = 0.01
    shot_steps: int = 20
    batch_size: int = 32
    tau: float = 0.05
    eval_steps: int = 100
    eval_seed: int = 12345


def evaluate(learner: Learner, params: Params, env: DuSlicingEnv, *, steps: int,
             seed: int) -> float:
    """Mean reward of the deterministic policy over `steps` steps of the episode `seed`."""
    rollout = learner.rollout(copy.deepcopy(env), seed)
    return float(np.mean([rollout.step(params, None, learn=False) for _ in range(steps)]))


def adapt(learner: Learner, init: Params, env: DuSlicingEnv, shots: int, config: AdaptConfig,
          *, seed: int) -> tuple[list[float], Params]:
    """Adapt `init` to `env` with `shots` shots; returns the evaluation reward before the
    first shot and after each (shots + 1 values) and the adapted parameters."""
    rng = np.random.default_rng(seed)
    params = clone_params(init, requires_grad=True)
    targets = clone_params(init, requires_grad=False)
    rollout = learner.rollout(env, seed)
    curve = [evaluate(learner, params, env, steps=config.eval_steps, seed=config.eval_seed)]
    for _ in range(shots):
        for _ in range(config.shot_steps):
            rollout.step(params, rng)
        loss, _ = learner.loss(params, targets, rollout.sample(config.batch_size, rng))
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                if g is not None:
                    p -= config.lr * g
        soft_update(targets, params, config.tau)
        curve.append(evaluate(learner, params, env, steps=config.eval_steps,
                              seed=config.eval_seed))
    return curve, params
