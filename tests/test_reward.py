"""The reward of the paper (eqs. 1-3) with power normalised by declared bounds."""

import math

import numpy as np
import pytest

from hil.reward import RewardParams, reward, scaled_reward, utility

PARAMS = RewardParams(delta=1.5, power_min_w=9.0, power_max_w=16.0)


def test_utility_is_log_one_plus_served_share_per_direction():
    assert utility(16.0, 32.0, 23.0, 23.0) == pytest.approx(math.log(1.5) + math.log(2.0))


def test_a_direction_without_demand_adds_nothing():
    assert utility(0.0, 0.0, 10.0, 20.0) == pytest.approx(math.log(1.5))


def test_reward_at_full_service_and_minimum_power_is_one():
    u, raw, f = reward(32.0, 32.0, 23.0, 23.0, 9.0, PARAMS)
    assert u == pytest.approx(2 * math.log(2))
    assert raw == pytest.approx(2 * math.log(2))
    assert f == pytest.approx(1.0)


def test_reward_with_nothing_served_at_maximum_power_is_zero():
    _, raw, f = reward(0.0, 32.0, 0.0, 23.0, 16.0, PARAMS)
    assert raw == pytest.approx(-1.5)
    assert f == pytest.approx(0.0)


def test_reward_by_hand_in_the_middle():
    # U = log(1 + 0.5) + log(1 + 1) ; p = (12.5 - 9) / 7 = 0.5 ; f~ = U - 0.75
    _, raw, f = reward(16.0, 32.0, 23.0, 23.0, 12.5, PARAMS)
    expected_raw = math.log(1.5) + math.log(2.0) - 0.75
    assert raw == pytest.approx(expected_raw)
    assert f == pytest.approx((expected_raw + 1.5) / (2 * math.log(2) + 1.5))


def test_power_outside_declared_bounds_is_clipped_so_f_stays_in_unit_interval():
    _, _, f_low = reward(32.0, 32.0, 23.0, 23.0, 2.0, PARAMS)
    _, _, f_high = reward(0.0, 32.0, 0.0, 23.0, 40.0, PARAMS)
    assert f_low == pytest.approx(1.0) and f_high == pytest.approx(0.0)
    assert np.all((scaled_reward(np.array([-10.0, 10.0]), PARAMS) >= 0)
                  & (scaled_reward(np.array([-10.0, 10.0]), PARAMS) <= 1))


def test_more_power_never_increases_the_reward():
    watts = np.linspace(8, 17, 50)
    _, _, f = reward(20.0, 32.0, 10.0, 23.0, watts, PARAMS)
    assert np.all(np.diff(f) <= 1e-12)


def test_invalid_bounds_are_rejected():
    with pytest.raises(ValueError, match="power_max_w"):
        RewardParams(delta=1.0, power_min_w=10.0, power_max_w=10.0)
