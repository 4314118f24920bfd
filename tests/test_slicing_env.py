"""The slicing environment's contract with the Meta-HRL learners: spaces and feature layout,
the reward and its parts, episode ends, the task distribution's loads, and the DU model's
edge cases (no power, full queues, starved URLLC users, refused inputs). The model's TBS
arithmetic, the PRB split's ordering, check_env, seeding and the demand heuristic are in
test_meta_hrl_env.py."""

from __future__ import annotations

import numpy as np
import pytest

from agents.meta_hrl.env import (
    N_SLICE_FEATURES,
    N_USER_FEATURES,
    DuSlicingEnv,
    allocate_prbs,
    make_tasks,
)
from hil.base import lte, model
from hil.base.slices import (
    MAX_DELAY_MS,
    DuProfile,
    SlicedCell,
    SliceProfile,
    capacity_mbps,
    default_calibration,
    sample_profiles,
    slice_qos,
)

CAL = default_calibration()


def small_du(embb_mbps: float = 1.0, urllc_mbps: float = 0.1) -> DuProfile:
    """One eMBB user, two URLLC users (10 ms target), one mMTC device; steady traffic,
    CQI 15, no fading."""
    return DuProfile("small", (SliceProfile(1, embb_mbps, 0.0),
                               SliceProfile(2, urllc_mbps, 0.0, delay_target_ms=10.0),
                               SliceProfile(1, 0.1, 0.0, min_rate_mbps=0.05)),
                     cqi_mean=15.0, cqi_spread=0.0, fading_sigma_db=0.0)


def test_spaces_and_the_feature_layout():
    env = make_tasks(1, 30, seed=0)[0]
    n = 30
    assert env.total_units == CAL.cell.nof_prb * env.step_tti == 500
    assert env.observation_space.shape == (3 * N_SLICE_FEATURES + n * N_USER_FEATURES,)
    assert env.action_space.shape == (3 + 2 * n,)
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
    assert N_SLICE_FEATURES == 7 and N_USER_FEATURES >= 9
    assert np.all(np.diff(env.user_slice) >= 0) and len(env.user_slice) == n

    first, _ = env.reset(seed=0)
    env.action_space.seed(0)
    obs, _, _, _, info = env.step(env.action_space.sample())
    slices, users = env.split_observation(np.stack([first, obs])[None])  # batch dims (1, 2)
    assert slices.shape == (1, 2, 3, N_SLICE_FEATURES)
    assert users.shape == (1, 2, n, N_USER_FEATURES)
    slices, users = slices[0, 1], users[0, 1]
    np.testing.assert_allclose(slices[:, 1], np.minimum(
        info["throughput_mbps"] / env.capacity_mbps, 1.0), rtol=1e-5)     # throughput
    np.testing.assert_allclose(slices[:, 2], info["slice_qos"], rtol=1e-5)  # QoS
    np.testing.assert_allclose(slices[:, 4], np.bincount(env.user_slice) / n)  # user share
    assert slices[:, 6].sum() <= 1.0 + 1e-6                                 # PRB share
    np.testing.assert_array_equal(users[:, 4:7], np.eye(3)[env.user_slice])  # slice one-hot
    assert np.all((users[:, 3] >= 0) & (users[:, 3] <= 1))  # CQI / 15 (0: power cut to nil)


def test_the_reward_is_weighted_qos_minus_the_power_above_idle_over_its_range():
    weight, slice_weights = 0.3, np.array([0.5, 0.3, 0.2])
    env = make_tasks(1, 30, seed=2, power_weight=weight, slice_weights=tuple(slice_weights))[0]
    idle_w = model.power_w(0.0, 0, 0.0, 0, 30.0, 0.0, CAL.power)
    max_w = model.power_w(1.0, lte.MAX_MCS, 0.0, 0, 30.0, 0.0, CAL.power)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        obs, reward, _, _, info = env.step(env.action_space.sample())
        power = (info["power_w"] - idle_w) / (max_w - idle_w)
        assert 0.0 <= power <= 1.0
        assert reward == pytest.approx(slice_weights @ info["slice_qos"] - weight * power)
        # each slice carries the power cost of its share of the PRB-TTIs used
        used = env.split_observation(obs)[0][:, 6]
        np.testing.assert_allclose(info["slice_qos"] - info["slice_reward"],
                                   weight * power * used / used.sum(), rtol=1e-5)
        assert info["prb_split"].sum() == info["user_prb"].sum() == env.total_units


def test_episodes_are_truncated_after_episode_steps_and_never_terminate():
    env = make_tasks(1, 6, seed=0, episode_steps=3)[0]
    action = np.zeros(env.action_space.shape, np.float32)
    for _ in range(2):
        env.reset(seed=0)
        ends = [env.step(action)[2:4] for _ in range(3)]
        assert ends == [(False, False), (False, False), (False, True)]


