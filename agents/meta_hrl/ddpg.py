"""DDPG pieces shared by both levels and the flat baseline, written as pure functions of
parameter dicts so that MAML can evaluate them at adapted parameters.

For a critic Q, actor mu, target parameters (Q', mu') and a batch (s, a, r, s'):

    y     = r + gamma Q'(s', mu'(s'))                 (no gradient: the target)
    delta = y - Q(s, a)                               (TD error; its variance weights tasks)
    L_Q   = mean delta^2
    L_mu  = -mean Q(s, mu(s))   with Q's parameters held constant,

so one scalar, L_Q + L_mu, trains both networks: the critic's parameters get gradient only
from L_Q, the actor's only from L_mu. Truncated episodes bootstrap (there is no terminal
state in a cell that keeps serving users).
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


def td_loss(q: torch.Tensor, reward: torch.Tensor, next_q_target: torch.Tensor,
            gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean squared TD error, TD errors) with the target held constant."""
    delta = reward + gamma * next_q_target.detach() - q
    return (delta ** 2).mean(), delta.detach()


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
