"""UCB1 and (epsilon-)Greedy: the paper's stochastic-bandit baselines (Sec. VI-D).

Both keep a count and a reward sum per policy and play a policy with the highest index;
they differ only in the index:

    UCB1 (Auer et al. 2002):  mean(x) + sqrt(2 ln t / n(x)),  t = rewards seen so far
    Greedy:                   mean(x); with probability epsilon a uniform policy instead

A policy never played has index +inf, so both first try every policy once. Ties are broken
uniformly at random (which also makes two seeds give two runs); `probabilities()` is exact:
uniform over the tied maximisers, mixed with epsilon / K for Greedy. Each round is O(K).

Greedy's default epsilon is 0, the paper's "Greed" that exploits the best policy found so
far; with K = 1080 it spends the first 1080 rounds trying each policy once and then sticks
to the best single sample, which is the straight regret line of the paper's Fig. 6.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agents.base import Context, Decision, check_bandit, check_feedback, check_state, uniform_index


class _MaxIndexAgent:
    """Counts, sums and a uniformly tie-broken argmax of `_index()`; subclasses add the index."""

    name = ""

    def __init__(self, n_actions: int, *, seed: int) -> None:
        check_bandit(n_actions)
        self.n_actions = n_actions
        self._rng = np.random.default_rng(seed)
        self._counts = np.zeros(n_actions, dtype=np.int64)
        self._sums = np.zeros(n_actions)

    def _index(self) -> np.ndarray:
        raise NotImplementedError

    def _means(self) -> np.ndarray:
        """Empirical mean reward per policy, +inf for a policy never played."""
        means = np.full(self.n_actions, math.inf)
        played = self._counts > 0
        means[played] = self._sums[played] / self._counts[played]
        return means

    def _maximisers(self) -> np.ndarray:
        index = self._index()
        return np.flatnonzero(index == index.max())

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        check_feedback(decision, reward, self.n_actions)
        self._counts[decision.action] += 1
        self._sums[decision.action] += reward

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "config": self._config(),
            "counts": self._counts.copy(),
            "sums": self._sums.copy(),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config())
        self._counts = np.asarray(state["counts"], dtype=np.int64).copy()
        self._sums = np.asarray(state["sums"], dtype=np.float64).copy()
        self._rng.bit_generator.state = state["rng"]

    def _config(self) -> dict[str, Any]:
        return {"n_actions": self.n_actions}


class UCB1(_MaxIndexAgent):
    """UCB1 over `n_actions` policies."""

    name = "ucb"

    def _index(self) -> np.ndarray:
        bonus = np.full(self.n_actions, math.inf)
        played = self._counts > 0
        if played.any():  # then t >= 1
            t = int(self._counts.sum())
            bonus[played] = np.sqrt(2.0 * math.log(t) / self._counts[played])
        return self._means() + bonus

    def select(self, context: Context | None = None) -> Decision:
        """A maximiser of the UCB1 index (ties uniformly). Context-free."""
        best = self._maximisers()
        action = int(best[uniform_index(self._rng.random(), len(best))])
        return Decision(action=action, prob=1.0 / len(best))

    def probabilities(self) -> np.ndarray:
        out = np.zeros(self.n_actions)
        best = self._maximisers()
        out[best] = 1.0 / len(best)
        return out


class Greedy(_MaxIndexAgent):
    """Epsilon-greedy on the empirical means; pure greedy with epsilon = 0."""

    name = "greedy"

    def __init__(self, n_actions: int, *, seed: int, epsilon: float = 0.0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        super().__init__(n_actions, seed=seed)
        self.epsilon = float(epsilon)

    def _index(self) -> np.ndarray:
        return self._means()

    def select(self, context: Context | None = None) -> Decision:
        """One uniform draw u: u < epsilon explores uniformly, else a tied best is taken.
        Context-free."""
        epsilon = self.epsilon
        u = self._rng.random()
        best = self._maximisers()
        if u < epsilon:
            action = uniform_index(u / epsilon, self.n_actions)
        else:
            action = int(best[uniform_index((u - epsilon) / (1.0 - epsilon), len(best))])
        return Decision(action=action, prob=float(self._probabilities_of(best)[action]))

    def probabilities(self) -> np.ndarray:
        return self._probabilities_of(self._maximisers())

    def _probabilities_of(self, best: np.ndarray) -> np.ndarray:
        """epsilon / K everywhere plus (1 - epsilon) shared by the maximisers `best`."""
        out = np.full(self.n_actions, self.epsilon / self.n_actions)
        out[best] += (1.0 - self.epsilon) / len(best)
        return out

    def _config(self) -> dict[str, Any]:
        return {"n_actions": self.n_actions, "epsilon": self.epsilon}
