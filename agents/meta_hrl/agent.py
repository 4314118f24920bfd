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
`updates_per_round` DDPG steps (Adam) on its replay.

Initialisation: a meta-model file (`model`, written by `hil metahrl --save-model`), or
`pretrain_iterations` meta-iterations on simulated DUs of the same size, or random weights.

The state (networks, targets, optimiser, replay buffers, the episode's bookkeeping and the
RNG) is plain numpy and Python, so a checkpointed run resumes decision for decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Context, Decision, UserReport, check_state
from agents.meta_hrl.ddpg import clone_params, soft_update
from agents.meta_hrl.env import DuSlicingEnv, allocate_prbs, make_tasks
from agents.meta_hrl.hrl import HrlAction, HrlConfig, HrlLearner, HrlRollout
from agents.meta_hrl.training import TrainConfig, Trainer, param_groups
from agents.policy_space import Policy, PolicySpace
from drivers.emulated.sliced_vbs import du_profile, user_rntis


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
        if du is None or "n_ues" not in du:
            raise ValueError("metahrl schedules the users of a DU: give `du: {n_ues: N, seed: S}` "
                             "(the emulator's `vbs.emulator.du` is passed on by default)")
        if pretrain_iterations < 0 or updates_per_round < 0 or batch_size < 1:
            raise ValueError("pretrain_iterations and updates_per_round must be >= 0, "
                             "batch_size >= 1")
        self.n_actions = n_actions
        self._config = {"du": dict(du), "model": model, "pretrain_iterations": pretrain_iterations,
                        "lr": lr, "actor_lr_ratio": actor_lr_ratio, "batch_size": batch_size,
                        "updates_per_round": updates_per_round, "tau": tau, "explore": explore}
        self.action = _least_restrictive(policy_space, n_actions)
        profile = du_profile(int(du["n_ues"]), int(du.get("seed", 0)))
        self.env = DuSlicingEnv(profile, power_control=False)  # features and PRB mapping only
        self.rntis = user_rntis(profile)
        self.learner = HrlLearner(HrlConfig(), seed=seed)
        self.params = self.learner.params()
        if model is not None:
            load_model(self.learner, Path(model))
        elif pretrain_iterations:
            _pretrain(self.learner, profile.n_ues, pretrain_iterations, seed)
        self.targets = clone_params(self.params, requires_grad=False)
        self.optimizer = torch.optim.Adam(param_groups(self.params, lr, actor_lr_ratio))
        self.rollout = HrlRollout(self.learner, self.env, seed)
        self.rng = np.random.default_rng(seed)
        self.batch_size, self.updates_per_round, self.tau = batch_size, updates_per_round, tau
        self.explore = explore
        self._pending: dict[str, Any] | None = None  # last round: obs, action, reward

    # ------------------------------------------------------------------ the Agent protocol
    def select(self, context: Context | None = None) -> Decision:
        obs, slice_qos = self._observe(context or Context())
        if self._pending is not None and self._pending["reward"] is not None:
            p = self._pending
            self.rollout.record(p["obs"], p["action"], p["reward"],
                                self._slice_rewards(slice_qos, context), obs)
        action = self.rollout.act(self.params, obs, self.rng if self.explore else None)
        self._pending = {"obs": obs, "action": action, "reward": None}
        caps = self._caps(action)
        return Decision(action=self.action, prob=1.0, ue_dl_max_prb=caps,
                        info={"prb_split": _split(caps, self.env.user_slice)})

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1] (normalise it first), got {reward!r}")
        if self._pending is not None:
            self._pending["reward"] = float(reward)
        if not self.rollout.ready(self.batch_size):
            return
        for _ in range(self.updates_per_round):
            batch = self.rollout.sample(self.batch_size, self.rng)
            loss, _ = self.learner.loss(self.params, self.targets, batch)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            soft_update(self.targets, self.params, self.tau)

    def probabilities(self) -> np.ndarray:
        p = np.zeros(self.n_actions)
        p[self.action] = 1.0
        return p

    # ------------------------------------------------------------------ observation and caps
    def _observe(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """The environment's observation of the users' last round (all zeros before the
        first report) and each slice's QoS in it."""
        reports = {u.rnti: u for u in context.users}
        return self.env.observe_reports([reports.get(r) for r in self.rntis])

    def _slice_rewards(self, slice_qos: np.ndarray, context: Context | None) -> np.ndarray:
        users: dict[int, UserReport] = {u.rnti: u for u in (context.users if context else ())}
        prb = np.array([users[r].dl_prb if r in users else 0.0 for r in self.rntis])
        share = np.bincount(self.env.user_slice, prb, minlength=3) / max(prb.sum(), 1e-9)
        return slice_qos - self.env.power_weight * share

    def _caps(self, action: HrlAction) -> dict[int, int]:
        n = len(self.rntis)
        _, per_user = allocate_prbs(action.env_action[:3], action.env_action[3:3 + n],
                                    self.env.user_slice, self.env.cal.cell.nof_prb)
        return {r: int(c) for r, c in zip(self.rntis, per_user)}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        pending = None if self._pending is None else {
            **self._pending, "action": asdict(self._pending["action"])}
        return {"agent": self.name, "config": self._config,
                "params": _numpy(self.params), "targets": _numpy(self.targets),
                "optimizer": _numpy_tree(self.optimizer.state_dict()),
                "rollout": self.rollout.state_dict(), "pending": pending,
                "rng": self.rng.bit_generator.state}

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


def _least_restrictive(space: PolicySpace | None, n_actions: int) -> int:
    """The index of the policy with every cell cap at its loosest (the users' caps rule)."""
    if space is None:
        return n_actions - 1
    return space.index(Policy(*(max(getattr(space, f.name)) for f in fields(space))))


def _split(caps: Mapping[int, int], user_slice: np.ndarray) -> list[int]:
    per_slice = np.bincount(user_slice, np.fromiter(caps.values(), float), minlength=3)
    return per_slice.astype(int).tolist()


def _pretrain(learner: HrlLearner, n_ues: int, iterations: int, seed: int) -> None:
    trainer = Trainer(learner, make_tasks(7, n_ues, seed=seed), TrainConfig(), seed=seed)
    for _ in range(iterations):
        trainer.step()


def save_model(learner: HrlLearner, path: Path) -> None:
    """The meta-model's weights (what a new DU starts from)."""
    torch.save(learner.nets.state_dict(), path)


def load_model(learner: HrlLearner, path: Path) -> None:
    try:
        learner.nets.load_state_dict(torch.load(path, weights_only=True))
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"model {path}: cannot load Meta-HRL weights from it ({exc}); write "
                         "one with `hil metahrl --save-model PATH`") from exc


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
