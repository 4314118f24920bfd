"""Meta-HRL learns: the two levels' bookkeeping, the task weights in training, and the
meta-model's head start on a DU it has never seen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.meta_hrl.env import heldout_task, make_tasks
from agents.meta_hrl.hrl import HrlLearner
from agents.meta_hrl.maml import variance_weights
from agents.meta_hrl.training import AdamStep, AdaptConfig, TrainConfig, Trainer, adapt

SMALL = dict(warmup_steps=50, first_order=True)
"""A CI-sized training: 3 DUs of 6 users."""


def test_the_high_level_decides_once_per_period_and_stores_one_transition_per_period():
    learner = HrlLearner(seed=0)
    (env,) = make_tasks(1, 6, seed=0)
    rollout = learner.rollout(env, seed=0)
    rng = np.random.default_rng(0)
    highs = []
    for _ in range(11):
        action = rollout.act(learner.params(), rollout._obs, rng)
        highs.append(action.high.copy())
        next_obs, reward, _, _, info = env.step(action.env_action)
        rollout.record(rollout._obs, action, reward, info["slice_reward"], next_obs)
        rollout._obs = next_obs
    period = learner.config.high_every
    assert all(np.array_equal(h, highs[0]) for h in highs[:period])
    assert not np.array_equal(highs[period], highs[0])  # a new (noisy) decision
    assert rollout.low_buffer.size == 11
    assert rollout.high_buffer.size == 2  # closed at steps 5 and 10


def test_each_iterations_task_weights_are_the_softmin_of_its_td_variances():
    trainer = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0), TrainConfig(**SMALL), seed=0)
    for _ in range(2):
        stats = trainer.step()
        np.testing.assert_allclose(stats.weights, variance_weights(stats.td_variance, "softmin"))
        assert stats.td_variance.shape == (3, 2)  # tasks x levels (high, low)
        z = (stats.td_variance / stats.td_variance.mean(axis=0)).mean(axis=1)
        assert stats.weights.argmax() == z.argmin()


def test_static_weights_stay_those_of_the_first_iteration_and_uniform_ones_are_equal():
    static = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0),
                     TrainConfig(weighting="static", **SMALL), seed=0)
    first = static.step()
    second = static.step()
    np.testing.assert_array_equal(second.weights, first.weights)
    assert not np.allclose(variance_weights(second.td_variance, "softmin"), first.weights)
    uniform = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0),
                      TrainConfig(weighting="uniform", **SMALL), seed=0)
    np.testing.assert_array_equal(uniform.step().weights, np.full(3, 1 / 3))


def test_a_meta_iteration_reports_how_far_its_inner_step_moves_and_how_weights_turn_it():
    meta = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0), TrainConfig(**SMALL), seed=0)
    stats = meta.step()
    assert 0 < stats.inner_action_change < 1  # actions live on [-1, 1]
    assert -1 <= stats.weighting_cosine <= 1
    bigger = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0),
                     TrainConfig(**{**SMALL, "inner_lr_actor": 100.0}), seed=0).step()
    assert bigger.inner_action_change > 10 * stats.inner_action_change
    uniform = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0),
                      TrainConfig(weighting="uniform", **SMALL), seed=0).step()
    assert uniform.weighting_cosine == pytest.approx(1.0, abs=1e-5)  # the same gradient twice
    joint = Trainer(HrlLearner(seed=0), make_tasks(3, 6, seed=0),
                    TrainConfig(method="joint", **SMALL), seed=0).step()
    assert np.isnan(joint.inner_action_change) and np.isnan(joint.weighting_cosine)


def test_more_updates_per_iteration_take_that_many_critic_steps_on_one_collection():
    """TD3: the critics step every update, the actors every `policy_delay`-th (updates 0 and
    2 of 3); Meta-SGD's step sizes follow their parameters."""
    trainer = Trainer(HrlLearner(seed=0), make_tasks(2, 6, seed=0),
                      TrainConfig(updates_per_iteration=3, policy_delay=2, **SMALL), seed=0)
    sizes = [r.low_buffer.size for r in trainer.rollouts]
    trainer.step()
    params = trainer.optimizer.param_groups
    state = trainer.optimizer.state
    steps = {id(p): int(state[p]["step"]) for group in params for p in group["params"]}
    named = dict(trainer.learner.nets.named_parameters())
    assert {steps[id(p)] for k, p in named.items() if "critic" in k} == {3}
    assert {steps[id(p)] for k, p in named.items() if "actor" in k} == {2}
    assert {steps[id(a)] for k, a in trainer.alpha.items() if "critic" in k} == {3}
    assert {steps[id(a)] for k, a in trainer.alpha.items() if "actor" in k} == {2}
    assert [r.low_buffer.size for r in trainer.rollouts] == [n + 10 for n in sizes]


