"""The networks of both scheduler levels, and of the flat baseline, as plain torch modules.

Shapes follow the slicing environment (`agents.meta_hrl.env`): 3 slices with
`N_SLICE_FEATURES` each, `n_ues` users with `N_USER_FEATURES` each.

- High level (non-RT): actor slice features (3 x F_S) -> 3 slice scores in [-1, 1]; critic
  (slice features, scores) -> Q.
- Low level (near-RT), goal-conditioned: one per-user actor shared by every user of every
  slice, (user features, the goal of the user's slice) -> (PRB score, power score), or the
  PRB score alone without a power head; the critic is a DeepSets network,
  Q_s = rho(mean over the slice's users of phi(user, goal,
  action), goal), so one set of weights serves any number of users. That is what lets a
  meta-model trained on DUs of 30 users run a DU of 200, and keeps a decision one batched
  matrix product over the users (`hil bench`: metahrl_low_decision_ms).
- Flat baseline: one actor over the whole observation -> the whole action, one critic.

Every critic is a `Twin`: TD3's two critics of the same shape, whose smaller target estimate
is the TD target (it curbs DDPG's overestimation, which made the flat baseline get worse
with training).

A goal is (the slice's share of the PRBs the high level gave it, the slice's features).
Parameters live in the modules; the learners call them through
`torch.func.functional_call` with parameter dicts, so that MAML can run them on adapted
parameters without copying modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from agents.meta_hrl.env import N_SLICE_FEATURES, N_USER_FEATURES

N_SLICES = 3
GOAL_DIM = 1 + N_SLICE_FEATURES
USER_ACTION_DIM = 2  # PRB score, power score (1 without the power head)


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], *, squash: bool = False) -> nn.Sequential:
    """Linear + ReLU layers; `squash` ends in tanh for actions in [-1, 1]."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    if squash:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class Twin(nn.Module):
    """Two critics of the same shape (TD3); `forward` stacks their estimates, (2, ...)."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.q1, self.q2 = build(), build()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.q1(*inputs), self.q2(*inputs)])


class DeepSetCritic(nn.Module):
    """Q of each slice from its users' (features, goal, action): rho([mean phi, goal])."""

    def __init__(self, hidden: Sequence[int], user_action_dim: int) -> None:
        super().__init__()
        width = hidden[-1]
        self.phi = mlp(N_USER_FEATURES + GOAL_DIM + user_action_dim, width, hidden[:-1])
        self.rho = mlp(width + GOAL_DIM, 1, hidden[:-1])

    def forward(self, users: torch.Tensor, user_goals: torch.Tensor, actions: torch.Tensor,
                members: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """users (B, n, F_U), user_goals (B, n, G), actions (B, n, A), members (3, n) with
        rows that sum to 1 over a slice's users, goals (B, 3, G) -> Q (B, 3)."""
        h = torch.relu(self.phi(torch.cat([users, user_goals, actions], dim=-1)))
        pooled = torch.einsum("sn,bnh->bsh", members, h)
        return self.rho(torch.cat([pooled, goals], dim=-1)).squeeze(-1)


class HrlNets(nn.Module):
    """The four networks of the two-level scheduler; their parameters are what MAML meta-learns."""

    def __init__(self, hidden: Sequence[int] = (64, 64),
                 user_action_dim: int = USER_ACTION_DIM) -> None:
        super().__init__()
        slice_in = N_SLICES * N_SLICE_FEATURES
        self.high_actor = mlp(slice_in, N_SLICES, hidden, squash=True)
        self.high_critic = Twin(lambda: mlp(slice_in + N_SLICES, 1, hidden))
        self.low_actor = mlp(N_USER_FEATURES + GOAL_DIM, user_action_dim, hidden, squash=True)
        self.low_critic = Twin(lambda: DeepSetCritic(hidden, user_action_dim))


class FlatNets(nn.Module):
    """The flat DRL baseline: one DDPG over the joint action of a DU with `n_ues` users."""

    def __init__(self, n_ues: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        obs_dim = N_SLICES * N_SLICE_FEATURES + n_ues * N_USER_FEATURES
        act_dim = N_SLICES + USER_ACTION_DIM * n_ues
        self.actor = mlp(obs_dim, act_dim, hidden, squash=True)
        self.critic = Twin(lambda: mlp(obs_dim + act_dim, 1, hidden))
