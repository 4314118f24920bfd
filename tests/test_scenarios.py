"""The environment processes of the paper's scenarios and the trace replay."""

import numpy as np
import pytest

from hil.base.errors import ConfigError
from hil.base.scenarios import KindsOfC, make_scenario


def test_scenario_a_is_static_at_the_testbed_maximum():
    env = make_scenario("A", seed=1).epochs(0, 100)
    assert np.all(env.dl_demand_mbps == 32) and np.all(env.ul_demand_mbps == 23)
    assert np.all(env.dl_cqi == 15) and np.all(env.ul_cqi == 15)


def test_scenario_b_draws_within_the_papers_ranges():
    env = make_scenario("B", seed=1).epochs(0, 5000)
    assert env.dl_demand_mbps.min() >= 29 and env.dl_demand_mbps.max() <= 32
    assert env.ul_demand_mbps.min() >= 20 and env.ul_demand_mbps.max() <= 23
    assert env.dl_cqi.min() >= 1 and env.dl_cqi.max() <= 3
    assert env.dl_cqi.std() > 0.3  # it does vary


def test_scenario_c_alternates_good_odd_rounds_and_bad_even_rounds():
    env = make_scenario("C", seed=3).epochs(0, 2000)
    odd_rounds, even_rounds = slice(0, None, 2), slice(1, None, 2)  # epoch 0 is round 1
    assert env.dl_cqi[odd_rounds].min() >= 13 and env.dl_demand_mbps[odd_rounds].min() >= 29
    assert env.dl_cqi[even_rounds].max() <= 3 and env.dl_demand_mbps[even_rounds].max() <= 1


def test_mixed_is_b_then_c():
    env = make_scenario("mixed", seed=3, switch_epoch=1000).epochs(0, 3000)
    assert env.dl_cqi[:1000].max() <= 3
    assert env.dl_cqi[1000::2].min() >= 13 or env.dl_cqi[1001::2].min() >= 13


def test_scenario_c_iid_has_c_s_two_kinds_each_round_a_fair_coin():
    env = make_scenario("C-iid", seed=3).epochs(0, 4000)
    good = env.dl_cqi >= 13
    assert np.all(env.dl_demand_mbps[good] >= 29) and np.all(env.dl_cqi[~good] <= 3)
    assert np.all(env.dl_demand_mbps[~good] <= 1)
    assert 0.47 < good.mean() < 0.53
    same_as_last = np.mean(good[1:] == good[:-1])  # the last kind tells nothing of the next
    assert 0.47 < same_as_last < 0.53


def test_the_kinds_of_c_give_both_kinds_for_every_epoch():
    both = KindsOfC(seed=3).epochs(0, 100)
    assert both.dl_cqi.shape == (100, 2)
    assert both.dl_cqi[:, 0].min() >= 13 and both.dl_cqi[:, 1].max() <= 3
    assert both.ul_demand_mbps[:, 0].min() >= 20 and both.ul_demand_mbps[:, 1].max() <= 1


@pytest.mark.parametrize("name", ["A", "B", "C", "C-iid", "mixed"])
def test_an_epoch_is_the_same_whatever_range_asks_for_it(name):
    scenario = make_scenario(name, seed=7)
    whole = scenario.epochs(0, 3000)
    for start, stop in [(0, 1), (1023, 1025), (1500, 2600), (2999, 3000)]:
        part = scenario.epochs(start, stop)
        np.testing.assert_array_equal(part.dl_cqi, whole.dl_cqi[start:stop])
        np.testing.assert_array_equal(part.ul_demand_mbps, whole.ul_demand_mbps[start:stop])


def test_seeds_give_different_environments():
    a = make_scenario("B", seed=1).epochs(0, 10).dl_cqi
    b = make_scenario("B", seed=2).epochs(0, 10).dl_cqi
    assert not np.array_equal(a, b)


def test_a_trace_replays_its_rows_cyclically(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("dl_demand_mbps,ul_demand_mbps,dl_cqi,ul_cqi\n10,5,12,11\n20,6,7,8\n")
    env = make_scenario("trace", seed=0, trace_path=trace).epochs(1, 5)
    assert env.dl_demand_mbps.tolist() == [20, 10, 20, 10]
    assert env.ul_cqi.tolist() == [8, 11, 8, 11]


def test_a_trace_without_the_needed_columns_names_the_missing_one(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("dl_demand_mbps,ul_demand_mbps,dl_cqi\n1,2,3\n")
    with pytest.raises(ConfigError, match="ul_cqi"):
        make_scenario("trace", seed=0, trace_path=trace)


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ConfigError, match="mixed"):
        make_scenario("Z", seed=0)
