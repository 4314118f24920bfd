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

Updates follow TD3: every update trains the critics; the actors' terms and the target
networks' soft update come every `policy_delay`-th update.

Adaptation (`adapt`) adapts a trained model to a new DU as it was trained: each shot runs
`shot_steps` steps on the DU, then `updates_per_shot` updates on batches of that DU's data.
A MAML-trained model updates with its inner step (theta - alpha * grad, alpha per entry,
learnt by Meta-SGD), so deployment is what meta-training optimised; every other model
fine-tunes with the Adam step it was trained with. Evaluation runs the deterministic policy
for `eval_steps` steps of a fixed episode, so curves of different methods see the same
traffic.
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
from agents.meta_hrl.maml import Direction, Weighting, inner_update, step_sizes, variance_weights

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
    def loss(self, params: Params, targets: Params, batch: Any, *,
             actor: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """TD3's loss (the actors' terms only if `actor`) and each level's TD errors."""
        ...
    def actions(self, params: Params, batch: Any) -> torch.Tensor:
        """Every action the actors take on the batch's states, flattened."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "maml"
    inner_lr: float = 0.01        # alpha: Meta-SGD's initial step size of the critics' entries
    inner_lr_actor: float = 1.0   # ... and of the actors' (0.01 moved actions by ~5e-4)
    learn_inner_lr: bool = True   # Meta-SGD: alpha learnt by the outer step (MAML only)
    outer_lr: float = 1e-3        # beta (Adam), the critics' step
    actor_lr_ratio: float = 0.1   # the actors step this much slower than the critics
    first_order: bool = False
    weighting: Weighting = "adaptive"
    direction: Direction = "softmin"
    temperature: float = 1.0
    collect_steps: int = 10       # per DU and meta-iteration
    updates_per_iteration: int = 1  # Adam steps per meta-iteration, each on fresh batches
    tasks_per_update: int = 0     # the meta-batch: DUs drawn for each update (0: all)
    policy_delay: int = 2         # TD3: actors and targets step every this many updates
    warmup_steps: int = 100       # per DU, noisy steps before the first update
    batch_size: int = 32
    tau: float = 0.01             # soft update of the target networks

    def __post_init__(self) -> None:
        if self.updates_per_iteration < 1 or self.policy_delay < 1 or self.tasks_per_update < 0:
            raise ValueError(f"updates_per_iteration and policy_delay must be >= 1 and "
                             f"tasks_per_update >= 0, got {self.updates_per_iteration}, "
                             f"{self.policy_delay} and {self.tasks_per_update}")


@dataclass(frozen=True)
class IterationStats:
    iteration: int
    reward: float                      # mean reward of the steps collected this iteration
    loss: float
    weights: np.ndarray
    td_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per task and level (tasks, levels): the variance of the TD errors."""
    inner_action_change: float = float("nan")
    """MAML: mean |change| of the actions (on [-1, 1]) the inner step makes, over tasks."""
    weighting_cosine: float = float("nan")
    """MAML: cosine between the task-weighted and the uniformly weighted meta-gradient."""


def _is_actor(name: str) -> bool:
    """Whether a parameter (by name; a Meta-SGD step size is named after its parameter)
    belongs to an actor network."""
    return "actor" in name


def param_groups(params: Params, lr: float, actor_ratio: float) -> list[dict[str, Any]]:
    """Adam groups: the actors learn `actor_ratio` times slower than the critics, so that a
    policy does not chase a critic that has not yet learnt (Adam's step ignores the scale
    of a loss, so a smaller actor loss would not do this)."""
    actors = [p for k, p in params.items() if _is_actor(k)]
    critics = [p for k, p in params.items() if not _is_actor(k)]
    return [{"params": critics, "lr": lr}, {"params": actors, "lr": lr * actor_ratio}]


class Trainer:
    """Meta- or joint training of one learner's parameters over a set of DUs."""

    def __init__(self, learner: Learner, envs: Sequence[DuSlicingEnv], config: TrainConfig,
                 *, seed: int) -> None:
        if not envs:
            raise ValueError("give at least one DU to train on")
        self.meta_batch = min(config.tasks_per_update or len(envs), len(envs))
        if config.weighting == "static" and self.meta_batch < len(envs):
            raise ValueError("static task weights need every DU in every update: set "
                             "tasks_per_update to 0 or to the number of DUs")
        self.learner, self.config = learner, config
        self.params = learner.params()
        self.targets = clone_params(self.params, requires_grad=False)
        maml = config.method == "maml"
        self.alpha = step_sizes(
            self.params, lambda k: config.inner_lr_actor if _is_actor(k) else config.inner_lr,
            learn=maml and config.learn_inner_lr)
        groups = param_groups(self.params, config.outer_lr, config.actor_lr_ratio)
        if maml and config.learn_inner_lr:
            groups.append({"params": list(self.alpha.values()), "lr": config.outer_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.updates = 0
        self.rng = np.random.default_rng(seed)
        seeds = np.random.SeedSequence(seed).generate_state(len(envs))
        self.rollouts = [learner.rollout(env, int(s)) for env, s in zip(envs, seeds)]
        self.static_weights: np.ndarray | None = None
        self.iteration = 0
        for rollout in self.rollouts:
            for _ in range(config.warmup_steps):
                rollout.step(self.params, self.rng)

    def step(self) -> IterationStats:
        """One meta-iteration (or joint iteration): every DU collects, then
        `updates_per_iteration` updates, each on fresh batches of a meta-batch of
        `tasks_per_update` DUs (drawn anew per update; all of them by default, so that a
        network of 30 DUs costs what one of 7 does per update). The statistics are those of
        the last update."""
        cfg = self.config
        rewards = [rollout.step(self.params, self.rng)
                   for rollout in self.rollouts for _ in range(cfg.collect_steps)]
        maml = cfg.method == "maml"
        uniform = np.full(self.meta_batch, 1.0 / self.meta_batch)
        trained = {**self.params, **{f"alpha:{k}": v for k, v in self.alpha.items()
                                     if v.requires_grad}}
        for _ in range(cfg.updates_per_iteration):
            actor = self.updates % cfg.policy_delay == 0
            tasks = (self.rollouts if self.meta_batch == len(self.rollouts) else
                     [self.rollouts[i] for i in self.rng.choice(len(self.rollouts),
                                                                self.meta_batch, replace=False)])
            grads, losses, variances, moved = self._task_gradients(tasks, trained, actor)
            weights = self.task_weights(np.asarray(variances)) if maml else uniform
            self.optimizer.zero_grad()
            for name, param in trained.items():
                if actor or not _is_actor(name):  # Adam leaves a parameter without grad be
                    param.grad = sum(float(w) * g[name] for w, g in zip(weights, grads))
            self.optimizer.step()
            with torch.no_grad():
                for alpha in self.alpha.values():
                    alpha.clamp_(min=0.0)  # a negative step would climb the loss
            if actor:
                soft_update(self.targets, self.params, cfg.tau)
            self.updates += 1
        self.iteration += 1
        return IterationStats(
            self.iteration, float(np.mean(rewards)), float(np.dot(weights, losses)), weights,
            np.asarray(variances), float(np.mean(moved)) if maml else float("nan"),
            _cosine(_combine(grads, weights), _combine(grads, uniform)) if maml
            else float("nan"))

    def adaptation(self) -> AdaptStep:
        """How the trained model adapts to a new DU: MAML by its inner step (the step sizes
        Meta-SGD learnt), joint training by Adam at its training step."""
        if self.config.method == "maml":
            return {k: v.detach().clone() for k, v in self.alpha.items()}
        return AdamStep(self.config.outer_lr, self.config.actor_lr_ratio)

    def task_weights(self, td_variance: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.weighting == "uniform":
            return np.full(len(td_variance), 1.0 / len(td_variance))
        if cfg.weighting == "static":
            if self.static_weights is None:
                self.static_weights = variance_weights(td_variance, cfg.direction, cfg.temperature)
            return self.static_weights
        return variance_weights(td_variance, cfg.direction, cfg.temperature)

    def _task_gradients(self, tasks: Sequence[Rollout], trained: Params, actor: bool,
                        ) -> tuple[list[Params], list[float], list[list[float]], list[float]]:
        """Per DU: the gradient (w.r.t. `trained`: the shared parameters, and Meta-SGD's
        step sizes) of its loss, the variance of each level's TD errors and (MAML) how far
        the inner step moved its actions. With MAML the loss is that of the parameters
        adapted on a train batch (actors included: adaptation moves the policy), evaluated
        on a validation batch. Gradients are taken task by task, so only one task's graph
        is alive at a time."""
        cfg = self.config
        grads: list[Params] = []
        losses, variances, moved = [], [], []
        for rollout in tasks:
            params, batch = self.params, rollout.sample(cfg.batch_size, self.rng)
            if cfg.method == "maml":
                params = inner_update(lambda p, b=batch: self.learner.loss(p, self.targets, b)[0],
                                      self.params, self.alpha, first_order=cfg.first_order)
                with torch.no_grad():
                    moved.append(float((self.learner.actions(params, batch)
                                        - self.learner.actions(self.params, batch)).abs().mean()))
                batch = rollout.sample(cfg.batch_size, self.rng)
            loss, tds = self.learner.loss(params, self.targets, batch, actor=actor)
            grads.append(_gradient(loss, trained))
            losses.append(float(loss.detach()))
            variances.append([float(td.var()) for td in tds])
        return grads, losses, variances, moved


def _gradient(loss: torch.Tensor, wrt: Params) -> Params:
    """d loss / d each of `wrt` (zeros where the loss does not depend on it)."""
    names = list(wrt)
    grads = torch.autograd.grad(loss, [wrt[k] for k in names], allow_unused=True)
    return {k: torch.zeros_like(wrt[k]) if g is None else g for k, g in zip(names, grads)}


def _combine(grads: list[Params], weights: np.ndarray) -> torch.Tensor:
    """The weighted sum of per-task gradients, flattened into one vector."""
    return sum(float(w) * torch.cat([g[k].flatten() for k in sorted(g)])
               for w, g in zip(weights, grads))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


@dataclass(frozen=True)
class AdamStep:
    """Fine-tuning with Adam, as a jointly trained (or untrained) model adapts."""

    lr: float = 1e-3
    actor_lr_ratio: float = 0.1


AdaptStep = Params | AdamStep
"""How a model adapts: Meta-SGD's step sizes per entry (MAML) or Adam (the others)."""


@dataclass(frozen=True)
class AdaptConfig:
    shot_steps: int = 20          # environment steps per shot
    updates_per_shot: int = 10
    policy_delay: int = 2         # TD3, as in training
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
          step: AdaptStep, *, seed: int) -> tuple[list[float], Params]:
    """Adapt `init` to `env` with `shots` shots, each `updates_per_shot` updates by `step`;
    returns the evaluation reward before the first shot and after each (shots + 1 values)
    and the adapted parameters."""
    rng = np.random.default_rng(seed)
    params = clone_params(init, requires_grad=True)
    targets = clone_params(init, requires_grad=False)
    optimizer = (torch.optim.Adam(param_groups(params, step.lr, step.actor_lr_ratio))
                 if isinstance(step, AdamStep) else None)
    rollout = learner.rollout(env, seed)
    curve = [evaluate(learner, params, env, steps=config.eval_steps, seed=config.eval_seed)]
    for _ in range(shots):
        for _ in range(config.shot_steps):
            rollout.step(params, rng)
        for update in range(config.updates_per_shot):
            actor = update % config.policy_delay == 0
            loss, _ = learner.loss(params, targets, rollout.sample(config.batch_size, rng),
                                   actor=actor)
            grads = _gradient(loss, params)
            stepped = {k: p for k, p in params.items() if actor or not _is_actor(k)}
            if optimizer is not None:
                optimizer.zero_grad()
                for name, param in stepped.items():
                    param.grad = grads[name]
                optimizer.step()
            else:
                with torch.no_grad():
                    for name, param in stepped.items():
                        param -= step[name] * grads[name]
            if actor:
                soft_update(targets, params, config.tau)
        curve.append(evaluate(learner, params, env, steps=config.eval_steps,
                              seed=config.eval_seed))
    return curve, params
