"""MAML across DUs, and the TD-error-variance task weights of Meta-HRL.

Each DU g is a task with loss L_g (both levels' DDPG losses on a batch of its replay).

    inner:  theta_g = theta - alpha * grad L_g(theta; train batch)                  (11)
    outer:  theta  <- theta - beta grad sum_g w_g L_g(theta_g; validation batch)    (12, 13)

alpha is a step size per parameter entry (Meta-SGD, Li et al. 2017), learnt by the outer
step beside theta when `learn_inner_lr`, kept at its initial value otherwise. A plain
scalar step (0.01 on these losses) moved the actions by ~5e-4 on [-1, 1]: MAML's inner step
did nothing, and MAML was MTL. The same step adapts a trained model to a new DU
(`agents.meta_hrl.training.adapt`), so what meta-training optimises is what deployment does.

With `first_order` the inner gradient is a constant (FOMAML): the outer gradient is then
grad L_g evaluated at theta_g, without the second-order term through the inner step (alpha
still gets its gradient, -grad L_g(theta) * grad L_g(theta_g)).

Task weights (eq. 15) come from the variance of each task's TD errors on its validation
batch, sigma_g^2. The summary says "Softmin" and also "higher variance gets more weight",
which contradict each other, so the direction is a parameter:

    softmin:  w_g = exp(-z_g / tau) / sum_h exp(-z_h / tau)
    softmax:  w_g = exp(+z_g / tau) / sum_h exp(+z_h / tau),

    z_g = mean over levels l of sigma_gl^2 / mean_h sigma_hl^2

(z makes the temperature independent of the reward scale; taken per level, so that the low
level's ~20x larger TD errors do not decide alone). The ablations replace them by
uniform weights (Uniform-Meta) or by the weights of the first meta-iteration, kept fixed
(Static-Var).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import torch

from agents.meta_hrl.ddpg import Params

Direction = Literal["softmin", "softmax"]
Weighting = Literal["adaptive", "static", "uniform"]
DIRECTIONS: tuple[str, ...] = ("softmin", "softmax")
WEIGHTINGS: tuple[str, ...] = ("adaptive", "static", "uniform")


def step_sizes(params: Mapping[str, torch.Tensor], alpha: float | Callable[[str], float], *,
               learn: bool) -> Params:
    """Meta-SGD's per-entry step sizes, at first `alpha` (or `alpha(name)` per parameter);
    leaves of the outer step when `learn`."""
    initial = {k: alpha(k) if callable(alpha) else alpha for k in params}
    if min(initial.values(), default=1.0) <= 0:
        raise ValueError(f"an inner step size must be positive, got {initial}")
    return {k: torch.full_like(v.detach(), initial[k]).requires_grad_(learn)
            for k, v in params.items()}


def inner_update(loss_fn: Callable[[Params], torch.Tensor], params: Mapping[str, torch.Tensor],
                 alpha: Mapping[str, torch.Tensor], *, first_order: bool) -> Params:
    """theta - alpha * grad loss(theta), alpha per entry; differentiable in theta unless
    `first_order`, and in alpha always."""
    names = list(params)
    grads = torch.autograd.grad(loss_fn(dict(params)), [params[k] for k in names],
                                create_graph=not first_order, allow_unused=True)
    return {k: params[k] if g is None else params[k] - alpha[k] * g
            for k, g in zip(names, grads)}


def variance_weights(td_variance: np.ndarray, direction: Direction,
                     temperature: float = 1.0) -> np.ndarray:
    """Softmin or softmax of the tasks' TD-error variances, each level's scaled by its mean
    over tasks; `td_variance` is (tasks,) or (tasks, levels)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    var = np.asarray(td_variance, dtype=float)
    var = var[:, None] if var.ndim == 1 else var
    if var.ndim != 2 or len(var) == 0 or not np.all(np.isfinite(var)) or np.any(var < 0):
        raise ValueError(f"td_variance must be finite variances, one row per task, got {var!r}")
    mean = var.mean(axis=0)
    z = np.where(mean > 0, var / np.where(mean > 0, mean, 1.0), 0.0).mean(axis=1)
    logits = (z if direction == "softmax" else -z) / temperature
    e = np.exp(logits - logits.max())
    return e / e.sum()
