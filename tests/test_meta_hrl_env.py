"""The sliced DU model and the slicing environment the Meta-HRL scheduler learns on."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.meta_hrl.env import DuSlicingEnv, allocate_prbs, heldout_task, make_tasks
from hil.base import lte, model
from hil.base.slices import (
    DuProfile,
    SlicedCell,
    SliceProfile,
    StepKpis,
    default_calibration,
    sample_profiles,
    slice_qos,
)

CAL = default_calibration()


def quiet_du(demand_mbps: float = 50.0) -> DuProfile:
    """Two eMBB users with endless demand, one URLLC, one mMTC; CQI 15, no fading."""
    return DuProfile("quiet", (SliceProfile(2, demand_mbps, 0.0),
                               SliceProfile(1, 0.1, 0.0, delay_target_ms=10.0),
                               SliceProfile(1, 0.1, 0.0, min_rate_mbps=0.05)),
                     cqi_mean=15.0, cqi_spread=0.0, fading_sigma_db=0.0)


def test_the_environment_passes_gymnasiums_checker():
    env = make_tasks(1, 30, seed=0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*render.*")  # no render modes: by design
        check_env(env)


def test_seven_dus_of_30_and_thirty_dus_of_200_users_build_and_step():
    for n_dus, n_ues in ((7, 30), (30, 200)):
        envs = make_tasks(n_dus, n_ues, seed=1)
        assert len(envs) == n_dus and {e.profile.n_ues for e in envs} == {n_ues}
        obs, _ = envs[-1].reset(seed=0)
        obs, reward, _, _, info = envs[-1].step(envs[-1].action_space.sample())
        assert envs[-1].observation_space.contains(obs) and np.isfinite(reward)
        assert info["user_prb"].sum() == envs[-1].total_units


def test_the_task_distribution_is_heterogeneous_and_the_heldout_du_is_new():
    profiles = sample_profiles(7, 30, seed=0)
    assert len({p.slices[0].n_ues for p in profiles}) > 1
    assert len({round(p.cqi_mean, 3) for p in profiles}) == 7
    assert heldout_task(30, seed=1000).profile not in profiles
    assert all(min(s.n_ues for s in p.slices) >= 1 for p in sample_profiles(5, 3, seed=2))


def test_prb_allocation_sums_exactly_and_follows_the_scores():
    user_slice = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([0.9, -0.2, -0.2, 0.0, 1.0, 0.3])
    per_slice, per_user = allocate_prbs(np.array([1.0, 0.0, -0.5]), scores, user_slice, 500)
    assert per_slice.sum() == per_user.sum() == 500
    assert per_slice.tolist() == [286, 143, 71]  # shares 1 : 0.5 : 0.25
    assert per_user[0] > per_user[1] and abs(per_user[1] - per_user[2]) <= 1  # a remainder
    assert per_user[4] > per_user[3] and per_user[:3].sum() == 286
    _, equal = allocate_prbs(-np.ones(3), -np.ones(6), user_slice, 500)
    assert equal[:3].tolist() == [56, 56, 55] and equal[5] == 166  # 500 = 167 + 167 + 166


def test_prb_allocation_never_gives_a_higher_score_fewer_units():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.uniform(-1, 1, 7)
        total = int(rng.integers(1, 90))
        _, units = allocate_prbs(np.zeros(3), scores, np.zeros(7, dtype=int), total)
        order = np.argsort(scores)
        assert np.all(np.diff(units[order]) >= 0)


def test_delivered_bits_follow_the_tbs_table():
    cell = SlicedCell(quiet_du(), CAL, seed=0)
    kpis = cell.step(np.array([300, 100, 0, 0]), np.ones(4), n_tti=10)
    mcs = int(kpis.mcs[0])
    assert mcs == model.la_mcs(model.reported_cqi(lte.cqi_to_snr_db(15.0)), "dl") >= 27
    per_prb_tti = lte.tbs_bits(mcs, 50, "dl") / 50  # 36696 / 50 bits
    decoded = 1 - model.bler(np.array([mcs]), lte.cqi_to_snr_db(15.0), "dl", CAL.channel)[0]
    expected = np.array([300, 100]) * per_prb_tti * decoded
    np.testing.assert_allclose(kpis.delivered_bits[:2], expected)
    assert kpis.prb_tti_used[:2].tolist() == [300, 100]


def test_more_prbs_for_a_backlogged_user_deliver_more():
    few = SlicedCell(quiet_du(), CAL, seed=3).step(np.array([100, 100, 0, 0]), np.ones(4), 10)
    many = SlicedCell(quiet_du(), CAL, seed=3).step(np.array([300, 100, 0, 0]), np.ones(4), 10)
    assert many.delivered_bits[0] > 2.5 * few.delivered_bits[0]
    assert many.delivered_bits[1] == few.delivered_bits[1]


def test_power_rises_with_airtime_and_falls_with_the_power_fraction():
    def power(prb: int, frac: float) -> float:
        cell = SlicedCell(quiet_du(), CAL, seed=0)
        return cell.step(np.array([prb, 0, 0, 0]), np.full(4, frac), 10).power_w

    assert power(0, 1.0) < power(200, 1.0) < power(500, 1.0)
    assert power(500, 0.25) < power(500, 1.0)


def test_a_grant_beyond_the_cell_is_refused():
    cell = SlicedCell(quiet_du(), CAL, seed=0)
    with pytest.raises(ValueError, match="501 PRB-TTIs"):
        cell.step(np.array([501, 0, 0, 0]), np.ones(4), 10)


def test_slice_qos_by_hand():
    profile = quiet_du(demand_mbps=2.0)
    # 10 TTIs = 0.01 s: user 0 got 1 Mb/s of its 2, user 1 all 2; URLLC waits 20 ms for a
    # 10 ms target; mMTC offered 0.02 Mb/s, less than its 0.05 minimum, and got it all.
    kpis = StepKpis(arrived_bits=np.zeros(4), delivered_bits=np.array([1e4, 2e4, 0.0, 200.0]),
                    queue_bits=np.array([0.0, 0.0, 500.0, 0.0]),
                    delay_ms=np.array([0.0, 0.0, 20.0, 0.0]), cqi=np.zeros(4), mcs=np.zeros(4),
                    prb_tti_used=np.zeros(4), power_w=9.0, n_tti=10)
    np.testing.assert_allclose(slice_qos(kpis, profile), [0.75, 0.5, 1.0])
    starved = dataclasses.replace(kpis, delivered_bits=np.array([1e4, 2e4, 0.0, 100.0]),
                                  queue_bits=np.array([0.0, 0.0, 500.0, 100.0]))
    assert slice_qos(starved, profile)[2] == 0.0


def test_the_same_seed_gives_the_same_episode():
    def episode(seed: int) -> list[float]:
        env = make_tasks(1, 12, seed=4)[0]
        env.reset(seed=seed)
        action = np.zeros(env.action_space.shape, np.float32)
        return [env.step(action)[1] for _ in range(20)]

    assert episode(7) == episode(7) and episode(7) != episode(8)


def proportional(env: DuSlicingEnv) -> np.ndarray:
    """Slices by their demand, users by theirs, full power."""
    demand = env.cell.demand_mbps
    per_slice = np.bincount(env.user_slice, demand, minlength=3)
    users = demand / per_slice[env.user_slice] * np.bincount(env.user_slice)[env.user_slice]
    return np.concatenate([2 * per_slice / per_slice.max() - 1,
                           np.clip(users / users.max() * 2 - 1, -1, 1),
                           np.ones(env.profile.n_ues)]).astype(np.float32)


def test_allocating_by_demand_beats_giving_everything_to_mmtc():
    for env in make_tasks(4, 30, seed=0):
        mmtc_only = proportional(env)
        mmtc_only[:3] = [-1.0, -1.0, 1.0]
        rewards = {}
        for name, action in (("demand", proportional(env)), ("mmtc", mmtc_only)):
            env.reset(seed=1)
            rewards[name] = np.mean([env.step(action)[1] for _ in range(50)])
        assert rewards["demand"] > rewards["mmtc"] + 0.1


def test_live_reports_give_the_observation_of_the_same_measurements():
    from agents.base import UserReport

    env = make_tasks(1, 6, seed=0)[0]
    reports = [UserReport(70 + i, dl_demand_mbps=1.0, dl_rate_mbps=0.5, dl_backlog_bytes=1000,
                          dl_cqi=10.0, dl_mcs=15.0, dl_prb=4.0) for i in range(6)]
    obs, qos = env.observe_reports(reports)
    kpis = StepKpis(arrived_bits=np.full(6, 1e6), delivered_bits=np.full(6, 5e5),
                    queue_bits=np.full(6, 8000.0), delay_ms=np.full(6, 16.0),
                    cqi=np.full(6, 10.0), mcs=np.full(6, 15.0), prb_tti_used=np.full(6, 4000.0),
                    power_w=0.0, n_tti=1000)
    np.testing.assert_allclose(obs, env.observe(kpis))
    np.testing.assert_allclose(qos, slice_qos(kpis, env.profile))
    assert env.observation_space.contains(env.observe_reports([None] * 6)[0])
