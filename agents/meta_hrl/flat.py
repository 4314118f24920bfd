"""The flat DRL baseline: one TD3 learner whose action is the whole joint action of a DU (slice
scores, then every user's PRB and power scores), from the whole observation.

It learns through the same trainers as the two-level scheduler (`agents.meta_hrl.training`),
so the comparison isolates the hierarchy. Its network size grows with the number of users,
so every DU it serves must have the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.meta_hrl.ddpg import (
    Params,
    call,
    explore,
    seeded_init,
    smoothed,
    subparams,
    target_noise,
    td_loss,
)
from agents.meta_hrl.env import DuSlicingEnv, Episodes
from agents.meta_hrl.networks import FlatNets
from agents.meta_hrl.replay import ReplayBuffer


@dataclass(frozen=True)
class FlatConfig:
    hidden: tuple[int, ...] = (256, 256)
    gamma: float = 0.9
    noise: float = 0.2
    target_noise: float = 0.2     # TD3's target smoothing, clipped to +-noise_clip
    noise_clip: float = 0.5
    buffer_capacity: int = 5_000


class FlatLearner:
    def __init__(self, n_ues: int, config: FlatConfig = FlatConfig(), *, seed: int) -> None:
        self.n_ues, self.config = n_ues, config
        self.nets = seeded_init(lambda: FlatNets(n_ues, config.hidden), seed)

    def params(self) -> Params:
        return dict(self.nets.named_parameters())

    def rollout(self, env: DuSlicingEnv, seed: int) -> FlatRollout:
        if env.profile.n_ues != self.n_ues:
            raise ValueError(f"the flat baseline was built for {self.n_ues} users; DU "
                             f"{env.profile.name!r} has {env.profile.n_ues}")
        return FlatRollout(self, env, seed)

    def actions(self, params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.action(params, batch["s"]).flatten()

    def action(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        return call(self.nets.actor, subparams(params, "actor"), obs)

    def loss(self, params: Params, targets: Params, b: dict[str, torch.Tensor], *,
             actor: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The TD3 loss (without the actor's term unless `actor`) and the TD errors."""
        critic = self.nets.critic
        q = call(critic, subparams(params, "critic"), torch.cat([b["s"], b["a"]], -1))
        with torch.no_grad():
            next_a = smoothed(self.action(targets, b["s2"]), b["noise"])
            next_q = call(critic, subparams(targets, "critic"), torch.cat([b["s2"], next_a], -1))
        loss, td = td_loss(q.squeeze(-1), b["r"], next_q.squeeze(-1), self.config.gamma)
        if actor:
            loss = loss - call(critic.q1, subparams(params, "critic.q1", frozen=True),
                               torch.cat([b["s"], self.action(params, b["s"])], -1)).mean()
        return loss, (td,)


class FlatRollout:
    def __init__(self, learner: FlatLearner, env: DuSlicingEnv, seed: int) -> None:
        self.learner, self.env = learner, env
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.buffer = ReplayBuffer(learner.config.buffer_capacity, {
            "s": (obs_dim,), "a": (act_dim,), "r": (), "s2": (obs_dim,)})
        self._episodes = Episodes(env, seed)
        self._obs = self._episodes.reset()

    def step(self, params: Params, rng: np.random.Generator | None, *, learn: bool = True) -> float:
        with torch.no_grad():
            action = self.learner.action(params, torch.from_numpy(self._obs)).numpy()
        if rng is not None:
            action = explore(action, self.learner.config.noise, rng)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        if learn:
            self.buffer.add(s=self._obs, a=action, r=float(reward), s2=next_obs)
        self._obs = self._episodes.reset() if terminated or truncated else next_obs
        return float(reward)

    def ready(self, batch_size: int) -> bool:
        return self.buffer.size >= batch_size

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        cfg = self.learner.config
        batch = self.buffer.sample(batch_size, rng)
        batch["noise"] = target_noise(batch["a"].shape, cfg.target_noise, cfg.noise_clip, rng)
        return {k: torch.from_numpy(v) for k, v in batch.items()}
