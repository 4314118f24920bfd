"""MetBS (Algorithm 2) against hand computation, its registry entry, and every learner's
regret on a small Bernoulli bandit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agents.base import Agent, Context, Decision
from agents.bsvbs import BSvBS
from agents.metbs import MetBS, eta_for_horizon
from agents.random_agent import RandomAgent
from agents.registry import make_agent
from agents.ucb_greedy import UCB1
from hil.base.errors import ConfigError


def same(a: Any, b: Any) -> bool:
    """Deep equality of state dicts holding numpy arrays."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def learning_state(agent: Agent) -> dict[str, Any]:
    """What an agent has learned: its state without the RNG (asking it to decide moves
    its RNG, learning is what the gate controls)."""
    return {k: v for k, v in agent.state_dict().items() if k != "rng"}


def two_children() -> list[Agent]:
    return [BSvBS(3, seed=1, gamma=0.5), UCB1(3, seed=2)]


# --- Algorithm 2 by hand -----------------------------------------------------------------


def test_first_round_by_hand_eta_0_5_two_children():
    meta = MetBS(two_children(), seed=0, eta=0.5)
    # y = eta / A + (1 - eta) w / sum w = 0.25 + 0.5 * 1/2
    assert meta.meta_probabilities() == pytest.approx([0.5, 0.5], rel=1e-15)
    draws = np.random.default_rng(0).random(2)  # the meta-learner's own draws, in order
    decision = meta.select()
    chosen = 0 if draws[0] < 0.5 else 1
    assert decision.info["child"] == chosen
    assert decision.info["child_name"] == ("bsvbs", "ucb")[chosen]
    assert decision.info["meta_prob"] == 0.5
    meta.update(decision, 0.8)
    # Phi = 0.8 / 0.5 = 1.6, w_chosen = exp(0.5 * 1.6 / 2) = e^0.4
    w = math.exp(0.4)
    y_chosen = 0.25 + 0.5 * w / (w + 1.0)
    assert y_chosen == pytest.approx(0.549344, abs=1e-6)
    expected = [y_chosen, 1.0 - y_chosen] if chosen == 0 else [1.0 - y_chosen, y_chosen]
    assert meta.meta_probabilities() == pytest.approx(expected, rel=1e-12)
    # The gate: rho = eta / (A y) = 0.25 / 0.5 = 0.5, drawn after the selection draw.
    learned = meta.children[chosen].state_dict()
    fresh = two_children()[chosen].state_dict()
    assert (draws[1] < 0.5) == (not same(
        {k: v for k, v in learned.items() if k != "rng"},
        {k: v for k, v in fresh.items() if k != "rng"},
    ))


def test_weights_gate_and_who_learns_follow_eqs_10_to_13_over_many_rounds():
    eta, children = 0.3, two_children()
    meta = MetBS(children, seed=4, eta=eta)
    draws = np.random.default_rng(4)
    log_w = np.zeros(2)
    outcomes = {"allowed": 0, "blocked": 0}
    rewards = [0.9, 0.2, 0.6]
    for _ in range(200):
        y = 0.15 + 0.7 * np.exp(log_w - log_w.max()) / np.exp(log_w - log_w.max()).sum()
        np.testing.assert_allclose(meta.meta_probabilities(), y, rtol=1e-12)
        chosen = int(draws.random() >= y[0])
        before = [c.state_dict() for c in children]
        decision = meta.select(Context(dl_cqi=7.0))
        assert decision.info["child"] == chosen
        reward = rewards[decision.action]
        meta.update(decision, reward)
        log_w[chosen] += eta / 2 * reward / y[chosen]
        allowed = draws.random() < eta / (2 * y[chosen])
        outcomes["allowed" if allowed else "blocked"] += 1
        other = 1 - chosen
        assert same(children[other].state_dict(), before[other])  # not asked, not taught
        learned = not same(learning_state(children[chosen]),
                           {k: v for k, v in before[chosen].items() if k != "rng"})
        assert learned == (allowed and (reward > 0 or chosen == 1))
    assert outcomes["allowed"] > 10 and outcomes["blocked"] > 100


def test_each_child_learns_with_probability_eta_over_a_per_round():
    children = [RandomAgent(4, seed=1), UCB1(4, seed=2)]
    meta = MetBS(children, seed=3, eta=0.4)
    for _ in range(4000):
        decision = meta.select()
        meta.update(decision, 1.0 if decision.action == 2 else 0.0)
    # UCB1 counts every reward it is taught: about eta / A * T = 800, whatever y did.
    taught = int(children[1].state_dict()["counts"].sum())
    assert abs(taught - 800) < 5 * math.sqrt(4000 * 0.2 * 0.8)


