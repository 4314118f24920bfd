"""BP-vRAN (contextual GP-UCB) and its incremental GP, against from-scratch linear algebra."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.base import Context, Decision
from agents.bpvran import UNKNOWN_CONTEXT, BPVran, policy_features, scale_context
from agents.gp import CachedPosterior, GpHyperparameters, IncrementalGp, fit_hyperparameters
from agents.policy_space import PAPER_SPACE, PolicySpace
from agents.registry import make_agent

HYPER = GpHyperparameters(length_scales=(0.4, 0.7, 1.3), signal_var=0.3, noise_var=0.02,
                          prior_mean=0.1)


def reference_kernel(a: np.ndarray, b: np.ndarray, hyper: GpHyperparameters) -> np.ndarray:
    """Matern 3/2 from explicit pairwise differences, independent of agents.gp."""
    diff = (a[:, None, :] - b[None, :, :]) / np.asarray(hyper.length_scales)
    r = np.sqrt((diff**2).sum(-1))
    return hyper.signal_var * (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)


def reference_posterior(x, y, xs, hyper, counts=None):
    """The textbook GP posterior with np.linalg.solve on the full Gram matrix; a point
    standing for `counts` observations has noise_var / counts."""
    counts = np.ones(len(x)) if counts is None else counts
    gram = reference_kernel(x, x, hyper) + np.diag(hyper.noise_var / counts)
    cross = reference_kernel(x, xs, hyper)
    mean = hyper.prior_mean + cross.T @ np.linalg.solve(gram, y - hyper.prior_mean)
    var = hyper.signal_var - np.einsum("ij,ij->j", cross, np.linalg.solve(gram, cross))
    return mean, var


def random_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)), rng.random(n)


# --- the incremental GP ------------------------------------------------------------------


def test_posterior_after_a_few_points_equals_the_exact_gp():
    x, y = random_data(7)
    gp = IncrementalGp(3, HYPER, capacity=10)
    for xi, yi in zip(x, y):
        gp.add(xi, float(yi))
    xs = np.random.default_rng(1).random((5, 3))
    mean, var = gp.posterior(xs)
    ref_mean, ref_var = reference_posterior(x, y, xs, HYPER)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-8, rtol=0)
    np.testing.assert_allclose(var, ref_var, atol=1e-8, rtol=0)


def test_incremental_cholesky_equals_the_full_factorisation():
    x, y = random_data(40, seed=2)
    gp = IncrementalGp(3, HYPER, capacity=40)
    for xi, yi in zip(x, y):
        gp.add(xi, float(yi))
    gram = reference_kernel(x, x, HYPER) + HYPER.noise_var * np.eye(40)
    np.testing.assert_allclose(gp.cholesky, np.linalg.cholesky(gram), atol=1e-10, rtol=0)


def test_compaction_merges_repeats_without_changing_the_posterior():
    x, y = random_data(5, seed=3)
    repeats = [0, 3, 0, 4, 4, 4, 1, 2, 0]  # 9 observations of 5 inputs
    gp = IncrementalGp(3, HYPER, capacity=9)
    for i in repeats:
        gp.add(x[i], float(y[i] + 0.1 * len(repeats)))
    xs = np.random.default_rng(4).random((4, 3))
    before = gp.posterior(xs)
    gp.compact(keep=5)
    assert gp.n == 5
    assert sorted(gp.counts.tolist()) == [1, 1, 1, 3, 3]
    after = gp.posterior(xs)
    np.testing.assert_allclose(after[0], before[0], atol=1e-10, rtol=0)
    np.testing.assert_allclose(after[1], before[1], atol=1e-10, rtol=0)


def test_compaction_keeps_the_most_recently_observed_inputs():
    x, y = random_data(6, seed=5)
    gp = IncrementalGp(3, HYPER, capacity=8)
    for i in [0, 1, 2, 3, 0, 4, 5, 1]:
        gp.add(x[i], float(y[i]))
    gp.compact(keep=3)
    # newest observations: 1 (position 7), 5 (6), 4 (5); kept oldest first
    np.testing.assert_array_equal(gp.inputs, x[[4, 5, 1]])
    assert gp.counts.tolist() == [1, 1, 2]
    xs = np.random.default_rng(6).random((3, 3))
    ref = reference_posterior(np.vstack([x[[4, 5, 1, 1]]]), y[[4, 5, 1, 1]], xs, HYPER)
    np.testing.assert_allclose(gp.posterior(xs)[0], ref[0], atol=1e-8, rtol=0)
    np.testing.assert_allclose(gp.posterior(xs)[1], ref[1], atol=1e-8, rtol=0)


def test_a_full_gp_refuses_another_point():
    gp = IncrementalGp(3, HYPER, capacity=1)
    gp.add(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="full"):
        gp.add(np.ones(3), 0.5)


def test_hyperparameter_fit_recovers_length_scales_of_synthetic_gp_data():
    truth = GpHyperparameters(length_scales=(0.15, 0.6), signal_var=1.0, noise_var=0.01,
                              prior_mean=0.0)
    rng = np.random.default_rng(5)
    x = rng.random((120, 2))
    gram = reference_kernel(x, x, truth) + truth.noise_var * np.eye(len(x))
    y = np.linalg.cholesky(gram) @ rng.standard_normal(len(x))
    fitted = fit_hyperparameters(x, y)
    assert fitted.length_scales[0] == pytest.approx(0.15, rel=0.3)
    assert fitted.length_scales[1] == pytest.approx(0.6, rel=0.4)
    assert fitted.noise_var == pytest.approx(0.01, rel=0.6)
    assert fitted.prior_mean == pytest.approx(float(y.mean()))


@pytest.mark.parametrize(
    "kwargs", [{"length_scales": ()}, {"length_scales": (0.0,)}, {"noise_var": 0.0},
               {"signal_var": -1.0}, {"prior_mean": math.nan}],
)
def test_invalid_hyperparameters_are_refused(kwargs):
    params = {"length_scales": (1.0,), "signal_var": 1.0, "noise_var": 0.1, "prior_mean": 0.0}
    with pytest.raises(ValueError):
        GpHyperparameters(**{**params, **kwargs})


# --- inputs ------------------------------------------------------------------------------


def test_context_is_scaled_and_unknown_fields_take_the_fixed_value():
    assert scale_context(None, 32.0).tolist() == [UNKNOWN_CONTEXT] * 4
    scaled = scale_context(Context(dl_cqi=15.0, ul_demand_mbps=64.0, dl_demand_mbps=8.0), 32.0)
    assert scaled.tolist() == [1.0, UNKNOWN_CONTEXT, 0.25, 1.0]  # demand clipped at the scale


def test_policy_features_are_the_varying_dimensions_of_the_space_scaled_to_0_1():
    features = policy_features(PAPER_SPACE.size, PAPER_SPACE)
    assert features.shape == (1080, 4)  # the paper's single DL gain carries no information
    assert features.min() == 0.0 and features.max() == 1.0
    policy = PAPER_SPACE.policy(777)
    expected = [policy.dl_max_mcs / 27, policy.dl_prb_ratio, policy.ul_max_mcs / 23,
                (policy.ul_prb_ratio - 0.01) / 0.99]
    np.testing.assert_allclose(features[777], expected, rtol=1e-12)


def test_without_a_policy_space_the_feature_is_the_scaled_index():
    np.testing.assert_allclose(policy_features(5, None)[:, 0], [0, 0.25, 0.5, 0.75, 1.0])
    assert BPVran(1080, seed=0).inputs(np.zeros(4), np.array([0])).shape == (1, 8)
    with pytest.raises(ValueError, match="1080 policies"):
        BPVran(10, seed=0, policy_space=PAPER_SPACE)


# --- the agent ---------------------------------------------------------------------------


def contexts(n: int, seed: int) -> list[Context]:
    rng = np.random.default_rng(seed)
    return [Context(dl_cqi=float(rng.uniform(1, 15)), ul_cqi=float(rng.uniform(1, 15)),
                    dl_demand_mbps=float(rng.uniform(0, 32)),
                    ul_demand_mbps=float(rng.uniform(0, 23))) for _ in range(n)]


def feed(agent: BPVran, n: int, seed: int) -> list[Decision]:
    """n rounds with contexts and rewards that depend on both context and action."""
    decisions = []
    for context in contexts(n, seed):
        decision = agent.select(context)
        reward = 0.5 + 0.4 * math.sin(decision.action / 7.0) * (context.dl_cqi / 15.0)
        agent.update(decision, reward)
        decisions.append(decision)
    return decisions


def decided_at(agent: BPVran, context: Context) -> np.ndarray:
    """Where BP-vRAN evaluates its posterior: the context rounded to its bin grid."""
    return np.array(agent.context_bin(scale_context(context, 32.0))) / agent.context_bins


def test_the_first_n_random_actions_are_uniform_then_ucb_decides():
    firsts = set()
    for seed in range(12):
        agent = BPVran(50, seed=seed, n_random=4)
        decisions = feed(agent, 5, seed=100)
        assert [d.prob for d in decisions] == [1 / 50] * 4 + [1.0]
        firsts.add(decisions[0].action)
    assert len(firsts) > 6  # twelve seeds, twelve uniform draws among 50


@pytest.mark.parametrize("space", [None, "small"])
def test_ucb_plays_the_argmax_of_mean_plus_2_5_sd_of_the_exact_posterior(space):
    policy_space = PolicySpace(dl_gain_db=(0.0,), dl_max_mcs=(0, 10, 20, 27),
                               dl_prb_ratio=(0.2, 1.0), ul_max_mcs=(5, 23),
                               ul_prb_ratio=(0.5, 1.0)) if space else None
    hyper = GpHyperparameters((0.6,) * (4 + (4 if space else 1)), 0.05, 0.01, 0.5)
    agent = BPVran(32, seed=1, policy_space=policy_space, hyperparameters=hyper)
    decisions = feed(agent, 60, seed=7)
    x = np.stack([agent.observation_input(np.array(d.info["context"]), d.action)
                  for d in decisions])
    y = np.array([0.5 + 0.4 * math.sin(d.action / 7.0) * d.info["context"][0]
                  for d in decisions])
    for context in contexts(5, seed=8):
        candidates = agent.inputs(decided_at(agent, context), np.arange(32))
        mean, var = reference_posterior(x, y, candidates, hyper)
        decision = agent.select(context)
        assert decision.action == int(np.argmax(mean + 2.5 * np.sqrt(var)))
        assert decision.prob == 1.0
        assert agent.probabilities()[decision.action] == 1.0


def test_ucb_stays_exact_over_a_compacted_budget():
    hyper = GpHyperparameters((0.3,) * 5, 0.05, 0.02, 0.5)
    agent = BPVran(12, seed=4, hyperparameters=hyper, max_points=16)
    rng = np.random.default_rng(9)
    for _ in range(80):  # 12 policies x 2 context bins > 16 points: merges and evictions
        decision = agent.select(Context(dl_cqi=float(rng.choice([2.0, 14.0]))))
        agent.update(decision, float(rng.random()))
    state = agent.state_dict()
    assert state["gp_counts"].max() > 1
    for context in contexts(25, seed=10):
        candidates = agent.inputs(decided_at(agent, context), np.arange(12))
        mean, var = reference_posterior(state["gp_inputs"], state["gp_targets"], candidates,
                                        hyper, counts=state["gp_counts"])
        assert agent.select(context).action == int(np.argmax(mean + 2.5 * np.sqrt(var)))


def test_the_data_budget_compacts_repeated_inputs_when_full():
    agent = BPVran(3, seed=2, max_points=10)
    for _ in range(10):
        decision = agent.select(Context(dl_cqi=15.0))
        agent.update(decision, 0.9 if decision.action == 1 else 0.1)
    assert agent.state_dict()["gp_counts"].tolist() == [1.0] * 10
    decision = agent.select(Context(dl_cqi=15.0))
    agent.update(decision, 0.5)
    state = agent.state_dict()
    # one context bin, 3 policies: at most 3 merged points holding the 10 observations,
    # then the new one
    assert state["gp_counts"][:-1].sum() == 10 and len(state["gp_counts"]) <= 4


def test_observations_are_stored_at_the_context_bin():
    agent = BPVran(4, seed=0, context_bins=15)
    stored = agent.observation_input(scale_context(Context(dl_cqi=7.4, ul_cqi=7.6), 32.0), 2)
    np.testing.assert_allclose(stored[:2], [7 / 15, 8 / 15])


def test_learns_which_policy_is_best_in_each_context():
    """Policy 3 is best when DL CQI is high, policy 12 when it is low; the context tells."""
    agent = BPVran(16, seed=3, n_random=3)
    rng = np.random.default_rng(9)
    late = []
    for t in range(150):
        good = rng.random() < 0.5
        context = Context(dl_cqi=14.0 if good else 2.0)
        decision = agent.select(context)
        best = 3 if good else 12
        agent.update(decision, 0.9 if decision.action == best else 0.3)
        if t >= 100:
            late.append(decision.action == best)
    assert np.mean(late) > 0.8


def test_prior_rounds_fit_the_hyperparameters():
    rng = np.random.default_rng(11)
    prior = {
        "contexts": np.column_stack([rng.uniform(1, 15, 60), np.full(60, np.nan),
                                     rng.uniform(0, 32, 60), np.full(60, np.nan)]),
        "actions": rng.integers(0, 8, 60),
        "rewards": rng.random(60),
    }
    agent = BPVran(8, seed=0, prior_rounds=prior)
    assert len(agent.hyper.length_scales) == 5
    assert agent.hyper.prior_mean == pytest.approx(prior["rewards"].mean())
    with pytest.raises(ValueError, match="not both"):
        BPVran(8, seed=0, prior_rounds=prior, hyperparameters=agent.hyper)


GOOD = Context(dl_cqi=15.0, ul_cqi=15.0, dl_demand_mbps=32.0, ul_demand_mbps=23.0)
POOR = Context(dl_cqi=1.5, ul_cqi=1.5, dl_demand_mbps=0.5, ul_demand_mbps=0.5)


@pytest.mark.parametrize(("agent_name", "stored"), [("bpvran", GOOD), ("bpvran_lagged", POOR)])
def test_an_observation_is_stored_at_the_round_s_own_context_lagged_at_the_decided_one(
        agent_name, stored):
    """The paper's BP-vRAN models a round's reward by the context that round had; it
    decided on the previous round's (here POOR, while the round turned out GOOD)."""
    agent = make_agent(agent_name, 8, seed=0, horizon=10, n_random=0)
    decision = agent.select(POOR)
    agent.update(decision, 0.9, GOOD)

    inputs = agent.state_dict()["gp_inputs"]
    expected = agent.observation_input(scale_context(stored, agent.demand_scale_mbps),
                                       decision.action)
    assert np.allclose(inputs[0], expected)
    assert agent.name == agent_name


