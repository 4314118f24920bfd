"""Tsallis-INF (alpha = 1/2) and Exp3-IX: distributions and loss estimates by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.base import Decision
from agents.exp3ix import Exp3IX, exp3ix_rates
from agents.tsallis_inf import TsallisInf, tsallis_weights


def bisect(f, low: float, high: float) -> float:
    """Root of an increasing f on [low, high], to machine precision."""
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) < 0 else (low, mid)
    return (low + high) / 2


# --- Tsallis-INF -------------------------------------------------------------------------


def test_tsallis_weights_for_two_policies_match_the_closed_form():
    """K = 2, L = (0, 1), eta = 1: p_i = 4 / (L_i - nu)^2 with a = -nu solving
    4 / a^2 + 4 / (1 + a)^2 = 1."""
    a = bisect(lambda a: 1 - 4 / a**2 - 4 / (1 + a) ** 2, 2.0, 10.0)
    assert a == pytest.approx(2.4533, abs=1e-4)  # p = (0.6646, 0.3354)
    p = tsallis_weights(np.array([0.0, 1.0]), eta=1.0)
    np.testing.assert_allclose(p, [4 / a**2, 4 / (1 + a) ** 2], rtol=1e-10)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)


def test_tsallis_weights_are_uniform_for_equal_losses():
    np.testing.assert_allclose(tsallis_weights(np.full(4, 3.0), eta=0.7), [0.25] * 4,
                               rtol=1e-12)


@pytest.mark.parametrize("eta", [0.05, 0.5, 2.0])
def test_tsallis_weights_satisfy_the_mirror_descent_optimality_condition(eta):
    """p minimises <p, L> - sum 4 sqrt(p) / eta on the simplex iff
    L_i - 2 / (eta sqrt(p_i)) is the same for all i (the normaliser nu)."""
    losses = np.random.default_rng(0).random(50) * 40
    p = tsallis_weights(losses, eta)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    nu = losses - 2 / (eta * np.sqrt(p))
    np.testing.assert_allclose(nu, nu.mean(), atol=1e-8 * (1 + abs(nu.mean())))


def test_tsallis_learning_rate_and_loss_estimates_by_hand():
    agent = TsallisInf(3, seed=0)
    assert agent.learning_rate() == 2.0  # t = 1
    agent.update(Decision(action=1, prob=0.25), 0.4)  # loss 0.6 / 0.25
    agent.update(Decision(action=1, prob=0.5), 1.0)  # loss 0
    agent.update(Decision(action=2, prob=0.2), 0.0)  # loss 1 / 0.2
    assert agent.learning_rate() == 1.0  # t = 4
    np.testing.assert_allclose(agent.state_dict()["losses"], [0.0, 2.4, 5.0])
    np.testing.assert_allclose(agent.probabilities(),
                               tsallis_weights(np.array([0.0, 2.4, 5.0]), 1.0), rtol=1e-15)


# --- Exp3-IX -----------------------------------------------------------------------------


def test_exp3ix_rates_from_the_horizon():
    eta, gamma = exp3ix_rates(1080, 50_000)
    assert eta == pytest.approx(math.sqrt(2 * math.log(1080) / (1080 * 50_000)))
    assert gamma == eta / 2
    agent = Exp3IX(1080, seed=0, horizon=50_000)
    assert (agent.eta, agent.gamma) == (eta, gamma)


def test_exp3ix_loss_estimates_and_distribution_by_hand():
    agent = Exp3IX(3, seed=0, eta=0.5, gamma=0.1)
    np.testing.assert_allclose(agent.probabilities(), [1 / 3] * 3, rtol=1e-15)
    # policy 1, reward 0.25 (loss 0.75), played with 1/3: l^ = 0.75 / (1/3 + 0.1)
    agent.update(Decision(action=1, prob=1 / 3), 0.25)
    estimate = 0.75 / (1 / 3 + 0.1)
    assert estimate == pytest.approx(1.730769, abs=1e-6)
    w = np.array([1.0, math.exp(-0.5 * estimate), 1.0])
    np.testing.assert_allclose(agent.probabilities(), w / w.sum(), rtol=1e-12)
    assert agent.probabilities()[1] == pytest.approx(0.173857, abs=1e-6)
    # a full reward costs nothing
    before = agent.probabilities()
    agent.update(Decision(action=0, prob=before[0]), 1.0)
    np.testing.assert_array_equal(agent.probabilities(), before)


def test_exp3ix_needs_a_horizon_or_its_rates():
    with pytest.raises(ValueError, match="horizon"):
        Exp3IX(3, seed=0)
    with pytest.raises(ValueError, match="eta"):
        Exp3IX(3, seed=0, eta=0.0, gamma=0.1)


@pytest.mark.parametrize("make", [lambda: TsallisInf(7, seed=2),
                                  lambda: Exp3IX(7, seed=2, horizon=1000)],
                         ids=["tsallis_inf", "exp3ix"])
def test_select_samples_from_the_distribution_it_reports(make):
    agent = make()
    for action, reward in [(1, 0.0), (4, 0.2), (1, 0.1), (6, 0.0)]:
        agent.update(Decision(action=action, prob=agent.probabilities()[action]), reward)
    expected = agent.probabilities()
    n = 8_000
    counts = np.bincount([agent.select().action for _ in range(n)], minlength=7)
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) < 5 * sigma + 1)
