"""The link and power model: caps, queues, BLER, power in the published form."""

from pathlib import Path

import numpy as np
import pytest

from hil.base import lte, model
from hil.base.errors import ConfigError
from hil.base.scenarios import Environment, make_scenario

CAL = model.load_calibration(
    Path(__file__).resolve().parents[1] / "testbed_configs" / "calibration" / "emulated-nuc.yaml")


def env_per_tti(n: int, dl_mbps: float, ul_mbps: float, dl_cqi: float, ul_cqi: float):
    return Environment(np.full(n, dl_mbps), np.full(n, ul_mbps), np.full(n, dl_cqi),
                       np.full(n, ul_cqi))


def run(caps, env, seed=0, state=None):
    return model.simulate_window(caps, env, state or model.LinkState(),
                                 np.random.default_rng(seed), CAL)


def test_a_prb_ratio_gives_the_protocols_budget_and_dl_grants_whole_rbgs_within_it():
    ratios = np.array([0.0, 0.2, 0.5, 0.58, 0.8, 0.95, 1.0])
    caps = model.make_caps(CAL.cell, dl_prb_ratio=ratios, ul_prb_ratio=ratios)
    assert caps.dl_prb_budget.tolist() == [0, 10, 25, 29, 40, 47, 50]
    # 50 PRB = 16 RBGs of 3 and a last one of 2: 47 = 15 x 3 + 2, 29 = 9 x 3 + 2
    assert caps.dl_max_prb.tolist() == [0, 9, 24, 29, 39, 47, 50]
    assert caps.ul_max_prb.tolist() == [0, 10, 25, 29, 40, 47, 48]  # 2 PRBs of PUCCH


def test_per_user_caps_tighten_the_cell_caps():
    caps = model.make_caps(CAL.cell, dl_prb_ratio=1.0, ue_dl_max_prb=19, ue_ul_max_prb=10)
    assert int(caps.dl_max_prb) == 18 and int(caps.ul_max_prb) == 10  # DL: 6 RBGs of 3


def test_grants_never_exceed_the_caps_in_force():
    for mcs_cap, ratio in [(0, 0.2), (10, 0.5), (27, 1.0), (5, 0.01)]:
        caps = model.make_caps(CAL.cell, dl_max_mcs=mcs_cap, ul_max_mcs=mcs_cap,
                               dl_prb_ratio=ratio, ul_prb_ratio=ratio)
        kpis, _ = run(caps, env_per_tti(1000, 32, 23, 15, 15))
        for d in model.DIRECTIONS:
            assert kpis.get(d, "violations_mcs") == 0 and kpis.get(d, "violations_prb") == 0
            sched = kpis.get(d, "sched_tti")
            if sched:
                assert kpis.get(d, "mcs_sum") / sched <= mcs_cap
        assert kpis.get("dl", "prb_tti") <= 1000 * int(caps.dl_prb_budget)


def test_full_buffer_throughput_matches_the_tbs_of_the_caps():
    caps = model.make_caps(CAL.cell, dl_max_mcs=10, dl_prb_ratio=0.5)
    kpis, _ = run(caps, env_per_tti(2000, 50, 1, 15, 15))  # demand above capacity
    tbs = lte.tbs_bits(10, 24, "dl")  # MCS 10 well below what CQI 15 supports: ~no errors
    assert kpis.get("dl", "bits_delivered") == pytest.approx(2000 * tbs, rel=0.01)
    assert kpis.get("dl", "cap_hits_mcs") > 1900 and kpis.get("dl", "cap_hits_prb") > 1900


def test_a_light_load_is_served_fully_with_fewer_prbs():
    caps = model.make_caps(CAL.cell)
    kpis, state = run(caps, env_per_tti(1000, 2.0, 1.0, 15, 15))
    assert kpis.get("dl", "bits_delivered") == pytest.approx(2.0e6, rel=0.02)
    assert kpis.get("dl", "prb_tti") / 1000 < 10
    assert state.backlog_bits[0] < 5000


def test_the_queue_matches_a_tti_by_tti_reference():
    """Lindley recursion vectorised == a plain loop over TTIs with the same random draws."""
    caps = model.make_caps(CAL.cell, dl_max_mcs=20, ul_max_mcs=20)
    env = env_per_tti(300, 25.0, 18.0, 12, 12)
    kpis, state = run(caps, env, seed=4, state=model.LinkState(np.array([50_000.0, 0.0])))

    # Re-draw the same randomness to replay the TTIs one by one.
    rng = np.random.default_rng(4)
    n = 300
    snr = lte.cqi_to_snr_db(np.stack([env.dl_cqi, env.ul_cqi])) + rng.normal(0, 1.0, (2, n))
    cqi = model.reported_cqi(np.concatenate([np.repeat(snr[:, :1], 4, axis=1), snr], axis=1)[:, :n])
    mcs = np.minimum(np.stack([model.la_mcs(cqi[0], "dl"), model.la_mcs(cqi[1], "ul")]), 20)
    error = np.stack([model.bler(mcs[0], snr[0], "dl", CAL.channel),
                      model.bler(mcs[1], snr[1], "ul", CAL.channel)])
    ok = rng.random((2, n)) >= error
    queue = [50_000.0, 0.0]
    delivered = [0.0, 0.0]
    for k in range(n):
        for row, (d, demand, prb) in enumerate([("dl", 25.0, 50), ("ul", 18.0, 48)]):
            queue[row] += demand * 1000
            send = min(queue[row], float(lte.tbs_bits(mcs[row, k], prb, d)))
            if ok[row, k]:
                queue[row] -= send
                delivered[row] += send
    assert kpis.get("dl", "bits_delivered") == pytest.approx(delivered[0])
    assert kpis.get("ul", "bits_delivered") == pytest.approx(delivered[1])
    assert state.backlog_bits == pytest.approx(queue)


