"""A measured link adaptation in the model (`LinkAdaptation`) and its fit from a dataset
(`tools/fit_power/link.py`): the MCS per CQI a testbed settles on, and the SNR each MCS
then needs (the one at which link adaptation picks it, so it runs at the BLER target)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hil.base import lte, model
from hil.base.model import Calibration, LinkAdaptation, PowerParams
from tools.fit_power.fit import FitError
from tools.fit_power.link import fit_cqi_scale, fit_link_adaptation, link_points

SRSRAN_LIKE = tuple(float(v) for v in (0, 1, 6, 9, 12, 14, 18, 22, 25, 26, 27, 27, 27, 27, 27,
                                       27))


def calibration(dl: tuple[float, ...] = SRSRAN_LIKE, ul: tuple[float, ...] = SRSRAN_LIKE
                ) -> Calibration:
    channel = model.ChannelParams(link_adaptation=LinkAdaptation(dl_mcs_by_cqi=dl,
                                                                 ul_mcs_by_cqi=ul))
    return Calibration(channel=channel, power=PowerParams(idle_w=6.0))


def test_link_adaptation_picks_the_measured_mcs_for_each_reported_cqi():
    channel = calibration().channel
    assert model.la_mcs(np.arange(16), "dl", channel).tolist() == [int(v) for v in SRSRAN_LIKE]
    ul = model.link_tables(channel)  # the UL adapts to its SNR, between the CQI steps too
    between = float(lte.cqi_to_snr_db(7.8))  # 22 + 0.8 * (25 - 22) = 24.4
    assert ul.ul_mcs(np.array([between]))[0] == 24
    assert model.la_mcs(8, "dl") < 20  # the 3GPP table is far less aggressive


def test_the_mcs_link_adaptation_picks_runs_at_the_bler_target():
    cal = calibration()
    for cqi in (2, 5, 8):
        snr = float(lte.cqi_to_snr_db(cqi))
        mcs = int(model.la_mcs(cqi, "dl", cal.channel))
        assert model.bler(mcs, snr, "dl", cal.channel) <= cal.channel.bler_target + 1e-9
        assert model.bler(mcs + 1, snr - 0.5, "dl", cal.channel) > cal.channel.bler_target


def test_required_snr_rises_with_the_mcs_and_continues_above_the_table():
    required = model.link_tables(calibration().channel).required_snr_db
    assert np.all(np.diff(required, axis=1) >= 0)
    assert required[0, 28] > required[0, 27]  # beyond the table's top: still harder


def test_a_table_that_falls_is_refused_naming_it():
    with pytest.raises(ValueError, match="dl_mcs_by_cqi must be non-decreasing"):
        calibration(dl=(5.0,) + (0.0,) * 15)


def test_the_expected_round_follows_the_measured_link_adaptation():
    from hil.base.scenarios import Environment

    env = Environment(np.array([[30.0]]), np.array([[20.0]]), np.array([[8.0]]),
                      np.array([[8.0]]))
    caps = model.make_caps(model.CellParams(), dl_max_mcs=27, ul_max_mcs=27)
    measured = model.expected_round(caps, env, calibration())
    standard = model.expected_round(caps, env, Calibration(power=PowerParams(idle_w=6.0)))
    assert float(measured.dl_mcs[0, 0]) == 25 and float(standard.dl_mcs[0, 0]) < 20
    assert float(measured.dl_rate_mbps[0, 0]) > float(standard.dl_rate_mbps[0, 0])


def cells_of(points: list[tuple[int, float, float, float, float, int]]) -> pd.DataFrame:
    """(condition, dl cqi, dl mcs, ul snr, ul mcs, dl cap) per cell; UL cap 23 everywhere."""
    return pd.DataFrame([{
        "dataset": "d", "condition": c, "failed": False, "policy_dl_gain_db": 0.0,
        "policy_dl_max_mcs": cap, "policy_ul_max_mcs": 23, "dl_cqi": cqi, "dl_mcs": mcs,
        "ul_snr_db": snr, "ul_mcs": ul_mcs, "dl_rate_mbps": 1.0, "ul_rate_mbps": 1.0,
        "dl_demand_mbps": 40.0, "ul_demand_mbps": 30.0, "dl_bler": 0.05, "ul_bler": 0.0,
        "policy_ul_prb_ratio": 1.0,
    } for c, cqi, mcs, snr, ul_mcs, cap in points])


def test_the_fit_runs_through_the_uncapped_points_and_keeps_censored_ones_as_floors():
    cells = cells_of([(0, 2.0, 6.0, 9.6, 14.0, 27), (0, 2.0, 5.0, 9.6, 14.0, 5),
                      (1, 8.0, 25.0, 15.2, 19.0, 27), (2, 15.0, 27.0, 31.0, 23.0, 27)])
    points = link_points(cells)
    assert sorted((p.direction, p.cqi, p.censored) for p in points)[0] == ("dl", 2.0, False)
    assert [p.censored for p in points if p.direction == "dl" and p.cqi == 15.0] == [True]
    la = fit_link_adaptation(cells, "test")
    dl = np.asarray(la.dl_mcs_by_cqi)
    assert dl[2] == pytest.approx(6.0) and dl[8] == pytest.approx(25.0)
    assert dl[15] == pytest.approx(27.0) and np.all(np.diff(dl) >= 0)
    assert dl[0] == 0.0 and dl[1] == pytest.approx(3.0)
    assert "dl CQI 8.0 -> MCS 25.0" in la.source
    assert la.dl_bler == pytest.approx(0.05) and la.ul_bler == pytest.approx(0.001)  # floor


def test_a_dataset_without_an_uncapped_cell_cannot_give_a_table():
    with pytest.raises(FitError, match="no DL cell where link adaptation"):
        fit_link_adaptation(cells_of([(0, 15.0, 27.0, 31.0, 20.0, 27)]), "test")


def test_a_ue_at_fixed_total_power_has_more_snr_on_a_smaller_grant():
    """srsUE has no UL power control: measured over ZMQ, 9 PRBs had 6.0 dB more SNR than 41."""
    fixed = model.ChannelParams(ul_fixed_total_power=True)
    cell = model.CellParams()
    gains = model.ul_grant_snr_gain_db(np.array([9, 41, 48]), cell, fixed)
    assert gains[0] - gains[1] == pytest.approx(10 * np.log10(41 / 9))
    assert gains[2] == pytest.approx(0.0)
    assert np.all(model.ul_grant_snr_gain_db(np.array([9, 48]), cell,
                                             model.ChannelParams()) == 0)
    from hil.base.scenarios import Environment

    env = Environment(np.array([[1.0]]), np.array([[20.0]]), np.array([[8.0]]),
                      np.array([[6.0]]))
    small = model.make_caps(cell, ul_prb_ratio=np.array([0.2, 1.0]))
    power = PowerParams(idle_w=6.0)
    with_fixed = model.expected_round(small, env, Calibration(
        channel=model.ChannelParams(ul_fixed_total_power=True), power=power))
    without = model.expected_round(small, env, Calibration(power=power))
    assert with_fixed.ul_mcs[0, 0] > without.ul_mcs[0, 0]  # the small grant's SNR is higher
    assert with_fixed.ul_mcs[0, 1] == without.ul_mcs[0, 1]  # the full band's is the same


def test_the_cqi_scale_follows_the_snr_at_which_the_ue_reported_each_cqi():
    """srsRAN's channel emulator SNR plus the DL gain against the reported CQI (half a step
    up); a report of 15 only bounds the scale and is left out."""
    rows = []
    for snr, gain, cqi in ((30, 0, 15), (30, -6, 11), (18, 0, 8), (18, -6, 5), (8, 0, 4),
                           (8, -6, 1.75)):
        rows.append({"dataset": "d", "failed": False, "cond_dl_snr_db": float(snr),
                     "policy_dl_gain_db": float(gain), "dl_cqi": float(cqi)})
    scale = np.asarray(fit_cqi_scale(pd.DataFrame(rows)))
    assert np.all(np.diff(scale) > 0)
    assert np.interp(8.5, np.arange(16), scale) == pytest.approx(18.0)
    # sampled at whole CQIs, so a point between two of them is met within that resampling
    assert np.interp(2.25, np.arange(16), scale) == pytest.approx(2.0, abs=0.25)
    assert scale[15] == pytest.approx(24.0 + (15 - 11.5) * 2.0)  # continued above
    channel = model.ChannelParams(snr_at_cqi_db=tuple(scale))
    assert float(model.snr_to_cqi(18.0, channel)) == pytest.approx(8.5)
    assert float(model.cqi_to_snr(8.5, channel)) == pytest.approx(18.0)
    assert fit_cqi_scale(pd.DataFrame(rows).drop(columns="cond_dl_snr_db")) is None
