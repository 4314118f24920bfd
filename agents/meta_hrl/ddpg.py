"""TD3 pieces shared by both levels and the flat baseline, written as pure functions of
parameter dicts so that MAML can evaluate them at adapted parameters.

For twin critics Q1, Q2, an actor mu, target parameters (Q1', Q2', mu') and a batch
(s, a, r, s', eps) whose eps is the target-smoothing noise (drawn with the batch, clipped):

    a'    = clip(mu'(s') + eps, -1, 1)                (target policy smoothing)
    y     = r + gamma min(Q1'(s', a'), Q2'(s', a'))   (no gradient: the target)
    delta = y - Q1(s, a)                              (TD error; its variance weights tasks)
    L_Q   = mean (y - Q1)^2 + mean (y - Q2)^2
    L_mu  = -mean Q1(s, mu(s))   with Q1's parameters held constant,

so one scalar, L_Q + L_mu, trains every network: the critics' parameters get gradient only
from L_Q, the actor's only from L_mu. The trainer leaves L_mu out of all but every
`policy_delay`-th update (TD3's delayed actor). Truncated episodes bootstrap (there is no
terminal state in a cell that keeps serving users).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def subparams(params: Mapping[str, torch.Tensor], prefix: str, *, frozen: bool = False) -> Params:
    """The parameters of submodule `prefix`, named as that submodule names them; `frozen`
    detaches them (a critic seen from the actor's loss)."""
    start = prefix + "."
    return {k[len(start):]: (v.detach() if frozen else v)
            for k, v in params.items() if k.startswith(start)}


def call(module: nn.Module, params: Mapping[str, torch.Tensor],
         *args: torch.Tensor) -> torch.Tensor:
    """Run `module` with `params` in place of its own (torch.func.functional_call)."""
    return functional_call(module, dict(params), args)


def td_loss(q: torch.Tensor, reward: torch.Tensor, next_q: torch.Tensor,
            gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin critics' estimates q (2, B, ...) and the target twins' next_q (2, B, ...):
    (the sum of both critics' mean squared TD errors, the first critic's TD errors), with
    the target y = r + gamma min(next_q) held constant."""
    target = reward + gamma * next_q.detach().min(dim=0).values
    delta = target - q
    return (delta ** 2).flatten(1).mean(dim=1).sum(), delta[0].detach()


def smoothed(action: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A target action with TD3's smoothing noise, kept inside the action box."""
    return (action + noise).clamp(-1.0, 1.0)


def target_noise(shape: tuple[int, ...], sigma: float, clip: float,
                 rng: np.random.Generator) -> np.ndarray:
    """TD3's target-smoothing noise: N(0, sigma) clipped to [-clip, clip]."""
    return np.clip(rng.normal(0.0, sigma, shape), -clip, clip).astype(np.float32)


def soft_update(target: Params, source: Mapping[str, torch.Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau source, in place (Polyak averaging)."""
    with torch.no_grad():
        for key, value in target.items():
            value.lerp_(source[key].detach(), tau)


def clone_params(params: Mapping[str, torch.Tensor], *, requires_grad: bool) -> Params:
    """Independent copies (a target network, or the fast weights of an adaptation)."""
    return {k: v.detach().clone().requires_grad_(requires_grad) for k, v in params.items()}


def explore(action: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian exploration noise, kept inside the action box [-1, 1]."""
    if sigma <= 0:
        return action
    return np.clip(action + rng.normal(0.0, sigma, action.shape), -1.0, 1.0).astype(np.float32)


def seeded_init(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module whose initial weights depend on `seed` only, not on global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