def test_decision_probability_is_the_mixture_of_the_children():
    children = two_children()
    meta = MetBS(children, seed=5, eta=0.5)
    for _ in range(30):
        decision = meta.select()
        mixture = sum(y * c.probabilities() for y, c in zip(meta.meta_probabilities(), children))
        np.testing.assert_allclose(meta.probabilities(), mixture, rtol=1e-12)
        assert decision.prob == pytest.approx(mixture[decision.action], rel=1e-12)
        meta.update(decision, 0.5)


def test_concentrates_on_the_better_child():
    children = [RandomAgent(5, seed=1), UCB1(5, seed=2)]
    meta = MetBS(children, seed=6, eta=0.1)
    means = np.array([0.2, 0.3, 0.9, 0.4, 0.1])
    environment = np.random.default_rng(7)
    chosen = []
    for _ in range(3000):
        decision = meta.select()
        meta.update(decision, float(environment.random() < means[decision.action]))
        chosen.append(decision.info["child"])
    assert np.mean(chosen[-1000:]) > 0.8
    assert meta.meta_probabilities()[1] > 0.8


def test_update_refuses_a_meta_probability_below_the_floor():
    meta = MetBS(two_children(), seed=0, eta=0.5)
    bad = Decision(action=0, prob=0.3, info={"child": 0, "meta_prob": 0.1,
                                              "child_decision": Decision(0, 0.3)})
    with pytest.raises(ValueError, match="meta_prob"):
        meta.update(bad, 0.5)


@pytest.mark.parametrize("kwargs, word", [({"eta": 0.0}, "eta"), ({"eta": 1.5}, "eta")])
def test_invalid_eta_is_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MetBS(two_children(), seed=0, **kwargs)


def test_children_must_share_the_action_space():
    with pytest.raises(ValueError, match="one action space"):
        MetBS([UCB1(3, seed=0), UCB1(4, seed=0)], seed=0, eta=0.5)


def test_eta_from_the_horizon_is_lemma_2s():
    assert eta_for_horizon(2, 50_000) == pytest.approx((2 / 50_000) ** (1 / 3))
    assert eta_for_horizon(2, 50_000) == pytest.approx(0.0342, abs=1e-4)
    assert eta_for_horizon(3, 2) == 1.0


# --- registry ----------------------------------------------------------------------------


def test_registry_builds_children_by_name_or_with_their_parameters():
    meta = make_agent("metbs", 12, seed=1, horizon=1000,
                      children=["bsvbs", {"name": "greedy", "epsilon": 0.2}], eta=0.05)
    assert [c.name for c in meta.children] == ["bsvbs", "greedy"]
    assert meta.children[1].epsilon == 0.2
    assert meta.eta == 0.05
    default = make_agent("metbs", 12, seed=1, horizon=1000)
    assert [c.name for c in default.children] == ["bsvbs", "bpvran"]
    assert default.eta == eta_for_horizon(2, 1000)


@pytest.mark.parametrize("children", [["bsvbs", "exp4"], ["metbs"], []])
def test_unknown_or_recursive_children_are_config_errors(children):
    with pytest.raises(ConfigError, match="children"):
        make_agent("metbs", 12, seed=1, horizon=1000, children=children)


def test_state_nests_the_childrens_and_refuses_other_children():
    meta = make_agent("metbs", 12, seed=1, horizon=1000, children=["bsvbs", "ucb"])
    state = meta.state_dict()
    assert [s["agent"] for s in state["children"]] == ["bsvbs", "ucb"]
    other = make_agent("metbs", 12, seed=1, horizon=1000, children=["bsvbs", "greedy"])
    with pytest.raises(ValueError, match="children"):
        other.load_state_dict(state)


# --- every learner on a Bernoulli bandit -------------------------------------------------

MEANS = np.array([0.3, 0.5, 0.2, 0.8, 0.4, 0.35, 0.6, 0.25])
LEARNERS = {
    "bsvbs": {}, "ucb": {}, "greedy": {"epsilon": 0.05}, "tsallis_inf": {}, "exp3ix": {},
    "bpvran": {"hyperparameters": {"length_scales": [0.05] * 5, "signal_var": 0.05,
                                   "noise_var": 0.2, "prior_mean": 0.5}, "max_points": 100},
    "metbs": {"children": ["ucb", "tsallis_inf"], "eta": 0.5},
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_regret_per_round_falls_as_the_horizon_grows(name):
    """Pseudo-regret R_T / T at T = 100 and T = 1000 of the same runs, over 3 seeds."""
    short, long = 100, 1000
    per_round = {short: [], long: []}
    for seed in range(3):
        agent = make_agent(name, len(MEANS), seed=seed, horizon=long, **LEARNERS[name])
        environment = np.random.default_rng(100 + seed)
        regret = np.empty(long)
        for t in range(long):
            decision = agent.select()
            agent.update(decision, float(environment.random() < MEANS[decision.action]))
            regret[t] = MEANS.max() - MEANS[decision.action]
        for horizon in per_round:
            per_round[horizon].append(regret[:horizon].mean())
    assert np.mean(per_round[long]) < 0.75 * np.mean(per_round[short])
