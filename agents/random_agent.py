"""Random: every policy with probability 1/K each round, learning nothing.

The paper's baseline for "how much does learning buy": in its Scenario C it already beats
BP-vRAN by ~9 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import Context, Decision, check_feedback, check_state, uniform_index


class RandomAgent:
    """Uniform choice over `n_actions` policies."""

    name = "random"

    def __init__(self, n_actions: int, *, seed: int) -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions must be at least 1, got {n_actions}")
        self.n_actions = n_actions
        self._rng = np.random.default_rng(seed)

    def select(self, context: Context | None = None) -> Decision:
        action = uniform_index(self._rng.random(), self.n_actions)
        return Decision(action=action, prob=1.0 / self.n_actions)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Nothing to learn, but bad feedback is still refused like any agent refuses it."""
        check_feedback(decision, reward, self.n_actions)

    def probabilities(self) -> np.ndarray:
        return np.full(self.n_actions, 1.0 / self.n_actions)

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "config": {"n_actions": self.n_actions},
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, {"n_actions": self.n_actions})
        self._rng.bit_generator.state = state["rng"]
