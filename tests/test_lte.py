"""LTE facts from TS 36.213 and the emulator's CQI/SNR link model built on them.

Expected values are written out from the spec's tables (TS 36.213) and from
independent public transcriptions, never computed with the module under test.
"""

import numpy as np
import pytest

from hil.base import lte

# TS 36.213 Table 7.1.7.2.1-1 at N_PRB = 50 for I_TBS 0..26.
TBS_AT_50_PRB = [1384, 1800, 2216, 2856, 3624, 4392, 5160, 6200, 6968, 7992, 8760, 9912,
                 11448, 12960, 14112, 15264, 16416, 18336, 19848, 21384, 22920, 25456,
                 27376, 28336, 30576, 31704, 36696]
# The same table at N_PRB = 1 and N_PRB = 100, as listed by sources other than the one the
# module's table was transcribed from (ns-3 lte-amc.cc, with the spec's 328 at I_TBS 6, and
# a public per-I_TBS 100-PRB listing).
TBS_AT_1_PRB = [16, 24, 32, 40, 56, 72, 328, 104, 120, 136, 144, 176, 208, 224, 256, 280,
                328, 336, 376, 408, 440, 488, 520, 552, 584, 616, 712]
TBS_AT_100_PRB = [2792, 3624, 4584, 5736, 7224, 8760, 10296, 12216, 14112, 15840, 17568,
                  19848, 22920, 25456, 28336, 30576, 32856, 36696, 39232, 43816, 46888,
                  51024, 55056, 57336, 61664, 63776, 75376]

# MCS 0..28 -> I_TBS and Qm, TS 36.213 Tables 7.1.7.1-1 (DL) and 8.6.1-1 (UL).
DL_ITBS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13, 14, 15, 15, 16, 17, 18, 19, 20,
           21, 22, 23, 24, 25, 26]
UL_ITBS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20,
           21, 22, 23, 24, 25, 26]
DL_QM = [2] * 10 + [4] * 7 + [6] * 12
UL_QM = [2] * 11 + [4] * 10 + [6] * 8

# CQI -> SNR anchors of the BSvBS testbed (paper footnote 13).
CQI_SNR_ANCHORS = [(1, 1.95), (3, 6.0), (13, 25.0), (15, 29.0)]

ALL_MCS = np.arange(29)
DIRECTIONS = ["dl", "ul"]


# ----------------------------------------------------------------------------- TBS table
def test_tbs_table_is_27_itbs_by_110_prb_of_int32():
    assert lte.TBS_TABLE.shape == (lte.N_ITBS, lte.MAX_PRB) == (27, 110)
    assert lte.TBS_TABLE.dtype == np.int32


def test_tbs_at_50_prb_matches_the_spec_for_every_itbs():
    assert lte.TBS_TABLE[:, 49].tolist() == TBS_AT_50_PRB


def test_tbs_spec_anchor_cells():
    assert lte.TBS_TABLE[26, 99] == 75376
    assert lte.TBS_TABLE[0, 109] == 3112
    assert lte.TBS_TABLE[6, 0] == 328


def test_tbs_at_1_and_100_prb_match_independent_listings():
    assert lte.TBS_TABLE[:, 0].tolist() == TBS_AT_1_PRB
    assert lte.TBS_TABLE[:, 99].tolist() == TBS_AT_100_PRB


def test_tbs_rows_never_shrink_with_more_prbs_except_the_spec_typo_cell():
    steps = np.diff(lte.TBS_TABLE.astype(np.int64), axis=1)
    typo = np.zeros_like(steps, dtype=bool)
    typo[6, 0] = True  # (I_TBS 6, N_PRB 1) = 328 > (I_TBS 6, N_PRB 2) = 176
    assert (steps[~typo] >= 0).all()
    assert steps[6, 0] < 0


def test_tbs_columns_strictly_grow_with_itbs_except_the_spec_typo_cell():
    steps = np.diff(lte.TBS_TABLE.astype(np.int64), axis=0)
    typo = np.zeros_like(steps, dtype=bool)
    typo[6, 0] = True  # (I_TBS 6, N_PRB 1) = 328 > (I_TBS 7, N_PRB 1) = 104
    assert (steps[~typo] > 0).all()


# ----------------------------------------------------------------------------- MCS tables
@pytest.mark.parametrize("direction, expected", [("dl", DL_ITBS), ("ul", UL_ITBS)])
def test_mcs_to_itbs_follows_the_spec_table(direction, expected):
    assert lte.mcs_to_itbs(ALL_MCS, direction).tolist() == expected


@pytest.mark.parametrize("direction, expected", [("dl", DL_QM), ("ul", UL_QM)])
def test_modulation_order_follows_the_spec_table(direction, expected):
    assert lte.modulation_order(ALL_MCS, direction).tolist() == expected


@pytest.mark.parametrize("bad", [29, -1, [3, 29, 5], 2.5])
def test_an_mcs_outside_0_to_28_or_fractional_is_refused_by_name(bad):
    value = next(v for v in np.ravel(bad) if v not in range(29))
    with pytest.raises(ValueError, match=f"MCS {value}"):
        lte.mcs_to_itbs(bad, "dl")
    with pytest.raises(ValueError, match=f"MCS {value}"):
        lte.tbs_bits(bad, 10, "ul")


