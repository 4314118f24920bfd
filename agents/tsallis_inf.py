"""Tsallis-INF (Zimmert & Seldin, JMLR 2021) with alpha = 1/2: best of both worlds.

Online mirror descent with the 1/2-Tsallis entropy on importance-weighted loss estimates:

    p_t = argmin_{p in simplex} <p, L> - sum_x 4 sqrt(p(x)) / eta_t,   eta_t = 2 / sqrt(t)
    =>  p_t(x) = 4 / (eta_t (L(x) - nu))^2,  nu < min L the normaliser with sum p_t = 1

and l^(x_t) = (1 - reward) / p_t(x_t). The same algorithm, without knowing which world it
is in, has O(sqrt(K T)) regret against an adversary and O(sum_x ln T / gap(x)) in a
stochastic environment, which is why it is here beside BSvBS (adversarial) and UCB1
(stochastic). It needs no horizon.

nu has no closed form; sum_x p(x) is increasing and convex in nu on (-inf, min L), so
Newton's method started at nu_0 = min L - 2 / eta_t (where the smallest term alone is 1,
so the sum is >= 1) decreases monotonically to the root. Each iteration is O(K) and a
handful suffice; the result is renormalised so that it sums to 1 to the last bit.
"""

from __future__ import annotations

import math

import numpy as np

from agents.exp3ix import LossEstimateAgent

NEWTON_MAX_ITERATIONS = 100
NEWTON_TOLERANCE = 1e-13


def tsallis_weights(losses: np.ndarray, eta: float) -> np.ndarray:
    """p(x) = 4 / (eta (L(x) - nu))^2 with nu found by Newton so that sum p = 1."""
    nu = float(losses.min()) - 2.0 / eta
    for _ in range(NEWTON_MAX_ITERATIONS):
        weights = 4.0 / (eta * (losses - nu)) ** 2
        excess = float(weights.sum()) - 1.0
        if excess <= NEWTON_TOLERANCE:
            break
        # d/dnu of sum p = eta * sum p^(3/2)
        nu -= excess / (eta * float((weights * np.sqrt(weights)).sum()))
    return weights / weights.sum()


class TsallisInf(LossEstimateAgent):
    """Tsallis-INF (alpha = 1/2, importance-weighted estimates) over `n_actions` policies."""

    name = "tsallis_inf"

    def learning_rate(self) -> float:
        """eta_t = 2 / sqrt(t) for round t = 1, 2, ... (t - 1 rewards learned so far)."""
        return 2.0 / math.sqrt(self._rounds + 1)

    def probabilities(self) -> np.ndarray:
        return tsallis_weights(self._losses, self.learning_rate())

    def _loss_estimate(self, loss: float, prob: float) -> float:
        return loss / prob
