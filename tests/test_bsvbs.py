"""BSvBS (Exp3, Algorithm 1 of Kalntis et al.) and the sum tree it keeps its weights in."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from agents.base import Decision
from agents.bsvbs import BSvBS, exp3_regret_bound, gamma_for_horizon
from agents.sumtree import SumTree

# --- Lemma 1 -----------------------------------------------------------------------------


def test_gamma_for_the_paper_grid_and_horizon_is_the_papers_0_29():
    gamma = gamma_for_horizon(1080, 50_000)
    # sqrt(1080 ln 1080 / ((e - 1) 50000)) = sqrt(7543.50 / 85914.1) = 0.29632; the paper
    # reports it truncated to 0.29.
    assert gamma == pytest.approx(0.29632, abs=1e-5)


def test_gamma_is_capped_at_1_for_short_horizons():
    assert gamma_for_horizon(1080, 100) == 1.0


def test_regret_bound_is_eq_8():
    # 2 sqrt(e - 1) sqrt(50000 * 1080 * ln 1080) = 2 * 1.310832 * 19421.06
    assert exp3_regret_bound(1080, 50_000) == pytest.approx(50915.3, abs=0.1)


@pytest.mark.parametrize("n_actions, horizon", [(1, 100), (10, 0)])
def test_lemma_1_needs_two_actions_and_a_positive_horizon(n_actions, horizon):
    with pytest.raises(ValueError):
        gamma_for_horizon(n_actions, horizon)
    with pytest.raises(ValueError):
        exp3_regret_bound(n_actions, horizon)


# --- construction ------------------------------------------------------------------------


def test_gamma_comes_from_the_horizon_unless_given():
    assert BSvBS(1080, seed=0, horizon=50_000).gamma == gamma_for_horizon(1080, 50_000)
    assert BSvBS(1080, seed=0, horizon=50_000, gamma=0.1).gamma == 0.1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({}, "horizon"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": 0.2, "renormalise_above": 0.0}, "renormalise_above"),
        ({"gamma": 0.2, "renormalise_above": 1000.0}, "renormalise_above"),
    ],
)
def test_invalid_parameters_are_refused_by_name(kwargs, word):
    with pytest.raises(ValueError, match=word):
        BSvBS(10, seed=0, **kwargs)


def test_a_bandit_needs_two_actions():
    with pytest.raises(ValueError, match="at least 2"):
        BSvBS(1, seed=0, gamma=0.5)


# --- the algorithm, against eqs. (5)-(7) by hand -------------------------------------------


def test_probabilities_follow_eqs_5_to_7_computed_by_hand_for_three_policies():
    agent = BSvBS(3, seed=0, gamma=0.3)
    # Round 1: w = (1, 1, 1), so y = 0.3/3 + 0.7 * 1/3 = 1/3 each.
    assert agent.probabilities() == pytest.approx([1 / 3, 1 / 3, 1 / 3], rel=1e-12)

    # Policy 0 played with y = 1/3, reward 0.6: Phi = 0.6 / (1/3) = 1.8,
    # w0 = exp(0.3 * 1.8 / 3) = e^0.18.
    agent.update(Decision(action=0, prob=1 / 3), 0.6)
    w0 = math.exp(0.18)
    total = w0 + 2.0
    y_round2 = [0.1 + 0.7 * w0 / total, 0.1 + 0.7 / total, 0.1 + 0.7 / total]
    assert agent.probabilities() == pytest.approx(y_round2, rel=1e-12)
    assert y_round2 == pytest.approx([0.362119, 0.318940, 0.318940], abs=1e-6)

    # Policy 2 played with y = y_round2[2], reward 1: w2 = exp(0.3 * (1 / y2) / 3).
    agent.update(Decision(action=2, prob=y_round2[2]), 1.0)
    w2 = math.exp(0.1 / y_round2[2])
    total = w0 + 1.0 + w2
    y_round3 = [0.1 + 0.7 * w0 / total, 0.1 + 0.7 / total, 0.1 + 0.7 * w2 / total]
    assert agent.probabilities() == pytest.approx(y_round3, rel=1e-12)
    assert y_round3 == pytest.approx([0.335046, 0.296327, 0.368626], abs=1e-6)

    # A zero reward leaves the weights, hence y, unchanged (Phi = 0).
    agent.update(Decision(action=1, prob=y_round3[1]), 0.0)
    assert agent.probabilities() == pytest.approx(y_round3, rel=1e-12)

    # select() reports the probability of eq. (5) for the policy it picked.
    decision = agent.select()
    assert decision.prob == pytest.approx(y_round3[decision.action], rel=1e-12)


class DenseExp3:
    """Reference: eqs. (5)-(7) on a dense vector of log-weights, all O(K) numpy."""

    def __init__(self, n_actions: int, gamma: float) -> None:
        self.gamma = gamma
        self.log_w = np.zeros(n_actions)

    def probabilities(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max())
        return self.gamma / w.size + (1 - self.gamma) * w / w.sum()

    def update(self, action: int, reward: float) -> None:
        phi = np.zeros_like(self.log_w)
        phi[action] = reward / self.probabilities()[action]
        self.log_w += self.gamma * phi / self.log_w.size


@pytest.mark.parametrize(
    "n_actions, gamma, renormalise_above, renormalises",
    [(5, 0.2, 2.0, True), (37, 0.05, 0.5, True), (1080, 0.29, 600.0, False)],
    ids=["K5-renormalising", "K37-renormalising", "K1080"],
)
def test_sum_tree_agent_equals_a_dense_reference_over_2000_rounds(
    n_actions, gamma, renormalise_above, renormalises
):
    agent = BSvBS(n_actions, seed=7, gamma=gamma, renormalise_above=renormalise_above)
    reference = DenseExp3(n_actions, gamma)
    rewards = np.random.default_rng(8).random(2000)
    for reward in rewards:
        decision = agent.select()
        assert decision.prob == pytest.approx(reference.probabilities()[decision.action], rel=1e-9)
        agent.update(decision, float(reward))
        reference.update(decision.action, float(reward))
    np.testing.assert_allclose(agent.probabilities(), reference.probabilities(), rtol=1e-9)
    assert (agent.state_dict()["log_offset"] > 0.0) == renormalises


def test_select_samples_from_the_mixture_it_reports():
    agent = BSvBS(6, seed=3, gamma=0.2)
    for action, reward in [(1, 1.0), (1, 1.0), (4, 0.7), (1, 1.0), (5, 0.2)] * 4:
        agent.update(Decision(action=action, prob=agent.probabilities()[action]), reward)
    expected = agent.probabilities()
    n = 40_000
    counts = np.bincount([agent.select().action for _ in range(n)], minlength=6)
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) < 5 * sigma)


def test_gamma_1_is_pure_uniform_exploration():
    agent = BSvBS(4, seed=0, gamma=1.0)
    agent.update(Decision(action=2, prob=0.25), 1.0)
    assert agent.probabilities() == pytest.approx([0.25] * 4, rel=1e-12)


def test_learns_the_best_arm_of_a_stochastic_bandit_with_regret_well_under_the_bound():
    means = np.full(10, 0.3)
    means[3] = 0.8
    means[7] = 0.4
    horizon = 5000
    agent = BSvBS(10, seed=11, horizon=horizon)
    environment = np.random.default_rng(12)
    regret = 0.0
    for _ in range(horizon):
        decision = agent.select()
        agent.update(decision, float(environment.random() < means[decision.action]))
        regret += means.max() - means[decision.action]
    assert int(np.argmax(agent.probabilities())) == 3
    assert agent.probabilities()[3] > 0.9
    # Lemma 1 bounds the worst case (890 here); this easy bandit stays well below it and far
    # below picking uniformly at random, whose expected regret is (0.8 - 0.34) T = 2300.
    assert regret < 0.8 * exp3_regret_bound(10, horizon)
    assert regret < 0.3 * (means.max() - means.mean()) * horizon


# --- feedback validation -----------------------------------------------------------------


def test_update_refuses_a_probability_below_the_exploration_floor():
    agent = BSvBS(10, seed=0, gamma=0.5)  # floor gamma / K = 0.05
    with pytest.raises(ValueError, match="exploration floor"):
        agent.update(Decision(action=0, prob=0.01), 1.0)


def test_update_refuses_an_action_outside_the_space():
    agent = BSvBS(10, seed=0, gamma=0.5)
    with pytest.raises(ValueError, match="action"):
        agent.update(Decision(action=10, prob=0.5), 1.0)


# --- state -------------------------------------------------------------------------------


def test_state_survives_pickle_and_renormalisation_with_identical_future_decisions():
    agent = BSvBS(10, seed=1, gamma=0.3, renormalise_above=1.0)
    rewards = np.random.default_rng(2).random(10)
    for _ in range(300):
        decision = agent.select()
        agent.update(decision, float(rewards[decision.action]))
    state = pickle.loads(pickle.dumps(agent.state_dict()))
    assert state["log_offset"] > 0.0  # renormalisations did happen

    restored = BSvBS(10, seed=999, gamma=0.3, renormalise_above=1.0)
    restored.load_state_dict(state)
    for _ in range(300):
        a, b = agent.select(), restored.select()
        assert (a.action, a.prob) == (b.action, b.prob)
        agent.update(a, float(rewards[a.action]))
        restored.update(b, float(rewards[b.action]))
    np.testing.assert_array_equal(agent.probabilities(), restored.probabilities())


def test_state_from_an_agent_with_another_gamma_is_refused():
    state = BSvBS(10, seed=0, gamma=0.2).state_dict()
    with pytest.raises(ValueError, match="gamma"):
        BSvBS(10, seed=0, gamma=0.3).load_state_dict(state)


# --- the sum tree ------------------------------------------------------------------------


def test_sum_tree_find_agrees_with_a_cumulative_sum_search():
    values = np.random.default_rng(4).random(13) * (np.arange(13) % 4 != 0)  # some zeros
    tree = SumTree(values)
    assert tree.total == pytest.approx(values.sum(), rel=1e-12)
    cumulative = np.cumsum(values)
    for mass in np.random.default_rng(5).random(500) * values.sum():
        assert tree.find(float(mass)) == int(np.searchsorted(cumulative, mass, side="right"))


def test_sum_tree_never_returns_a_zero_leaf_even_when_the_mass_overshoots():
    values = np.array([0.0, 2.0, 0.0, 1.0, 0.0])  # capacity 8: leaves 5..7 are padding
    tree = SumTree(values)
    for mass in [0.0, 1.9999, 2.0, 2.9999, 3.0, 3.5, 1e9]:
        assert values[tree.find(mass)] > 0.0


def test_sum_tree_set_updates_the_leaf_and_the_total():
    tree = SumTree(np.ones(6))
    tree.set(4, 10.0)
    assert tree[4] == 10.0
    assert tree.total == 15.0
    np.testing.assert_array_equal(tree.values(), [1, 1, 1, 1, 10, 1])
    assert tree.find(3.9) == 3
    assert tree.find(4.0) == 4
    assert tree.find(13.9) == 4
    assert tree.find(14.0) == 5


def test_sum_tree_with_one_leaf():
    tree = SumTree(np.array([3.0]))
    tree.set(0, 5.0)
    assert (tree.total, tree.find(4.9)) == (5.0, 0)


@pytest.mark.parametrize("values", [np.array([]), np.array([1.0, -1.0]), np.array([np.inf])])
def test_sum_tree_refuses_empty_negative_or_infinite_leaves(values):
    with pytest.raises(ValueError):
        SumTree(values)
