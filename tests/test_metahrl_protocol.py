"""The Meta-HRL comparison's protocol (`tools/metahrl/protocol.py`) and its schedulers that
need no learning (`agents/meta_hrl/fixed.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.meta_hrl.env import DuSlicingEnv, allocate_prbs
from agents.meta_hrl.fixed import (
    LoadProportional,
    ProportionalFair,
    SliceSplit,
    action_from_weights,
    run_scheduler,
    search_split,
    split_grid,
)
from agents.meta_hrl.training import AdaptConfig
from hil.base.slices import sample_profiles
from tools.metahrl.protocol import Baselines, Pools, bootstrap_interval, compute_baselines

SMALL = Pools(n_train=2, n_heldout=2, n_ues=6)


def small_du(seed: int = 3) -> DuSlicingEnv:
    return DuSlicingEnv(sample_profiles(1, 6, seed)[0])


def test_weights_become_prbs_in_proportion_at_full_power():
    env = small_du()
    action = action_from_weights(env, np.array([3.0, 1.0, 0.0]), np.ones(6))
    per_slice, per_user = allocate_prbs(action[:3], action[3:9], env.user_slice,
                                        env.total_units)
    assert per_slice.tolist() == [375, 125, 0]  # 500 PRB-TTIs, 3 : 1 : 0
    assert np.all(action[9:] == 1.0)  # full power
    equal = action_from_weights(env, np.zeros(3), np.zeros(6))
    assert allocate_prbs(equal[:3], equal[3:9], env.user_slice, 300)[0].tolist() == [100] * 3


def test_a_scheduler_is_scored_on_the_same_episode_whoever_runs_it():
    env = small_du()
    before = env.cell.queue_bits.copy()
    runs = [run_scheduler(SliceSplit(), env, steps=30, seed=7) for _ in range(2)]
    assert runs[0] == runs[1]
    assert np.array_equal(env.cell.queue_bits, before)  # the DU itself is left as it was
    assert run_scheduler(SliceSplit(), env, steps=30, seed=8) != runs[0]
    for rule in (LoadProportional(), ProportionalFair(), SliceSplit((0.6, 0.3, 0.1), "queue")):
        assert np.isfinite(run_scheduler(rule, env, steps=30, seed=7))


def test_the_searched_split_is_the_best_of_the_grid_so_never_below_the_equal_split():
    grid = split_grid(0.1)
    assert len(grid) == 66 and all(abs(sum(g) - 1) < 1e-9 for g in grid)
    env = small_du()
    best, reward = search_split([env], steps=20, seed=1, step=0.25)
    assert best.shares in split_grid(0.25)
    assert reward >= max(run_scheduler(SliceSplit(s), env, steps=20, seed=1)
                         for s in split_grid(0.25)) - 1e-12
    assert reward >= run_scheduler(SliceSplit(), env, steps=20, seed=1) - 0.01  # 1/3 is off-grid


def test_pools_are_fixed_and_the_heldout_dus_are_not_trained_on():
    assert [e.profile for e in SMALL.training()] == [e.profile for e in SMALL.training()]
    names = {e.profile.name for e in SMALL.training()}
    assert names.isdisjoint(e.profile.name for e in SMALL.heldout())


def test_a_score_is_0_at_the_equal_split_and_1_at_the_du_s_own_best_split():
    baselines = compute_baselines(SMALL, AdaptConfig(eval_steps=20))  # short episodes: any hold
    assert len(baselines.equal) == len(baselines.best) == SMALL.n_heldout
    assert all(b >= e - 1e-9 for b, e in zip(baselines.best, baselines.equal))
    assert baselines.scores(baselines.equal) == pytest.approx([0.0, 0.0])
    assert baselines.scores(baselines.best) == pytest.approx([1.0, 1.0])
    assert baselines.scores(baselines.fixed["equal split"]) == pytest.approx([0.0, 0.0])
    assert set(baselines.fixed) >= {"equal split", "load-proportional", "proportional fair"}
    flat = Baselines([0.5], [0.5], {})
    assert flat.score(0.7, 0) == 0.0  # no span: nothing to score against


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_pairs():
    rng = np.random.default_rng(0)
    few = bootstrap_interval(rng.normal(0.1, 0.2, 10))
    many = bootstrap_interval(rng.normal(0.1, 0.2, 1000))
    assert few[1] <= few[0] <= few[2] and many[1] <= many[0] <= many[2]
    assert many[2] - many[1] < few[2] - few[1]
    assert many[1] > 0  # 1000 pairs at +0.1 +- 0.2: the interval excludes zero
    assert bootstrap_interval(np.full(5, 0.3)) == pytest.approx((0.3, 0.3, 0.3))


def test_each_gate_passes_or_fails_on_what_it_measures():
    from tools.metahrl.experiments import JobResult, Setup
    from tools.metahrl.report import gates_table

    setup = Setup(n_dus=2, n_ues=6, iterations=1, shots=2, n_heldout=2)
    anchors = Baselines([0.5, 0.4], [0.7, 0.6], {})

    def job(method: str, curves: list[list[float]], moved: float = float("nan"),
            cosine: float = float("nan"), seed: int = 0) -> JobResult:
        return JobResult(method, seed, setup, [0.0], curves, 0.1, 1.0, moved, cosine)

    good = [job("meta-hrl", [[0.55, 0.6, 0.65], [0.45, 0.5, 0.55]], 0.1, 0.5, seed)
            for seed in (0, 1)]  # scores 0.25..0.75 on both DUs: above the equal split
    scratch = [job("scratch", [[0.5, 0.6, 0.62], [0.4, 0.5, 0.52]], seed=seed)
               for seed in (0, 1)]  # recovers 60 % of the way to the best split
    table = gates_table(good + scratch, setup, anchors)
    assert table.count("passed") == 4 and "FAILED" not in table

    lazy = [job("meta-hrl", [[0.45, 0.45, 0.45], [0.35, 0.35, 0.35]], 0.001, 0.999, seed)
            for seed in (0, 1)]  # below the equal split, an inner step that moves nothing
    stuck = [job("scratch", [[0.5, 0.5, 0.51], [0.4, 0.4, 0.41]], seed=seed) for seed in (0, 1)]
    table = gates_table(lazy + stuck, setup, anchors)
    assert table.count("**FAILED**") == 4


def test_learners_are_compared_on_the_seeds_both_ran_and_fixed_schedulers_on_every_du():
    from tools.metahrl.experiments import JobResult, Setup
    from tools.metahrl.report import comparison_table

    setup = Setup(n_dus=2, n_ues=6, iterations=1, shots=2, n_heldout=2)
    anchors = Baselines([0.5, 0.4], [0.7, 0.6], {"equal split": [0.5, 0.4]})

    def job(method: str, seed: int, last: float) -> JobResult:
        return JobResult(method, seed, setup, [0.0], [[0.5, 0.5, last], [0.4, 0.4, last - 0.1]],
                         0.1, 1.0)

    # Meta-HRL ran seeds 0 and 1, MTL only seed 0 (a sweep still running)
    jobs = [job("meta-hrl", 0, 0.6), job("meta-hrl", 1, 0.7), job("mtl", 0, 0.55)]
    table = comparison_table(jobs, setup, anchors)
    # seed 0: (0.6 - 0.55) / 0.2 = +0.25 on both DUs at the last shot (5 and 30 shots are the
    # last of 2 here); seed 1 has no MTL to pair with
    assert "| mtl | +0.000 [+0.000, +0.000] | +0.250 [+0.250, +0.250] | +0.250 [+0.250, +0.250]" \
        in table
    # against the equal split: seed 0 scores 0.5, seed 1 1.0 at the last shot, on both DUs
    assert "| equal split | +0.000 [+0.000, +0.000] | +0.750 [+0.500, +1.000] |" in table