def test_an_mcs_above_what_the_channel_supports_is_lost():
    mcs = np.arange(29)
    snr = lte.required_snr_db(15, "dl")
    error = model.bler(mcs, snr, "dl", CAL.channel)
    assert error[15] == pytest.approx(CAL.channel.bler_target)
    assert error[25] > 0.99 and error[5] < 1e-3


def test_capping_the_mcs_below_link_adaptation_cuts_errors_at_low_snr():
    env = env_per_tti(4000, 32, 23, 2.5, 2.5)
    loose, _ = run(model.make_caps(CAL.cell), env, seed=1)
    capped, _ = run(model.make_caps(CAL.cell, dl_max_mcs=0, ul_max_mcs=0), env, seed=1)
    def bler(k):
        return k.get("dl", "tb_failed") / k.get("dl", "sched_tti")
    assert bler(capped) < bler(loose)


def test_power_spans_the_published_range_and_rises_with_load():
    env = env_per_tti(1000, 32, 23, 15, 15)
    idle, _ = run(model.make_caps(CAL.cell, dl_prb_ratio=0.0, ul_prb_ratio=0.0), env)
    small, _ = run(model.make_caps(CAL.cell, dl_max_mcs=0, ul_max_mcs=0, dl_prb_ratio=0.2,
                                   ul_prb_ratio=0.2), env)
    full, _ = run(model.make_caps(CAL.cell), env)
    watts = [k.energy_j / (k.nof_tti * model.TTI_S) for k in (idle, small, full)]
    assert watts[0] == pytest.approx(CAL.power.idle_w + CAL.power.radio_fixed_w)
    assert 9.0 <= watts[0] < watts[1] < watts[2] <= 16.5


def test_power_is_flat_above_the_decoding_threshold_and_rises_below_it():
    mcs = np.array(10)
    g0 = lte.required_snr_db(10, "ul") + CAL.power.ul_decode.margin_db
    def p(snr):
        return float(model.power_w(0.0, 0, 1.0, mcs, snr, 0.0, CAL.power))
    assert p(g0 + 5) == pytest.approx(p(g0 + 15))
    assert p(g0 - 4) > p(g0 - 2) > p(g0)


def test_window_sums_agree_with_the_expected_round():
    env = make_scenario("B", seed=2).epochs(0, 1)
    caps = model.make_caps(CAL.cell, dl_max_mcs=5, ul_max_mcs=5, dl_prb_ratio=0.6,
                           ul_prb_ratio=0.6)
    kpis, _ = run(caps, env_per_tti(20_000, float(env.dl_demand_mbps[0]),
                                    float(env.ul_demand_mbps[0]), float(env.dl_cqi[0]),
                                    float(env.ul_cqi[0])), seed=3)
    expected = model.expected_round(caps, env, CAL)
    measured_dl = kpis.get("dl", "bits_delivered") / 20_000 / 1e3
    measured_w = kpis.energy_j / 20.0
    assert measured_dl == pytest.approx(float(expected.dl_rate_mbps[0]), rel=0.1)
    assert measured_w == pytest.approx(float(expected.power_w[0]), rel=0.05)


def test_expected_round_evaluates_many_policies_and_environments_at_once():
    caps = model.make_caps(CAL.cell, dl_max_mcs=np.array([0, 10, 27]),
                           ul_max_mcs=np.array([0, 10, 23]))
    env = make_scenario("C", seed=1).epochs(0, 4)
    env = Environment(*(getattr(env, f)[:, None] for f in env.__dataclass_fields__))
    out = model.expected_round(caps, env, CAL)
    assert out.dl_rate_mbps.shape == (4, 3)
    assert np.all(out.dl_rate_mbps <= env.dl_demand_mbps + 1e-9)
    assert np.all(np.diff(out.dl_rate_mbps[0]) >= 0)  # good round: higher caps carry more


def test_a_calibration_with_a_bad_value_names_the_key(tmp_path):
    bad = tmp_path / "cal.yaml"
    bad.write_text("power:\n  idle_w: -1\n")
    with pytest.raises(ConfigError, match="power.idle_w"):
        model.load_calibration(bad)