def test_without_the_round_s_context_bpvran_falls_back_to_the_decided_one():
    agent = make_agent("bpvran", 8, seed=0, horizon=10, n_random=0)
    decision = agent.select(POOR)
    agent.update(decision, 0.9)
    expected = agent.observation_input(scale_context(POOR, agent.demand_scale_mbps),
                                       decision.action)
    assert np.allclose(agent.state_dict()["gp_inputs"][0], expected)


def test_a_cached_posterior_follows_the_gp_through_additions_and_a_compaction():
    """Asked after one point, after several at once and after a refactorisation, the
    cached posterior is the textbook one of all the data."""
    x, y = random_data(30, seed=4)
    x[20:] = x[:10]  # repeats, merged by the compaction
    gp = IncrementalGp(3, HYPER, capacity=30)
    xs = np.random.default_rng(5).random((6, 3))
    cached = CachedPosterior(gp, xs)
    for stop in (1, 2, 9, 30):
        while gp.n < stop:
            gp.add(x[gp.n], float(y[gp.n]))
        ref_mean, ref_var = reference_posterior(x[:stop], y[:stop], xs, HYPER)
        mean, var = cached.mean_and_variance()
        np.testing.assert_allclose(mean, ref_mean, atol=1e-8, rtol=0)
        np.testing.assert_allclose(var, ref_var, atol=1e-8, rtol=0)
    gp.compact(keep=30)
    gp.add(x[0], float(y[0]))
    ref_mean, ref_var = reference_posterior(np.vstack([x, x[:1]]), np.append(y, y[0]), xs, HYPER)
    mean, var = cached.mean_and_variance()
    np.testing.assert_allclose(mean, ref_mean, atol=1e-8, rtol=0)
    np.testing.assert_allclose(var, ref_var, atol=1e-8, rtol=0)
