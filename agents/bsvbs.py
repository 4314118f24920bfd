"""BSvBS: the Exp3 bandit of Kalntis et al. (Section IV, Algorithm 1), O(log K) per round.

Each round, with weights w over the K policies,

    y(x)   = gamma / K + (1 - gamma) w(x) / sum w          (5)  play x_t ~ y
    Phi(x) = f / y(x_t) if x = x_t, else 0                 (7)  f in [0, 1] the reward
    w(x)  <- w(x) exp(gamma Phi(x) / K)                    (6)  so only w(x_t) changes.

Only one weight changes per round, so the weights live in a sum tree (`agents.sumtree`)
and a round costs O(log K) instead of O(K); no dense probability vector is ever kept.
Sampling from y is a mixture: with probability gamma pick uniformly, otherwise sample
proportionally to w through the tree; the recorded probability is always the mixture y.

Weights grow without bound, so they are stored as log-weights (float64) and the tree holds
exp(log w - offset). Since y(x_t) >= gamma / K, one update adds at most gamma / K * K /
gamma = 1 to a log-weight. When one passes `offset + renormalise_above`, the offset moves
to the largest log-weight and the tree is rebuilt (O(K), at most once every
`renormalise_above` rounds and in practice almost never), so tree values stay below
e^(renormalise_above + 1) and their sum cannot overflow.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

from agents.base import (
    Context,
    Decision,
    check_bandit,
    check_feedback,
    check_state,
    uniform_index,
)
from agents.sumtree import SumTree

MAX_RENORMALISE_ABOVE = 600.0
"""Largest allowed headroom: K e^601 stays far below the float64 limit (~e^709) for any
K up to e^100."""


def gamma_for_horizon(n_actions: int, horizon: int) -> float:
    """Lemma 1: gamma = min(1, sqrt(K ln K / ((e - 1) T))), which makes the bound (8) hold."""
    check_bandit(n_actions, horizon)
    return min(1.0, math.sqrt(n_actions * math.log(n_actions) / ((math.e - 1.0) * horizon)))


def exp3_regret_bound(n_actions: int, horizon: int) -> float:
    """Lemma 1, eq. (8): expected regret after T rounds <= 2 sqrt(e - 1) sqrt(T K ln K)."""
    check_bandit(n_actions, horizon)
    return 2.0 * math.sqrt(math.e - 1.0) * math.sqrt(horizon * n_actions * math.log(n_actions))


class BSvBS:
    """Exp3 over `n_actions` policies (Algorithm 1 of the paper).

    Pass `gamma` directly or a `horizon` T to derive it from Lemma 1; a given gamma wins.
    `renormalise_above` only trades how often the O(K) rebuild happens; it does not change
    the algorithm.
    """

    name = "bsvbs"

    def __init__(
        self,
        n_actions: int,
        *,
        seed: int,
        horizon: int | None = None,
        gamma: float | None = None,
        renormalise_above: float = MAX_RENORMALISE_ABOVE,
    ) -> None:
        check_bandit(n_actions)
        if gamma is None:
            if horizon is None:
                raise ValueError("BSvBS needs gamma, or a horizon to derive gamma from (Lemma 1)")
            gamma = gamma_for_horizon(n_actions, horizon)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        if not 0.0 < renormalise_above <= MAX_RENORMALISE_ABOVE:
            raise ValueError(
                f"renormalise_above must be in (0, {MAX_RENORMALISE_ABOVE}], "
                f"got {renormalise_above!r}"
            )
        self.n_actions = n_actions
        self.gamma = float(gamma)
        self.renormalise_above = float(renormalise_above)
        self._explore_prob = self.gamma / n_actions  # the floor of y, eq. (5)
        self._rng = np.random.default_rng(seed)
        self._log_weights = array("d", bytes(8 * n_actions))  # w = 1 for all (Algorithm 1)
        self._log_offset = 0.0
        self._weights = SumTree(np.ones(n_actions))  # exp(log w - offset)

    def select(self, context: Context | None = None) -> Decision:
        """Sample x_t ~ y, eq. (5). Context-free: `context` is ignored.

        One uniform draw u serves both steps: u < gamma means explore, and then u / gamma is
        again uniform in [0, 1); otherwise (u - gamma) / (1 - gamma) is.
        """
        gamma = self.gamma
        u = self._rng.random()
        total = self._weights.total
        if u < gamma:
            action = uniform_index(u / gamma, self.n_actions)
        else:
            action = self._weights.find((u - gamma) / (1.0 - gamma) * total)
        prob = self._explore_prob + (1.0 - gamma) * self._weights[action] / total
        return Decision(action=action, prob=prob)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Apply eqs. (7) and (6) to the played policy, using the probability it was played with."""
        check_feedback(decision, reward, self.n_actions)
        if not self._explore_prob <= decision.prob <= 1.0:
            raise ValueError(
                f"decision.prob {decision.prob!r} is outside [gamma/K, 1] (gamma/K = "
                f"{self._explore_prob!r} is the exploration floor of this agent's y); "
                "was the decision made by another agent?"
            )
        action = decision.action
        # log of eq. (6) with Phi from eq. (7): log w += (gamma / K) * f / y(x_t)
        log_weight = self._log_weights[action] + self._explore_prob * reward / decision.prob
        self._log_weights[action] = log_weight
        if log_weight - self._log_offset > self.renormalise_above:
            self._renormalise()
        else:
            self._weights.set(action, math.exp(log_weight - self._log_offset))

    def probabilities(self) -> np.ndarray:
        """y over all K policies, eq. (5), computed exactly as `select` computes one entry."""
        weights = self._weights.values()
        return self._explore_prob + (1.0 - self.gamma) * weights / self._weights.total

    def state_dict(self) -> dict[str, Any]:
        """Log-weights, offset, the tree's leaves and the RNG state.

        The leaves are saved although they follow from the log-weights: recomputing them
        could differ in the last bit (numpy's and libm's exp), and the contract is that a
        restored agent repeats the same decisions exactly.
        """
        return {
            "agent": self.name,
            "config": self._config(),
            "log_weights": np.array(self._log_weights, dtype=np.float64),
            "log_offset": self._log_offset,
            "weights": self._weights.values(),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config())
        log_weights = np.asarray(state["log_weights"], dtype=np.float64)
        if log_weights.shape != (self.n_actions,):
            raise ValueError(
                f"state has {log_weights.shape} log-weights, expected ({self.n_actions},)"
            )
        self._weights.reset(state["weights"])
        self._log_weights = array("d", log_weights.tobytes())
        self._log_offset = float(state["log_offset"])
        self._rng.bit_generator.state = state["rng"]

    def _config(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "gamma": self.gamma,
            "renormalise_above": self.renormalise_above,
        }

    def _renormalise(self) -> None:
        """Move the offset to the largest log-weight and rebuild the tree: O(K), rare."""
        log_weights = np.frombuffer(self._log_weights, dtype=np.float64)
        self._log_offset = float(log_weights.max())
        self._weights.reset(np.exp(log_weights - self._log_offset))