def test_a_whole_valued_float_mcs_is_accepted():
    assert lte.mcs_to_itbs(np.array([10.0, 17.0]), "dl").tolist() == [9, 15]


def test_an_unknown_direction_is_refused_by_name():
    with pytest.raises(ValueError, match="'downlink'"):
        lte.mcs_to_itbs(5, "downlink")


@pytest.mark.parametrize("call", [
    lambda: lte.mcs_to_itbs(5, "dl"), lambda: lte.modulation_order(5, "dl"),
    lambda: lte.tbs_bits(5, 50, "dl"), lambda: lte.prbs_needed(5, 1000, "dl", 50),
    lambda: lte.cqi_to_snr_db(7), lambda: lte.snr_db_to_cqi(12.0),
    lambda: lte.spectral_efficiency(5, "ul"), lambda: lte.required_snr_db(5, "ul"),
    lambda: lte.la_mcs(7, "ul"),
])
def test_every_function_turns_scalars_into_0d_arrays(call):
    out = call()
    assert isinstance(out, np.ndarray) and out.shape == ()


# ----------------------------------------------------------------------------- tbs_bits


def test_tbs_bits_broadcasts_mcs_against_prbs():
    mcs = np.array([[0], [10], [28]])
    n_prb = np.array([1, 50, 100])
    out = lte.tbs_bits(mcs, n_prb, "dl")
    assert out.shape == (3, 3)
    assert out.tolist() == [[16, 1384, 2792],   # I_TBS 0
                            [136, 7992, 15840],  # DL MCS 10 -> I_TBS 9
                            [712, 36696, 75376]]  # I_TBS 26


def test_tbs_bits_uses_the_direction_specific_itbs():
    # MCS 10 is I_TBS 9 in DL but I_TBS 10 in UL.
    assert lte.tbs_bits(10, 50, "dl") == 7992
    assert lte.tbs_bits(10, 50, "ul") == 8760


def test_tbs_bits_on_zero_prbs_is_zero():
    assert lte.tbs_bits([0, 28], 0, "ul").tolist() == [0, 0]


@pytest.mark.parametrize("bad", [111, -1, 1.5])
def test_tbs_bits_refuses_a_prb_count_outside_0_to_110(bad):
    with pytest.raises(ValueError, match=f"N_PRB {bad}"):
        lte.tbs_bits(5, bad, "dl")


# ----------------------------------------------------------------------------- prbs_needed
def _prbs_needed_by_scan(mcs, bits, direction, max_prb):
    """Reference: walk N_PRB = 1, 2, ... until the spec table's TBS carries the bits."""
    if bits <= 0:
        return 0
    itbs = (DL_ITBS if direction == "dl" else UL_ITBS)[mcs]
    for n_prb in range(1, max_prb + 1):
        if lte.TBS_TABLE[itbs, n_prb - 1] >= bits:
            return n_prb
    return max_prb


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_prbs_needed_equals_a_brute_force_scan_on_random_inputs(direction):
    rng = np.random.default_rng(7)
    n = 600
    mcs = rng.integers(0, 29, n)
    max_prb = rng.integers(1, 111, n)
    bits = np.concatenate([rng.uniform(-100, 80_000, n - 100),
                           rng.integers(0, 400, 100)])  # small sizes hit the 1-PRB edge
    expected = [_prbs_needed_by_scan(m, b, direction, c) for m, b, c in zip(mcs, bits, max_prb)]
    assert lte.prbs_needed(mcs, bits, direction, max_prb).tolist() == expected


def test_prbs_needed_hits_exact_table_values_on_the_boundary():
    # 1384 bits is exactly TBS(I_TBS 0, 50 PRB); 1385 needs the next size up (1416 at 51).
    assert lte.prbs_needed(0, [1384, 1385], "dl", 110).tolist() == [50, 51]


def test_prbs_needed_honours_the_spec_cell_at_itbs_6_one_prb():
    # TBS(I_TBS 6, 1 PRB) = 328 in the spec, so 300 bits fit in one PRB though 2 PRB hold 176.
    assert lte.prbs_needed(6, 300, "dl", 50) == 1


def test_prbs_needed_is_zero_without_bits_and_max_prb_when_they_do_not_fit():
    assert lte.prbs_needed(28, [0, -5, 1e9], "dl", 50).tolist() == [0, 0, 50]


def test_prbs_needed_broadcasts():
    out = lte.prbs_needed(np.array([[0], [28]]), np.array([100, 5000, 50_000]), "ul", 50)
    assert out.shape == (2, 3)
    assert out.tolist() == [[5, 50, 50], [1, 7, 50]]


def test_prbs_needed_refuses_a_max_prb_outside_1_to_110():
    with pytest.raises(ValueError, match="max_prb 0"):
        lte.prbs_needed(5, 100, "dl", 0)


