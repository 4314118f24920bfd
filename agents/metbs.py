"""MetBS: the meta-learner of Kalntis et al. (Section V, Algorithm 2) over A child agents.

Each round, with meta-weights w over the children,

    y(j)  = eta / A + (1 - eta) w(j) / sum w            (10)  child i_t ~ y
    x_t   = the policy child i_t recommends                      (line 6)
    Phi   = f / y(i_t) for j = i_t, else 0              (11)
    w(j) <- w(j) exp(eta Phi(j) / A)                    (12)
    xi_t  ~ Bernoulli(rho_t),  rho_t = eta / (A y(i_t)) (13)

and child i_t learns from (x_t, f) only if xi_t = 1; otherwise its feedback is blocked.
The gate makes every child learn with the same probability eta / A per round whoever is
chosen (y(i) rho = eta / A), which is what keeps a child that the meta-learner rarely
picks from starving (Lemma 2). Children that are not chosen are neither asked nor taught.

As in BSvBS the weights are kept as log-weights and y is computed with the largest one
subtracted; with A children this is O(A) per round on top of the chosen child's own cost.

`Decision.info` says which child decided (`child`, `child_name`), with what probability
(`meta_prob`) and the child's own decision (`child_decision`), so that a harness can plot
selection shares; `Decision.prob` is the probability of the action under the mixture,
sum_j y(j) p_j(x), with each child's `probabilities()`. A contextual child (BP-vRAN)
answers for the last context it was asked about, so when it was not chosen this round its
term is for an older context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.base import Agent, Context, Decision, check_feedback, check_state


def eta_for_horizon(n_children: int, horizon: int) -> float:
    """Lemma 2 with beta = 1/2 (children with O(sqrt T) regret): eta = (A / T)^(1/3),
    capped at 1; the authors' notebook uses T^(-1/3) A^(1/3) too (0.034 for A = 2,
    T = 50k; the paper's evaluation uses 0.04)."""
    if n_children < 1 or horizon < 1:
        raise ValueError(f"need at least 1 child and 1 round, got {n_children}, {horizon}")
    return min(1.0, (n_children / horizon) ** (1.0 / 3.0))


class MetBS:
    """Exp3 over child agents with feedback blocking (Algorithm 2)."""

    name = "metbs"

    def __init__(self, children: Sequence[Agent], *, seed: int, eta: float) -> None:
        if not children:
            raise ValueError("MetBS needs at least one child agent")
        sizes = {child.n_actions for child in children}
        if len(sizes) != 1:
            raise ValueError(f"children must share one action space, got sizes {sorted(sizes)}")
        if not 0.0 < eta <= 1.0:
            raise ValueError(f"eta must be in (0, 1], got {eta!r}")
        self.children = list(children)
        self.n_actions = sizes.pop()
        self.eta = float(eta)
        self._floor = self.eta / len(self.children)  # eta / A, the floor of y in (10)
        self._rng = np.random.default_rng(seed)
        self._log_weights = np.zeros(len(self.children))  # w = 1 (Algorithm 2, line 2)

    def meta_probabilities(self) -> np.ndarray:
        """y over the children, eq. (10)."""
        weights = np.exp(self._log_weights - self._log_weights.max())
        return self._floor + (1.0 - self.eta) * weights / weights.sum()

    def select(self, context: Context | None = None) -> Decision:
        """Sample a child from y, let it recommend a policy (lines 4-6)."""
        meta = self.meta_probabilities()
        u = self._rng.random()
        index = min(int(np.searchsorted(np.cumsum(meta), u, side="right")),
                    len(self.children) - 1)
        child = self.children[index]
        child_decision = child.select(context)
        action = child_decision.action
        prob = sum(float(y) * float(c.probabilities()[action])
                   for y, c in zip(meta, self.children))
        info = {
            "child": index,
            "child_name": child.name,
            "meta_prob": float(meta[index]),
            "child_decision": child_decision,
        }
        return Decision(action=action, prob=prob, info=info)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Eqs. (11)-(12) for the chosen child, then the gate (13) decides if it learns."""
        check_feedback(decision, reward, self.n_actions)
        index, meta_prob = decision.info["child"], decision.info["meta_prob"]
        if not self._floor <= meta_prob <= 1.0:
            raise ValueError(
                f"meta_prob {meta_prob!r} is outside [eta/A, 1] = [{self._floor!r}, 1]; "
                "was the decision made by another agent?"
            )
        self._log_weights[index] += self._floor * reward / meta_prob
        gate_prob = self._floor / meta_prob
        if self._rng.random() < gate_prob:
            self.children[index].update(decision.info["child_decision"], reward, measured)

    def probabilities(self) -> np.ndarray:
        """The mixture sum_j y(j) p_j over actions."""
        meta = self.meta_probabilities()
        return sum(y * c.probabilities() for y, c in zip(meta, self.children))

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "config": self._config(),
            "log_weights": self._log_weights.copy(),
            "rng": self._rng.bit_generator.state,
            "children": [child.state_dict() for child in self.children],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config())
        log_weights = np.asarray(state["log_weights"], dtype=np.float64)
        if log_weights.shape != self._log_weights.shape or not np.all(np.isfinite(log_weights)):
            raise ValueError(f"state has log-weights of shape {log_weights.shape}, expected "
                             f"{self._log_weights.shape}")
        for child, child_state in zip(self.children, state["children"]):
            child.load_state_dict(child_state)
        self._log_weights = log_weights.copy()
        self._rng.bit_generator.state = state["rng"]

    def _config(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "eta": self.eta,
            "children": [child.name for child in self.children],
        }


def child_seeds(seed: int, n_children: int) -> list[int]:
    """Independent seeds for the children, derived from the meta-learner's seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_children)]


def resolve_eta(eta: float | None, n_children: int, horizon: int | None) -> float:
    """The given eta, or Lemma 2's for the horizon."""
    if eta is not None:
        return float(eta)
    if horizon is None:
        raise ValueError("MetBS needs eta, or a horizon to derive eta from (Lemma 2)")
    return eta_for_horizon(n_children, horizon)

