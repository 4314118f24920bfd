"""MAML across DUs, and the TD-error-variance task weights of Meta-HRL.

Each DU g is a task with loss L_g (both levels' DDPG losses on a batch of its replay).

    inner:  theta_g = theta - alpha grad L_g(theta; train batch)                    (11)
    outer:  theta  <- theta - beta grad sum_g w_g L_g(theta_g; validation batch)    (12, 13)

With `first_order` the inner gradient is a constant (FOMAML): the outer gradient is then
grad L_g evaluated at theta_g, without the second-order term through the inner step.

Task weights (eq. 15) come from the variance of each task's TD errors on its validation
batch, sigma_g^2. The summary says "Softmin" and also "higher variance gets more weight",
which contradict each other, so the direction is a parameter:

    softmin:  w_g = exp(-z_g / tau) / sum_h exp(-z_h / tau)
    softmax:  w_g = exp(+z_g / tau) / sum_h exp(+z_h / tau),    z_g = sigma_g^2 / mean_h sigma_h^2

(z makes the temperature independent of the reward scale). The ablations replace them by
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


def inner_update(loss_fn: Callable[[Params], torch.Tensor], params: Mapping[str, torch.Tensor],
                 alpha: float, *, first_order: bool) -> Params:
    """theta - alpha grad loss(theta); differentiable in theta unless `first_order`."""
    names = list(params)
    grads = torch.autograd.grad(loss_fn(dict(params)), [params[k] for k in names],
                                create_graph=not first_order, allow_unused=True)
    return {k: params[k] if g is None else params[k] - alpha * g for k, g in zip(names, grads)}


def variance_weights(td_variance: np.ndarray, direction: Direction,
                     temperature: float = 1.0) -> np.ndarray:
    """Softmin or softmax of the tasks' TD-error variances, scaled by their mean."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    var = np.asarray(td_variance, dtype=float)
    if var.ndim != 1 or len(var) == 0 or not np.all(np.isfinite(var)) or np.any(var < 0):
        raise ValueError(f"td_variance must be finite variances, one per task, got {var!r}")
    z = var / var.mean() if var.mean() > 0 else np.zeros_like(var)
    logits = (z if direction == "softmax" else -z) / temperature
    e = np.exp(logits - logits.max())
    return e / e.sum()
