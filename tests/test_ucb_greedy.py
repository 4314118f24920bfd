"""UCB1 and (epsilon-)Greedy: indices and probabilities by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.base import Decision
from agents.ucb_greedy import UCB1, Greedy


def teach(agent, plays: list[tuple[int, float]]) -> None:
    for action, reward in plays:
        agent.update(Decision(action=action, prob=1.0), reward)


def test_ucb1_tries_every_policy_once_in_a_seeded_random_order():
    orders = []
    for seed in (0, 1):
        agent = UCB1(6, seed=seed)
        order = []
        for _ in range(6):
            decision = agent.select()
            assert decision.prob == pytest.approx(1 / (6 - len(order)))
            agent.update(decision, 0.5)
            order.append(decision.action)
        assert sorted(order) == list(range(6))
        orders.append(order)
    assert orders[0] != orders[1]


def test_ucb1_index_by_hand():
    agent = UCB1(3, seed=0)
    teach(agent, [(0, 1.0), (1, 0.0), (2, 0.5), (0, 0.0)])
    # t = 4, counts (2, 1, 1), means (0.5, 0, 0.5):
    # index = (0.5 + sqrt(2 ln 4 / 2), 0 + sqrt(2 ln 4), 0.5 + sqrt(2 ln 4))
    index = [0.5 + math.sqrt(math.log(4)), math.sqrt(2 * math.log(4)),
             0.5 + math.sqrt(2 * math.log(4))]
    assert index == pytest.approx([1.67741, 1.66511, 2.16511], abs=1e-5)
    assert agent.probabilities().tolist() == [0.0, 0.0, 1.0]
    assert agent.select() == Decision(action=2, prob=1.0)
    # Two good rewards for policy 1, t = 6: its 2/3 + sqrt(2 ln 6 / 3) = 1.7250 is still
    # below policy 2's 0.5 + sqrt(2 ln 6) = 2.3930.
    teach(agent, [(1, 1.0), (1, 1.0)])
    assert np.argmax(agent.probabilities()) == 2
    teach(agent, [(2, 0.0), (2, 0.0), (2, 0.0)])
    # t = 9: means (0.5, 2/3, 0.125), counts (2, 3, 4):
    # (0.5 + sqrt(ln 9), 2/3 + sqrt(2 ln 9 / 3), 0.125 + sqrt(2 ln 9 / 4)) = (1.982, 1.905, 1.173)
    assert np.argmax(agent.probabilities()) == 0


def test_ucb1_ties_are_shared_uniformly():
    agent = UCB1(4, seed=0)
    teach(agent, [(0, 0.3), (1, 0.7), (2, 0.7), (3, 0.1)])
    np.testing.assert_array_equal(agent.probabilities(), [0, 0.5, 0.5, 0])
    picks = {agent.select().action for _ in range(40)}
    assert picks == {1, 2}


def test_pure_greedy_exploits_the_best_mean_so_far_and_can_get_stuck():
    agent = Greedy(3, seed=0)
    assert agent.epsilon == 0.0
    teach(agent, [(0, 0.4), (1, 0.0), (2, 0.2)])  # one unlucky sample of policy 1
    np.testing.assert_array_equal(agent.probabilities(), [1, 0, 0])
    for _ in range(20):
        decision = agent.select()
        assert decision == Decision(action=0, prob=1.0)
        agent.update(decision, 0.4)
    assert agent.probabilities()[1] == 0.0  # never looks at policy 1 again


def test_epsilon_greedy_probabilities_and_sampling_agree():
    agent = Greedy(5, seed=3, epsilon=0.2)
    teach(agent, [(0, 0.1), (1, 0.9), (2, 0.9), (3, 0.5), (4, 0.2)])
    expected = np.array([0.04, 0.44, 0.44, 0.04, 0.04])
    np.testing.assert_allclose(agent.probabilities(), expected, rtol=1e-12)
    n = 20_000
    decisions = [agent.select() for _ in range(n)]
    for decision in decisions[:50]:
        assert decision.prob == pytest.approx(expected[decision.action], rel=1e-12)
    counts = np.bincount([d.action for d in decisions], minlength=5)
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) < 5 * sigma)


def test_greedy_refuses_an_epsilon_outside_0_1():
    with pytest.raises(ValueError, match="epsilon"):
        Greedy(3, seed=0, epsilon=1.5)