def test_without_power_control_every_user_transmits_at_full_power():
    profile = sample_profiles(1, 12, seed=3)[0]
    n = profile.n_ues
    scores = np.zeros(3 + 2 * n, np.float32)

    def run(power_control: bool, power_score: float) -> list[float]:
        env = DuSlicingEnv(profile, CAL, power_control=power_control)
        env.reset(seed=5)
        scores[3 + n:] = power_score
        return [env.step(scores)[4]["power_w"] for _ in range(5)]

    assert run(False, -1.0) == run(True, 1.0)
    assert max(run(True, -0.5)) < min(run(True, 1.0))


def test_loads_are_40_to_130_percent_of_what_each_du_carries():
    # per ms, error-free: at CQI 15 link adaptation picks MCS 27 (I_TBS 25: 31704 bits at
    # 50 PRB, TS 36.213 Table 7.1.7.2.1-1); the observation's scale is the top MCS (I_TBS
    # 26: 36696 bits)
    assert capacity_mbps(15.0, CAL) == pytest.approx(31.704)
    assert make_tasks(1, 6, seed=0)[0].capacity_mbps == pytest.approx(36.696)
    profiles = sample_profiles(30, 200, seed=5)
    assert profiles == sample_profiles(30, 200, seed=5) != sample_profiles(30, 200, seed=6)
    loads = []
    for p in profiles:
        assert p.n_ues == 200 and min(s.n_ues for s in p.slices) >= 1
        assert p.slices[1].delay_target_ms > 0 and p.slices[2].min_rate_mbps > 0
        loads.append(sum(s.n_ues * s.demand_mbps for s in p.slices) / capacity_mbps(
            p.cqi_mean, CAL))
    assert min(loads) >= 0.4 and max(loads) <= 1.3 and max(loads) - min(loads) > 0.5


def test_a_user_without_power_sends_nothing():
    cell = SlicedCell(small_du(), CAL, seed=0)
    kpis = cell.step(np.array([200, 200, 0, 0]), np.array([0.0, 1.0, 1.0, 1.0]), n_tti=10)
    assert kpis.delivered_bits[0] == 0 and kpis.prb_tti_used[0] == 0
    assert kpis.queue_bits[0] == kpis.arrived_bits[0] > 0
    assert kpis.delivered_bits[1] == kpis.arrived_bits[1] > 0  # served: its queue is empty


def test_queues_stop_at_the_calibrated_limit_and_delay_at_its_cap():
    cell = SlicedCell(small_du(embb_mbps=100.0), CAL, seed=0)
    for _ in range(20):  # 1e6 bits a step, nothing served
        kpis = cell.step(np.zeros(4), np.ones(4), n_tti=10)
    assert kpis.queue_bits[0] == CAL.cell.dl_queue_limit_bytes * 8
    assert kpis.delay_ms[0] == MAX_DELAY_MS


def test_a_starved_urllc_user_waits_and_the_slice_qos_decays():
    profile = small_du(urllc_mbps=5.0)
    kpis = SlicedCell(profile, CAL, seed=0).step(np.array([0, 200, 0, 0]), np.ones(4), 10)
    assert kpis.delay_ms[1] == 0.0 and kpis.delay_ms[2] == MAX_DELAY_MS
    # one user within its 10 ms target (1), one at 1000 ms (10 / 1000)
    assert slice_qos(kpis, profile)[1] == pytest.approx((1.0 + 0.01) / 2)


def test_the_cell_refuses_what_it_cannot_do_and_names_it():
    cell = SlicedCell(small_du(), CAL, seed=0)
    ones = np.ones(4)
    for prb, frac, n_tti, message in (
            (np.array([400, 101, 0, 0]), ones, 10, "prb_tti: 501 PRB-TTIs granted, 1 more than"),
            (np.array([-1, 0, 0, 0]), ones, 10, "prb_tti must be >= 0"),
            (np.zeros(4), np.full(4, 1.5), 10, "power_frac must be in"),
            (np.zeros(4), ones, 0, "n_tti must be >= 1"),
            (np.zeros(3), ones, 10, "one value per user")):
        with pytest.raises(ValueError, match=message):
            cell.step(prb, frac, n_tti)


def test_slice_shares_sum_exactly_follow_the_scores_and_bound_the_users():
    rng = np.random.default_rng(1)
    for _ in range(200):
        user_slice = np.sort(np.concatenate([np.arange(3), rng.integers(0, 3, 9)]))
        slice_scores = rng.uniform(-1, 1, 3)
        total = int(rng.integers(1, 5000))
        per_slice, per_user = allocate_prbs(slice_scores, rng.uniform(-1, 1, 12), user_slice,
                                            total)
        assert per_slice.sum() == per_user.sum() == total
        np.testing.assert_array_equal(np.bincount(user_slice, per_user, 3), per_slice)
        assert np.all(np.diff(per_slice[np.argsort(slice_scores)]) >= 0)
    equal, _ = allocate_prbs(-np.ones(3), np.zeros(12), user_slice, 500)
    assert sorted(equal.tolist()) == [166, 167, 167]
