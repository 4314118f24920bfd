"""The agent contract every registered agent keeps, Random's behaviour, and the registry."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from agents.base import Agent, Context, Decision
from agents.random_agent import RandomAgent
from agents.registry import AGENTS, BANDITS, agent_params, make_agent
from hil.base.errors import ConfigError

N_ACTIONS = 30


def build(name: str, seed: int = 1) -> Agent:
    return make_agent(name, N_ACTIONS, seed=seed, horizon=1000)


def play(agent: Agent, rewards: np.ndarray, rounds: int) -> list[tuple[int, float]]:
    """Run `rounds` rounds with a fixed reward per action; return (action, prob) per round."""
    trace = []
    for _ in range(rounds):
        decision = agent.select(Context(dl_cqi=15.0))
        agent.update(decision, float(rewards[decision.action]))
        trace.append((decision.action, decision.prob))
    return trace


REWARDS = np.random.default_rng(0).random(N_ACTIONS)


def test_context_and_decision_are_immutable():
    decision = Decision(action=3, prob=0.5)
    assert decision.info == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Context().dl_cqi = 3.0  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_every_agent_implements_the_protocol(name):
    agent = build(name)
    assert isinstance(agent, Agent)
    assert agent.name == name
    assert agent.n_actions == N_ACTIONS


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_decisions_are_valid_actions_with_the_probability_of_the_distribution(name):
    agent = build(name)
    for _ in range(50):
        decision = agent.select()
        probabilities = agent.probabilities()
        assert probabilities.shape == (N_ACTIONS,)
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-12)
        assert 0 <= decision.action < N_ACTIONS
        assert decision.prob == pytest.approx(probabilities[decision.action], rel=1e-12)
        agent.update(decision, float(REWARDS[decision.action]))


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_restored_state_gives_identical_next_100_decisions(name):
    agent = build(name, seed=1)
    play(agent, REWARDS, 200)
    restored = build(name, seed=2)  # another seed: everything must come from the state
    restored.load_state_dict(pickle.loads(pickle.dumps(agent.state_dict())))
    assert play(restored, REWARDS, 100) == play(agent, REWARDS, 100)


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_the_same_seed_gives_the_same_run_and_another_seed_another(name):
    assert play(build(name, seed=5), REWARDS, 50) == play(build(name, seed=5), REWARDS, 50)
    assert play(build(name, seed=5), REWARDS, 50) != play(build(name, seed=6), REWARDS, 50)


@pytest.mark.parametrize("name", sorted(BANDITS))
@pytest.mark.parametrize("reward", [-0.01, 1.01, float("nan"), float("inf")])
def test_update_refuses_rewards_outside_0_1(name, reward):
    agent = build(name)
    with pytest.raises(ValueError, match="reward"):
        agent.update(agent.select(), reward)


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_state_of_another_agent_is_refused(name):
    other = next(n for n in sorted(BANDITS) if n != name)
    with pytest.raises(ValueError, match="state was saved by agent"):
        build(name).load_state_dict(build(other).state_dict())


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_state_of_a_space_of_another_size_is_refused(name):
    state = make_agent(name, N_ACTIONS + 1, seed=1, horizon=1000).state_dict()
    with pytest.raises(ValueError, match="n_actions"):
        build(name).load_state_dict(state)


# --- Random ------------------------------------------------------------------------------


def test_random_picks_uniformly_and_does_not_learn():
    agent = RandomAgent(4, seed=3)
    counts = np.zeros(4)
    for _ in range(8000):
        decision = agent.select()
        assert decision.prob == 0.25
        agent.update(decision, 1.0 if decision.action == 0 else 0.0)
        counts[decision.action] += 1
    np.testing.assert_array_equal(agent.probabilities(), [0.25] * 4)
    # binomial(8000, 1/4): sd ~ 39, so 5 sd is ~ 194
    assert np.all(np.abs(counts - 2000) < 194)


# --- registry ----------------------------------------------------------------------------


def test_registry_builds_agents_with_their_parameters():
    agent = make_agent("bsvbs", 1080, seed=0, horizon=None, gamma=0.25)
    assert agent.name == "bsvbs"
    assert agent.gamma == 0.25  # type: ignore[attr-defined]
    assert agent_params("bsvbs") == ("gamma", "renormalise_above")
    assert agent_params("random") == ()


def test_unknown_agent_is_a_config_error_listing_the_known_agents():
    with pytest.raises(ConfigError) as error:
        make_agent("exp4", 10, seed=0, horizon=100)
    assert error.value.key == "agent"
    assert "exp4" in str(error.value)
    for name in AGENTS:
        assert name in str(error.value)


def test_unknown_parameter_is_a_config_error_naming_it_and_the_known_ones():
    with pytest.raises(ConfigError) as error:
        make_agent("bsvbs", 10, seed=0, horizon=100, gama=0.2)
    assert error.value.key == "agent.gama"
    assert "gamma" in str(error.value)
    with pytest.raises(ConfigError, match="temperature"):
        make_agent("random", 10, seed=0, horizon=100, temperature=1.0)


def test_invalid_parameter_value_is_a_config_error():
    with pytest.raises(ConfigError, match="gamma"):
        make_agent("bsvbs", 10, seed=0, horizon=100, gamma=2.0)
    with pytest.raises(ConfigError, match="horizon"):
        make_agent("bsvbs", 10, seed=0, horizon=None)