def test_meta_sgd_learns_a_step_size_per_entry_and_joint_training_keeps_its_own():
    meta = Trainer(HrlLearner(seed=0), make_tasks(2, 6, seed=0), TrainConfig(**SMALL), seed=0)
    for _ in range(3):
        meta.step()
    alpha = meta.adaptation()
    assert alpha.keys() == meta.params.keys()
    values = torch.cat([a.flatten() for a in alpha.values()])
    critic = torch.cat([a.flatten() for k, a in alpha.items() if "critic" in k])
    assert values.min() >= 0 and critic.std() > 0  # each entry its own step
    fixed = Trainer(HrlLearner(seed=0), make_tasks(2, 6, seed=0),
                    TrainConfig(learn_inner_lr=False, **SMALL), seed=0)
    fixed.step()
    assert all(torch.all(a == (1.0 if "actor" in k else 0.01))
               for k, a in fixed.adaptation().items())
    joint = Trainer(HrlLearner(seed=0), make_tasks(2, 6, seed=0),
                    TrainConfig(method="joint", outer_lr=3e-4, **SMALL), seed=0)
    assert joint.adaptation() == AdamStep(3e-4, 0.1)


def test_a_meta_iteration_changes_every_network_of_both_levels():
    learner = HrlLearner(seed=0)
    before = {k: v.detach().clone() for k, v in learner.params().items()}
    Trainer(learner, make_tasks(2, 6, seed=0), TrainConfig(**SMALL), seed=0).step()
    for prefix in ("high_actor", "high_critic", "low_actor", "low_critic"):
        moved = [not torch.equal(v, before[k]) for k, v in learner.params().items()
                 if k.startswith(prefix)]
        assert any(moved), prefix


@pytest.mark.parametrize("seed", [1])
def test_the_meta_model_adapts_to_a_heldout_du_in_fewer_shots_than_a_network_from_scratch(seed):
    """The same network, meta-trained on 3 DUs or not at all, adapts to a fourth: the
    meta-model starts at a reward the untrained one does not reach within 10 shots."""
    meta = HrlLearner(seed=seed)
    trainer = Trainer(meta, make_tasks(3, 6, seed=seed), TrainConfig(**SMALL), seed=seed)
    for _ in range(80):
        trainer.step()
    scratch = HrlLearner(seed=seed)  # the same initial weights, never trained
    target, config = heldout_task(6, seed=500 + seed), AdaptConfig(eval_steps=60)
    meta_curve, _ = adapt(meta, meta.params(), target, 10, config, trainer.adaptation(),
                          seed=seed)
    scratch_curve, _ = adapt(scratch, scratch.params(), target, 10, config, AdamStep(),
                             seed=seed)

    def shots_to_reach(curve: list[float], level: float) -> int:
        return next((k for k, r in enumerate(curve) if r >= level), len(curve))

    level = max(scratch_curve) + 0.01
    assert shots_to_reach(meta_curve, level) < shots_to_reach(scratch_curve, level)


def test_a_meta_batch_draws_that_many_dus_per_update_while_every_du_collects():
    trainer = Trainer(HrlLearner(seed=0), make_tasks(4, 6, seed=0),
                      TrainConfig(tasks_per_update=2, **SMALL), seed=0)
    sizes = [r.low_buffer.size for r in trainer.rollouts]
    stats = trainer.step()
    assert len(stats.weights) == 2 and stats.td_variance.shape == (2, 2)
    assert [r.low_buffer.size for r in trainer.rollouts] == [n + 10 for n in sizes]
    with pytest.raises(ValueError, match="static task weights"):
        Trainer(HrlLearner(seed=0), make_tasks(4, 6, seed=0),
                TrainConfig(weighting="static", tasks_per_update=2, **SMALL), seed=0)
