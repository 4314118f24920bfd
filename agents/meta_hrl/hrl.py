"""The two-level scheduler: a high-level DDPG splits the PRBs across slices, a low-level,
goal-conditioned DDPG splits each slice's PRBs (and power) across its users.

Timescales. The high level decides every `high_every` environment steps (non-RT RIC) from
the aggregated slice features; its transition's reward is the mean system reward over
those steps. The low level decides every step (near-RT RIC); each slice contributes one
transition per step, rewarded by that slice's QoS minus its share of the power, given its
goal (the slice's PRB share and features). Actions stay in [-1, 1]; the environment maps
them to PRBs at its boundary (`agents.meta_hrl.env.allocate_prbs`). Both levels learn by
TD3 (`agents.meta_hrl.ddpg`).

Power. With `power_head` the low level also sets each user's transmit power fraction; without
it, the low level's action is the PRB score alone and users transmit at full power (the
online agent: the vBS protocol has a cell-wide DL gain threshold, no per-user power).

`HrlLearner` holds the networks and the loss; `HrlRollout` runs one DU (one task) with
given parameters and fills that task's replay buffers. Keeping the parameters outside the
rollout is what lets MAML act and learn with adapted copies.
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
from agents.meta_hrl.env import DuSlicingEnv, Episodes, allocate_prbs
from agents.meta_hrl.networks import GOAL_DIM, N_SLICES, USER_ACTION_DIM, HrlNets
from agents.meta_hrl.replay import ReplayBuffer

_SHARE_UNITS = 10_000  # resolution of the slice shares a goal carries


@dataclass(frozen=True)
class HrlConfig:
    hidden: tuple[int, ...] = (64, 64)
    high_every: int = 5
    gamma_high: float = 0.9
    gamma_low: float = 0.9
    noise_high: float = 0.3
    noise_low: float = 0.2
    target_noise: float = 0.2     # TD3's target smoothing: sigma, then clipped to +-noise_clip
    noise_clip: float = 0.5
    power_head: bool = True       # the low level sets each user's transmit power too
    buffer_capacity: int = 5_000  # per task and level; untouched rows cost no memory

    @property
    def user_action_dim(self) -> int:
        return USER_ACTION_DIM if self.power_head else 1


@dataclass(frozen=True)
class HrlBatch:
    """Tensors of one task's high- and low-level transitions (with the target-smoothing
    noise drawn for them, "noise"), plus its slice membership."""

    high: dict[str, torch.Tensor]
    low: dict[str, torch.Tensor]
    members: torch.Tensor     # (3, n) rows average over a slice's users
    user_slice: torch.Tensor  # (n,) long


def slice_shares(high_action: np.ndarray, user_slice: np.ndarray) -> np.ndarray:
    """The PRB share of each slice a high-level action asks for (the goal's first entry)."""
    prb, _ = allocate_prbs(high_action, np.zeros(len(user_slice)), user_slice, _SHARE_UNITS)
    return prb / _SHARE_UNITS


def membership(user_slice: np.ndarray) -> np.ndarray:
    """(3, n) matrix whose row s averages over the users of slice s (zeros if it has none)."""
    onehot = (user_slice[None, :] == np.arange(N_SLICES)[:, None]).astype(np.float32)
    return onehot / np.maximum(onehot.sum(axis=1, keepdims=True), 1.0)


class HrlLearner:
    """The networks of both levels and their TD3 loss on a task's batch."""

    def __init__(self, config: HrlConfig = HrlConfig(), *, seed: int) -> None:
        self.config = config
        self.nets = seeded_init(lambda: HrlNets(config.hidden, config.user_action_dim), seed)

    def params(self) -> Params:
        return dict(self.nets.named_parameters())

    def rollout(self, env: DuSlicingEnv, seed: int) -> HrlRollout:
        return HrlRollout(self, env, seed)

    def high_action(self, params: Params, slices: torch.Tensor) -> torch.Tensor:
        """(..., 3 * F_S) slice features -> (..., 3) slice scores."""
        return call(self.nets.high_actor, subparams(params, "high_actor"), slices)

    def low_action(self, params: Params, users: torch.Tensor,
                   user_goals: torch.Tensor) -> torch.Tensor:
        """(..., n, F_U) users and the goals of their slices (..., n, G) -> (..., n, A)."""
        return call(self.nets.low_actor, subparams(params, "low_actor"),
                    torch.cat([users, user_goals], dim=-1))

    def actions(self, params: Params, batch: HrlBatch) -> torch.Tensor:
        """Both levels' actions on the batch's states, flattened."""
        low = self.low_action(params, batch.low["users"], batch.low["goals"][:, batch.user_slice])
        return torch.cat([self.high_action(params, batch.high["s"]).flatten(), low.flatten()])

    def loss(self, params: Params, targets: Params, batch: HrlBatch, *,
             actor: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Both levels' TD3 losses summed (without the actors' terms unless `actor`), and
        each level's TD errors (high, low), for the task weights."""
        high_loss, high_td = self._high_loss(params, targets, batch.high, actor)
        low_loss, low_td = self._low_loss(params, targets, batch, actor)
        return high_loss + low_loss, (high_td.flatten(), low_td.flatten())

    def _high_loss(self, params: Params, targets: Params, b: dict[str, torch.Tensor],
                   actor: bool) -> tuple[torch.Tensor, torch.Tensor]:
        critic = self.nets.high_critic
        q = call(critic, subparams(params, "high_critic"), torch.cat([b["s"], b["a"]], -1))
        with torch.no_grad():
            next_a = smoothed(self.high_action(targets, b["s2"]), b["noise"])
            next_q = call(critic, subparams(targets, "high_critic"),
                          torch.cat([b["s2"], next_a], -1))
        loss, td = td_loss(q.squeeze(-1), b["r"], next_q.squeeze(-1), self.config.gamma_high)
        if actor:
            a = self.high_action(params, b["s"])
            loss = loss - call(critic.q1, subparams(params, "high_critic.q1", frozen=True),
                               torch.cat([b["s"], a], -1)).mean()
        return loss, td

    def _low_loss(self, params: Params, targets: Params, batch: HrlBatch,
                  actor: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b, critic, members = batch.low, self.nets.low_critic, batch.members
        goals, next_goals = b["goals"], b["next_goals"]
        user_goals, next_user_goals = goals[:, batch.user_slice], next_goals[:, batch.user_slice]
        q = call(critic, subparams(params, "low_critic"),
                 b["users"], user_goals, b["actions"], members, goals)
        with torch.no_grad():
            next_a = smoothed(self.low_action(targets, b["next_users"], next_user_goals),
                              b["noise"])
            next_q = call(critic, subparams(targets, "low_critic"),
                          b["next_users"], next_user_goals, next_a, members, next_goals)
        loss, td = td_loss(q, b["rewards"], next_q, self.config.gamma_low)
        if actor:
            a = self.low_action(params, b["users"], user_goals)
            loss = loss - call(critic.q1, subparams(params, "low_critic.q1", frozen=True),
                               b["users"], user_goals, a, members, goals).mean()
        return loss, td


@dataclass(frozen=True)
class HrlAction:
    """One step's decisions: env action, high action in force, goals, low actions."""

    env_action: np.ndarray
    high: np.ndarray
    goals: np.ndarray   # (3, GOAL_DIM)
    low: np.ndarray     # (n, A): PRB score (and power score)


class HrlRollout:
    """One DU run by the two-level scheduler: where its episode stands and its replay buffers.

    `act` and `record` are the two halves of a step, so that the same bookkeeping serves a
    simulated DU (`step` drives the environment) and a live vBS (`agents.meta_hrl.agent`,
    where the round engine stands between deciding and measuring).
    """

    def __init__(self, learner: HrlLearner, env: DuSlicingEnv, seed: int) -> None:
        self.learner, self.env = learner, env
        cfg, n = learner.config, env.profile.n_ues
        self.user_slice = np.asarray(env.user_slice)
        slices, users = env.split_observation(env.observation_space.sample())
        f_s, f_u = slices.size, users.shape[1]
        self.high_buffer = ReplayBuffer(cfg.buffer_capacity, {
            "s": (f_s,), "a": (N_SLICES,), "r": (), "s2": (f_s,)})
        self.low_buffer = ReplayBuffer(cfg.buffer_capacity, {
            "users": (n, f_u), "goals": (N_SLICES, GOAL_DIM), "actions": (n, cfg.user_action_dim),
            "rewards": (N_SLICES,), "next_users": (n, f_u), "next_goals": (N_SLICES, GOAL_DIM)})
        self._members = torch.from_numpy(membership(self.user_slice))
        self._user_slice_t = torch.from_numpy(self.user_slice.astype(np.int64))
        self._episodes = Episodes(env, seed)
        self._obs = self._episodes.reset()
        self._t = 0
        self._high: dict[str, np.ndarray] | None = None  # the high decision in force
        self._rewards: list[float] = []

    def act(self, params: Params, obs: np.ndarray, rng: np.random.Generator | None) -> HrlAction:
        """The decisions for `obs`, with exploration noise when `rng` is given. The high
        level decides every `high_every` steps; its previous transition closes then."""
        cfg = self.learner.config
        slices, _ = self.env.split_observation(obs)
        if self._t % cfg.high_every == 0 or self._high is None:
            with torch.no_grad():
                a = self.learner.high_action(params, torch.from_numpy(slices.reshape(-1))).numpy()
            self._close_high(slices)
            self._high = {"s": slices.reshape(-1).copy(),
                          "a": a if rng is None else explore(a, cfg.noise_high, rng)}
        self._t += 1
        return self.act_low(params, obs, rng)

    def act_low(self, params: Params, obs: np.ndarray,
                rng: np.random.Generator | None) -> HrlAction:
        """The near-RT decision alone: each user's PRB (and power) scores under the high
        action in force (what `hil bench` times as metahrl_low_decision_ms); without a
        power head every user transmits at full power (score 1)."""
        assert self._high is not None, "the high level has not decided yet: call act first"
        slices, users = self.env.split_observation(obs)
        high = self._high["a"]
        goals = self.goals(high, slices)
        with torch.no_grad():
            low = self.learner.low_action(params, torch.from_numpy(users),
                                          torch.from_numpy(goals[self.user_slice])).numpy()
        if rng is not None:
            low = explore(low, self.learner.config.noise_low, rng)
        power = low[:, 1] if low.shape[1] > 1 else np.ones(len(low), np.float32)
        action = np.concatenate([high, low[:, 0], power]).astype(np.float32)
        return HrlAction(action, high, goals, low)

    def goals(self, high: np.ndarray, slices: np.ndarray) -> np.ndarray:
        shares = slice_shares(high, self.user_slice)
        return np.concatenate([shares[:, None], slices], axis=1).astype(np.float32)

    def record(self, obs: np.ndarray, action: HrlAction, reward: float,
               slice_rewards: np.ndarray, next_obs: np.ndarray) -> None:
        """Store the low-level transition of a step and count its reward for the high level."""
        _, users = self.env.split_observation(obs)
        next_slices, next_users = self.env.split_observation(next_obs)
        self.low_buffer.add(users=users, goals=action.goals, actions=action.low,
                            rewards=np.asarray(slice_rewards, np.float32), next_users=next_users,
                            next_goals=self.goals(action.high, next_slices))
        self._rewards.append(float(reward))

    def step(self, params: Params, rng: np.random.Generator | None, *, learn: bool = True) -> float:
        """One environment step; records the transitions when `learn`. Returns the reward."""
        obs = self._obs
        action = self.act(params, obs, rng)
        next_obs, reward, terminated, truncated, info = self.env.step(action.env_action)
        if learn:
            self.record(obs, action, float(reward), info["slice_reward"], next_obs)
        if terminated or truncated:
            self._close_high(self.env.split_observation(next_obs)[0])
            next_obs, self._t, self._high = self._episodes.reset(), 0, None
        self._obs = next_obs
        return float(reward)

    def _close_high(self, next_slices: np.ndarray) -> None:
        """Store the high-level transition that ends now (if rewards were collected)."""
        if self._high is not None and self._rewards:
            self.high_buffer.add(s=self._high["s"], a=self._high["a"],
                                 r=float(np.mean(self._rewards)), s2=next_slices.reshape(-1))
        self._rewards = []

    def ready(self, batch_size: int) -> bool:
        return self.high_buffer.size > 0 and self.low_buffer.size >= batch_size

    def sample(self, batch_size: int, rng: np.random.Generator) -> HrlBatch:
        cfg = self.learner.config
        high = self.high_buffer.sample(batch_size, rng)
        low = self.low_buffer.sample(batch_size, rng)
        high["noise"] = target_noise(high["a"].shape, cfg.target_noise, cfg.noise_clip, rng)
        low["noise"] = target_noise(low["actions"].shape, cfg.target_noise, cfg.noise_clip, rng)
        return HrlBatch({k: torch.from_numpy(v) for k, v in high.items()},
                        {k: torch.from_numpy(v) for k, v in low.items()},
                        self._members, self._user_slice_t)

    def state_dict(self) -> dict:
        """Where the episode stands and the buffers (the environment's own state is not here:
        a live rollout has none, the vBS is its environment)."""
        return {"high_buffer": self.high_buffer.state_dict(),
                "low_buffer": self.low_buffer.state_dict(), "t": self._t,
                "high": None if self._high is None else dict(self._high),
                "rewards": list(self._rewards)}

    def load_state_dict(self, state: dict) -> None:
        self.high_buffer.load_state_dict(state["high_buffer"])
        self.low_buffer.load_state_dict(state["low_buffer"])
        self._t, self._rewards = int(state["t"]), list(state["rewards"])
        self._high = None if state["high"] is None else dict(state["high"])
