"""Exp3-IX (Neu 2015): Exp3 with implicit exploration, high-probability regret bounds.

    p_t(x)  = exp(-eta L(x)) / sum_x' exp(-eta L(x'))      L = cumulative loss estimates
    l^(x)   = l_t / (p_t(x_t) + gamma) if x = x_t, else 0    l_t = 1 - reward

The gamma in the denominator biases the estimate down a little and bounds it by 1/gamma,
which replaces Exp3's explicit uniform exploration. From the horizon T (Neu 2015, Thm 1):
eta = sqrt(2 ln K / (K T)), gamma = eta / 2.

`LossEstimateAgent` is the part Exp3-IX shares with Tsallis-INF: cumulative importance-
weighted loss estimates, sampling from a dense distribution over the K policies (O(K) per
round), and their state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agents.base import Context, Decision, check_bandit, check_feedback, check_state


class LossEstimateAgent:
    """A bandit that plays a distribution computed from cumulative loss estimates."""

    name = ""

    def __init__(self, n_actions: int, *, seed: int) -> None:
        check_bandit(n_actions)
        self.n_actions = n_actions
        self._rng = np.random.default_rng(seed)
        self._losses = np.zeros(n_actions)  # cumulative loss estimates L
        self._rounds = 0  # rewards learned from so far

    def probabilities(self) -> np.ndarray:
        raise NotImplementedError

    def _loss_estimate(self, loss: float, prob: float) -> float:
        """The estimate added to the played policy's L for loss `loss` played with `prob`."""
        raise NotImplementedError

    def select(self, context: Context | None = None) -> Decision:
        """Sample from `probabilities()` by inverting its cumulative sum. Context-free."""
        probs = self.probabilities()
        action = int(np.searchsorted(np.cumsum(probs), self._rng.random(), side="right"))
        action = min(action, self.n_actions - 1)
        return Decision(action=action, prob=float(probs[action]))

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Charge the played policy its loss estimate (loss = 1 - reward)."""
        check_feedback(decision, reward, self.n_actions)
        if not 0.0 < decision.prob <= 1.0:
            raise ValueError(f"decision.prob must be in (0, 1], got {decision.prob!r}")
        self._losses[decision.action] += self._loss_estimate(1.0 - reward, decision.prob)
        self._rounds += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "config": self._config(),
            "losses": self._losses.copy(),
            "rounds": self._rounds,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config())
        self._losses = np.asarray(state["losses"], dtype=np.float64).copy()
        self._rounds = int(state["rounds"])
        self._rng.bit_generator.state = state["rng"]

    def _config(self) -> dict[str, Any]:
        return {"n_actions": self.n_actions}


def exp3ix_rates(n_actions: int, horizon: int) -> tuple[float, float]:
    """Neu 2015, Theorem 1: eta = sqrt(2 ln K / (K T)) and gamma = eta / 2."""
    check_bandit(n_actions, horizon)
    eta = math.sqrt(2.0 * math.log(n_actions) / (n_actions * horizon))
    return eta, eta / 2.0


class Exp3IX(LossEstimateAgent):
    """Exp3-IX over `n_actions` policies; `eta` and `gamma` from the horizon unless given."""

    name = "exp3ix"

    def __init__(
        self,
        n_actions: int,
        *,
        seed: int,
        horizon: int | None = None,
        eta: float | None = None,
        gamma: float | None = None,
    ) -> None:
        super().__init__(n_actions, seed=seed)
        if eta is None or gamma is None:
            if horizon is None:
                raise ValueError("Exp3-IX needs eta and gamma, or a horizon to derive them from")
            eta_t, gamma_t = exp3ix_rates(n_actions, horizon)
            eta = eta_t if eta is None else eta
            gamma = gamma_t if gamma is None else gamma
        if not (eta > 0.0 and gamma >= 0.0):
            raise ValueError(f"need eta > 0 and gamma >= 0, got eta={eta!r}, gamma={gamma!r}")
        self.eta, self.gamma = float(eta), float(gamma)

    def probabilities(self) -> np.ndarray:
        weights = np.exp(-self.eta * (self._losses - self._losses.min()))
        return weights / weights.sum()

    def _loss_estimate(self, loss: float, prob: float) -> float:
        return loss / (prob + self.gamma)

    def _config(self) -> dict[str, Any]:
        return {"n_actions": self.n_actions, "eta": self.eta, "gamma": self.gamma}
