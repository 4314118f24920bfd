"""Meta-HRL online: the two-level scheduler driving a vBS round by round through per-user
PRB caps (`hil run CONFIG --agent metahrl`).

Each round is one step of the scheduler. `select` turns the users the vBS reported last
round (`Context.users`) into the slicing environment's observation, closes the previous
round's transition, and decides: a high-level PRB split every `high_every` rounds, the
low-level split inside each slice every round. The split of the cell's PRBs per TTI becomes
one DL cap per user (`Decision.ue_dl_max_prb`); the cell-level policy is the policy space's
least restrictive one, so the per-user caps are what shapes the cell. `update` stores the
round's reward (the engine's: throughput utility minus weighted power) for the high level;
each slice's low-level reward is its QoS from the users' reports minus the power weight
times the slice's share of the PRBs used (airtime is what costs power). Then it takes
`updates_per_round` TD3 steps (Adam) on its replay.

Reports in, caps out (`agents.meta_hrl.online.LiveDu`) are shared with the fixed
schedulers run as agents (`fixed-slicing`), so the two differ only in how they decide.

Initialisation: a meta-model file (`model`, written by `hil metahrl --save-model`), or
`pretrain_iterations` meta-iterations on simulated DUs of the same size, or random weights.
Pretraining is not done in the constructor: a resumed run builds the agent again before it
loads the checkpoint, and pretraining there would spend its time on weights the checkpoint
replaces. It is done by `prepare()`, which a fresh run calls before its testbed starts
(`hil.run.execute`), or else at the first `select`. The state says whether it has run, so a
run stopped before its first decision still pretrains when resumed.

Power: online, the low level has no power head (`HrlConfig(power_head=False)`): the protocol
caps each user's DL PRBs but has no per-user power (the cell's DL gain is one cell-wide
threshold, and per-user power is in neither the protocol, the emulator nor the srsENB
patch), so a power output would act on nothing and its critic input would be noise. The
simulated DUs it pretrains on are built with `power_control=False` too (every user at full
power), to learn what the live cell can do; a meta-model file must have been saved without
a power head as well.

The state (networks, targets, optimiser, replay buffers, the episode's bookkeeping and the
RNG) is plain numpy and Python, so a checkpointed run resumes decision for decision.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Context, Decision, check_feedback, check_state
from agents.meta_hrl.ddpg import clone_params, soft_update
from agents.meta_hrl.env import make_tasks
from agents.meta_hrl.hrl import HrlAction, HrlConfig, HrlLearner, HrlRollout
from agents.meta_hrl.online import LiveDu
from agents.meta_hrl.training import TrainConfig, Trainer, param_groups
from agents.policy_space import PolicySpace

POLICY_DELAY = TrainConfig().policy_delay
ONLINE_CONFIG = HrlConfig(power_head=False)
"""The learner online: no per-user power (see the module's docstring)."""


class MetaHrlAgent:
    name = "metahrl"

    def __init__(
        self,
        n_actions: int,
        *,
        seed: int,
        du: Mapping[str, int] | None = None,
        policy_space: PolicySpace | None = None,
        model: str | None = None,
        pretrain_iterations: int = 0,
        lr: float = 1e-3,
        actor_lr_ratio: float = 0.1,
        batch_size: int = 32,
        updates_per_round: int = 1,
        tau: float = 0.01,
        explore: bool = True,
    ) -> None:
        self.live = LiveDu(self.name, du, n_actions, policy_space)
        if pretrain_iterations < 0 or updates_per_round < 0 or batch_size < 1:
            raise ValueError("pretrain_iterations and updates_per_round must be >= 0, "
                             "batch_size >= 1")
        self.n_actions = n_actions
        self._config = {"du": dict(du or {}), "model": model,
                        "pretrain_iterations": pretrain_iterations,
                        "lr": lr, "actor_lr_ratio": actor_lr_ratio, "batch_size": batch_size,
                        "updates_per_round": updates_per_round, "tau": tau, "explore": explore}
        self.env = self.live.env
        self.learner = HrlLearner(ONLINE_CONFIG, seed=seed)
        self.params = self.learner.params()
        if model is not None:
            load_model(self.learner, Path(model))
        # pretraining is due at the first select, with this seed (None: done or none to do)
        self._pretrain_seed = seed if model is None and pretrain_iterations > 0 else None
        self.targets = clone_params(self.params, requires_grad=False)
        self.optimizer = torch.optim.Adam(param_groups(self.params, lr, actor_lr_ratio))
        self.rollout = HrlRollout(self.learner, self.env, seed)
        self.rng = np.random.default_rng(seed)
        self.batch_size, self.updates_per_round, self.tau = batch_size, updates_per_round, tau
        self.explore = explore
        self._updates = 0  # DDPG steps taken online (TD3 delays every other actor step)
        self._pending: dict[str, Any] | None = None  # last round: obs, action, reward

    # ------------------------------------------------------------------ the Agent protocol
    def select(self, context: Context | None = None) -> Decision:
        self.prepare()
        obs, slice_qos = self.live.observe(context or Context())
        if self._pending is not None and self._pending["reward"] is not None:
            p = self._pending
            self.rollout.record(p["obs"], p["action"], p["reward"],
                                self.live.slice_rewards(slice_qos, context), obs)
        action = self.rollout.act(self.params, obs, self.rng if self.explore else None)
        self._pending = {"obs": obs, "action": action, "reward": None}
        return self.live.decision(action.env_action)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        check_feedback(decision, reward, self.n_actions)
        if self._pending is not None:
            self._pending["reward"] = float(reward)
        if not self.rollout.ready(self.batch_size):
            return
        for _ in range(self.updates_per_round):
            # TD3, as in training: the actors and the targets step every POLICY_DELAY-th
            # update (an actor without a gradient is left alone by Adam)
            actor = self._updates % POLICY_DELAY == 0
            batch = self.rollout.sample(self.batch_size, self.rng)
            loss, _ = self.learner.loss(self.params, self.targets, batch, actor=actor)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if actor:
                soft_update(self.targets, self.params, self.tau)
            self._updates += 1

    def probabilities(self) -> np.ndarray:
        return self.live.probabilities()

    # ------------------------------------------------------------------ pretraining
    def prepare(self) -> None:
        """Pretrain if it is due (not yet done, nor loaded with a state): meta-train on
        simulated DUs of this size (without power, as online), then start the targets from
        the pretrained weights; Adam has taken no step yet, so it has no moments to reset."""
        seed = self._pretrain_seed
        if seed is None:
            return
        n_ues = self.live.profile.n_ues
        tasks = make_tasks(7, n_ues, seed=seed, power_control=False)
        trainer = Trainer(self.learner, tasks, TrainConfig(), seed=seed)
        for _ in range(self._config["pretrain_iterations"]):
            trainer.step()
        with torch.no_grad():
            for key, value in self.params.items():
                self.targets[key].copy_(value)
        self._pretrain_seed = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        pending = None if self._pending is None else {
            **self._pending, "action": asdict(self._pending["action"])}
        return {"agent": self.name, "config": self._config,
                "params": _numpy(self.params), "targets": _numpy(self.targets),
                "optimizer": _numpy_tree(self.optimizer.state_dict()),
                "rollout": self.rollout.state_dict(), "pending": pending,
                "rng": self.rng.bit_generator.state, "pretrain_seed": self._pretrain_seed,
                "updates": self._updates, "live": self.live.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config)
        with torch.no_grad():
            for key, value in state["params"].items():
                self.params[key].copy_(torch.from_numpy(value))
            for key, value in state["targets"].items():
                self.targets[key].copy_(torch.from_numpy(value))
        self.optimizer.load_state_dict(_torch_tree(state["optimizer"]))
        self.rollout.load_state_dict(state["rollout"])
        pending = state["pending"]
        self._pending = None if pending is None else {
            **pending, "action": HrlAction(**pending["action"])}
        self.rng.bit_generator.state = state["rng"]
        self._updates = int(state["updates"])
        # None once pretrained; states saved before pretraining was lazy hold pretrained
        # weights already
        self._pretrain_seed = state.get("pretrain_seed")
        if "live" in state:  # states saved before users were placed from their reports
            self.live.load_state_dict(state["live"])


def save_model(learner: HrlLearner, path: Path) -> None:
    """The meta-model's weights (what a new DU starts from)."""
    torch.save(learner.nets.state_dict(), path)


def load_model(learner: HrlLearner, path: Path) -> None:
    """Start from a meta-model's weights; ValueError naming what to do if they do not fit
    (not a model, or one of other networks: with a power head where the learner has none)."""
    try:
        weights = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"model {path}: cannot read Meta-HRL weights from it ({exc}); write "
                         "one with `hil metahrl --save-model PATH`") from exc
    try:
        learner.nets.load_state_dict(weights)
    except RuntimeError as exc:
        head = "without" if not learner.config.power_head else "with"
        raise ValueError(f"model {path}: its networks are not those of this version's "
                         f"learner, whose low level is {head} a power head ({exc}); save one "
                         "for it with this version's `hil metahrl --save-model PATH`") from exc


def _numpy(params: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in params.items()}


def _numpy_tree(value: Any) -> Any:
    """Tensors anywhere in a nested dict/list turned into numpy arrays (tagged to go back)."""
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().numpy().copy()}
    if isinstance(value, dict):
        return {k: _numpy_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_numpy_tree(v) for v in value)
    return value


def _torch_tree(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return torch.from_numpy(np.array(value["__tensor__"]))
        return {k: _torch_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_torch_tree(v) for v in value)
    return value