# ----------------------------------------------------------------------------- CQI <-> SNR
@pytest.mark.parametrize("cqi, snr_db", CQI_SNR_ANCHORS)
def test_cqi_to_snr_passes_through_the_testbed_anchors(cqi, snr_db):
    assert lte.cqi_to_snr_db(cqi) == pytest.approx(snr_db)
    assert lte.snr_db_to_cqi(snr_db) == pytest.approx(cqi)


def test_cqi_to_snr_is_linear_between_anchors_and_beyond_them():
    cqi = np.array([2.0, 8.0, 14.0, 0.0, 16.0])
    # Midpoints of the anchor segments; outside, the end segments continue
    # (slope 2.025 dB per CQI below CQI 1, 2 dB per CQI above CQI 15).
    expected = [3.975, 15.5, 27.0, -0.075, 31.0]
    assert lte.cqi_to_snr_db(cqi) == pytest.approx(expected)


def test_snr_to_cqi_is_clipped_to_0_to_15():
    assert lte.snr_db_to_cqi([-20.0, 40.0]).tolist() == [0.0, 15.0]


def test_cqi_snr_round_trip_over_the_cqi_range():
    cqi = np.linspace(0.0, 15.0, 301)
    assert lte.snr_db_to_cqi(lte.cqi_to_snr_db(cqi)) == pytest.approx(cqi)
    assert (np.diff(lte.cqi_to_snr_db(cqi)) > 0).all()


# ----------------------------------------------------------------------------- link model
def test_spectral_efficiency_is_tbs_at_50_prb_over_data_res():
    assert lte.RE_PER_PRB == {"dl": 120, "ul": 144}
    assert lte.spectral_efficiency(28, "dl") == pytest.approx(36696 / (50 * 120))
    assert lte.spectral_efficiency(28, "ul") == pytest.approx(36696 / (50 * 144))
    assert lte.spectral_efficiency(0, "dl") == pytest.approx(1384 / 6000)


def test_cqi_efficiency_table_is_table_7_2_3_1():
    assert lte.CQI_EFFICIENCY.shape == (16,)
    assert lte.CQI_EFFICIENCY[0] == 0.0
    assert lte.CQI_EFFICIENCY[[1, 7, 15]].tolist() == [0.1523, 1.4766, 5.5547]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_required_snr_never_falls_as_mcs_rises(direction):
    snr = lte.required_snr_db(ALL_MCS, direction)
    assert (np.diff(snr) >= 0).all()


@pytest.mark.parametrize("direction, shared", [("dl", [(9, 10), (16, 17)]),
                                                ("ul", [(10, 11), (20, 21)])])
def test_mcs_sharing_an_itbs_need_the_same_snr_and_others_strictly_more(direction, shared):
    snr = lte.required_snr_db(ALL_MCS, direction)
    equal_steps = {low for low, _ in shared}
    for low in range(28):
        if low in equal_steps:
            assert snr[low + 1] == snr[low]
        else:
            assert snr[low + 1] > snr[low]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_required_snr_lies_between_the_snrs_of_the_bracketing_cqis(direction):
    # An MCS whose efficiency sits between CQI k and k + 1 needs an SNR between theirs.
    for mcs in ALL_MCS:
        efficiency = lte.spectral_efficiency(mcs, direction)
        k = int(np.searchsorted(lte.CQI_EFFICIENCY, efficiency, side="right")) - 1
        snr = lte.required_snr_db(mcs, direction)
        if k < 15:
            assert lte.cqi_to_snr_db(k) <= snr <= lte.cqi_to_snr_db(k + 1)
        else:
            assert snr > 29.0  # beyond CQI 15, extrapolated


def test_link_adaptation_at_the_cqi_extremes():
    assert lte.la_mcs(15, "dl") >= 26
    assert lte.la_mcs(1, "dl") <= 2
    assert lte.la_mcs(0, "ul") == 0


@pytest.mark.parametrize("direction, never_chosen", [("dl", [9, 16]), ("ul", [10, 20])])
def test_link_adaptation_never_falls_as_cqi_rises(direction, never_chosen):
    mcs = lte.la_mcs(np.linspace(0.0, 15.0, 601), direction)
    assert (np.diff(mcs) >= 0).all()
    assert mcs.min() >= 0 and mcs.max() <= 28
    # Of two MCS with the same I_TBS (same required SNR) the higher one is chosen.
    assert not np.isin(mcs, never_chosen).any()


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_link_adaptation_picks_the_highest_mcs_the_snr_supports(direction):
    rng = np.random.default_rng(3)
    cqi = rng.uniform(0.0, 15.0, 400)
    snr = lte.cqi_to_snr_db(cqi)
    required = lte.required_snr_db(ALL_MCS, direction)
    supported = required[None, :] <= snr[:, None]
    expected = np.where(supported.any(axis=1), 28 - np.argmax(supported[:, ::-1], axis=1), 0)
    assert lte.la_mcs(cqi, direction).tolist() == expected.tolist()


def test_link_adaptation_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        lte.la_mcs([3.0, np.nan], "dl")
