"""What the control sockets do to a testbed that is up. The thresholds bind: every cap is
kept in every window and throughput follows it; the DL gain reaches the channel; per-user PRB
caps hold; starving caps are survived; the meter's watts follow airtime and MCS. A UE's own
power cap is kept and reaches the eNB. Each user names its bearer's QCI. CURVE serves only
the controller it knows. One testbed brought up for the module, one setting held at a time
(the others lifted), each for HOLD_S of the testbed's time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import zmq.auth
from matplotlib.figure import Figure

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.curve import ClientCurve
from drivers.rtctl.messages import UE
from hil.base.errors import VbsUnreachableError
from hil.testbeds import kind_of
from tools.acceptance.windows import (
    UeHold,
    cap_breaches,
    hold,
    hold_ue,
    keep_up,
    rate_mbps,
    wait_testbed_s,
)

HOLD_S = 5.0
"""Testbed seconds each setting is held: long enough for link adaptation to settle."""
CAP_COUNTER = {"dl_max_mcs": "dl_mcs", "dl_prb_ratio": "dl_prb", "ul_max_mcs": "ul_mcs",
               "ul_prb_ratio": "ul_prb"}
"""Each cap and the vBS's counter of TTIs it bound in (PROTOCOL.md: cap_hits)."""
CAP_AXES = tuple(CAP_COUNTER)
MONOTONE_SLACK = 0.15
"""A higher cap may deliver up to this share of the best rate less than a lower one (noise,
a saturated link), and no more."""
UE_CAP_BELOW_DB = 15.0
"""How far below its uncapped power the UE is capped: over a ~25 dB UL SNR, enough to cost
the eNB several MCS steps without losing the link (patches/srsRAN_4G/README.md, "srsUE:
verification")."""


@pytest.fixture(scope="module")
def ue(testbed, testbed_config) -> Iterator[RtctlClient]:
    """The UE's own control socket, while the module's testbed is up."""
    endpoint = kind_of(testbed_config).ue_control_endpoint(testbed_config)
    with RtctlClient(endpoint, peer=UE, timeout_s=3.0) as client:
        yield client
        client.reset()


def test_every_cap_is_kept_and_throughput_rises_with_it(testbed, testbed_config, measured):
    n_prb = kind_of(testbed_config).cell_prb(testbed_config)
    rows, breaches, not_monotone = [], [], []
    figure = Figure(figsize=(10, 6))
    for k, axis in enumerate(CAP_AXES):
        values = sorted(getattr(testbed_config.policy_space, axis))
        rates = []
        for value in values:
            window = hold(testbed, testbed_config, {axis: value}, HOLD_S)
            breaches += [f"{axis} {value}: {b}" for b in cap_breaches(window, n_prb)]
            rate = rate_mbps(window, axis[:2])
            rates.append(rate)
            cell = window.cell
            rows.append({"cap": axis, "value": value, "rate_mbps": rate,
                         "mcs_mean": getattr(cell, f"{axis[:2]}_mcs_mean"),
                         "cap_hit_tti": getattr(cell.cap_hits, CAP_COUNTER[axis]),
                         "violations": sum(cell.violations.model_dump().values())})
        slack = MONOTONE_SLACK * max(rates)
        not_monotone += [f"{axis}: {a} -> {b} Mb/s from {v} to {w}"
                         for v, w, a, b in zip(values, values[1:], rates, rates[1:])
                         if b < a - slack]
        if len(values) > 1 and rates[-1] <= rates[0] + slack:
            not_monotone.append(f"{axis}: the loosest cap ({rates[-1]:.2f} Mb/s) delivers no "
                                f"more than the tightest ({rates[0]:.2f})")
        ax = figure.add_subplot(2, 2, k + 1)
        ax.plot(values, rates, "o-")
        ax.set(xlabel=axis, ylabel=f"{axis[:2].upper()} Mb/s")
    measured.table("throughput and MCS by cap, one cap at a time", rows)
    measured.figure("throughput by cap", figure)
    assert not breaches, breaches
    assert not not_monotone, not_monotone


def test_the_dl_gain_lowers_the_channel_the_ue_reports(testbed, testbed_config, measured):
    full = hold(testbed, testbed_config, {}, HOLD_S)
    lowered = hold(testbed, testbed_config, {"dl_gain_db": -10.0}, HOLD_S)
    measured.table("DL CQI by DL gain", [
        {"dl_gain_db": 0.0, "dl_cqi_mean": full.cell.dl_cqi_mean,
         "dl_rate_mbps": rate_mbps(full, "dl")},
        {"dl_gain_db": -10.0, "dl_cqi_mean": lowered.cell.dl_cqi_mean,
         "dl_rate_mbps": rate_mbps(lowered, "dl")}])
    assert lowered.applied.dl_gain_db == -10.0
    assert lowered.cell.dl_cqi_mean < full.cell.dl_cqi_mean - 1


def test_per_user_prb_caps_hold_for_every_user(testbed, testbed_config, measured):
    users = hold(testbed, testbed_config, {}, HOLD_S).ue
    assert users, "no user is attached"
    cap_prb = 5
    window = hold(testbed, testbed_config, {"ue": {rnti: {"dl_max_prb": cap_prb,
                                                          "ul_max_prb": cap_prb}
                                                   for rnti in users}}, HOLD_S)
    rows = []
    for rnti, kpis in window.ue.items():
        rows.append({"rnti": rnti, "dl_prb_per_tti": kpis.dl_prb_tti / max(kpis.dl_sched_tti, 1),
                     "ul_prb_per_tti": kpis.ul_prb_tti / max(kpis.ul_sched_tti, 1),
                     "violations": sum(kpis.violations.model_dump().values())})
    measured.table(f"PRBs per scheduled TTI under a per-user cap of {cap_prb}", rows)
    assert set(window.ue) == set(users), "every user stayed attached"
    for row in rows:  # a retransmission may keep its first, larger size: one RBG of slack
        assert row["violations"] == 0 and row["dl_prb_per_tti"] <= cap_prb + 3, row
        assert row["ul_prb_per_tti"] <= cap_prb + 3, row


def test_starving_caps_keep_the_ue_and_lifting_them_brings_traffic_back(testbed, testbed_config,
                                                                       measured):
    """The paper's smallest ratios (0 DL, 0.01 UL) leave no PRB for user data; the user
    stays attached and carries traffic again once they are lifted."""
    n_prb = kind_of(testbed_config).cell_prb(testbed_config)
    before = hold(testbed, testbed_config, {}, HOLD_S)
    starved = hold(testbed, testbed_config, {"dl_prb_ratio": 0.0, "ul_prb_ratio": 0.01}, HOLD_S)
    after = hold(testbed, testbed_config, {}, HOLD_S)
    measured.table("rates through starving caps", [
        {"phase": name, "dl_rate_mbps": rate_mbps(w, "dl"), "ul_rate_mbps": rate_mbps(w, "ul"),
         "users": len(w.ue)} for name, w in (("before", before), ("starved", starved),
                                             ("after", after))])
    assert not cap_breaches(starved, n_prb)
    assert rate_mbps(starved, "dl") < 1.0 and rate_mbps(starved, "ul") < 1.0
    assert after.ue, "the user is still attached"
    assert rate_mbps(after, "dl") > 0.5 * rate_mbps(before, "dl")


@pytest.mark.needs("supply_watts")
def test_the_meter_s_watts_rise_with_airtime_and_mcs(testbed, testbed_config, measured):
    """At each DL PRB ratio (the top MCS) and each DL MCS cap (the whole band), three windows
    of the meter: their mean must rise with airtime and MCS; their spread is the meter's
    noise per window, reported."""
    meter = testbed_config.meter
    meter_s = (max(HOLD_S, 3 * meter.poll_s * testbed_config.clock.speedup)  # 3 readings
               if meter.kind == "gpm8213" else HOLD_S)
    space = testbed_config.policy_space
    settings = ([{"dl_prb_ratio": r} for r in sorted(space.dl_prb_ratio)]
                + [{"dl_max_mcs": m} for m in sorted(space.dl_max_mcs)])
    rows = []
    for setting in settings:
        keep_up(testbed)
        testbed.ran.set({"dl_max_mcs": None, "dl_prb_ratio": None, **setting})
        wait_testbed_s(testbed_config, HOLD_S)  # the link settles first
        watts = []
        for _ in range(3):
            keep_up(testbed)
            testbed.ran.get()
            testbed.meter.start()
            wait_testbed_s(testbed_config, meter_s)
            watts.append(testbed.meter.stop().power_w)
        (name, value), = setting.items()
        rows.append({"setting": name, "value": value, "power_w": float(np.mean(watts)),
                     "noise_w": float(np.std(watts, ddof=1))})
    measured.table("mean watts of three windows per setting, and their spread", rows)
    figure = Figure(figsize=(9, 3.5))
    for k, name in enumerate(("dl_prb_ratio", "dl_max_mcs")):
        ax = figure.add_subplot(1, 2, k + 1)
        mine = [r for r in rows if r["setting"] == name]
        ax.errorbar([r["value"] for r in mine], [r["power_w"] for r in mine],
                    yerr=[r["noise_w"] for r in mine], fmt="o-")
        ax.set(xlabel=name, ylabel="W")
    measured.figure("watts by airtime and MCS", figure)
    for name in ("dl_prb_ratio", "dl_max_mcs"):
        power = [r["power_w"] for r in rows if r["setting"] == name]
        noise = max(r["noise_w"] for r in rows if r["setting"] == name)
        assert power[-1] > power[0] + 2 * noise, (name, power)


def test_every_attached_user_names_its_bearer_s_qci(testbed, testbed_config, measured):
    """What a slicing scheduler tells a user's slice by (PROTOCOL.md: qci)."""
    window = hold(testbed, testbed_config, {}, HOLD_S)
    measured.table("users and their QCI", [{"rnti": rnti, "qci": kpis.qci,
                                            "dl_rate_mbps": rate_mbps(window, "dl", rnti)}
                                           for rnti, kpis in window.ue.items()])
    assert window.ue, "no user is attached"
    assert all(kpis.qci is not None for kpis in window.ue.values()), window.ue


def uncapped_then_capped(testbed, testbed_config, ue) -> tuple[UeHold, UeHold, int]:
    """A hold with the UE's power free, then one with it capped UE_CAP_BELOW_DB under what
    the UE used: both holds and the cap."""
    uncapped = hold_ue(testbed, testbed_config, ue, None, HOLD_S)
    cap_dbm = round(uncapped.ue.kpis.pusch_power_dbm_mean - UE_CAP_BELOW_DB)
    return uncapped, hold_ue(testbed, testbed_config, ue, cap_dbm, HOLD_S), cap_dbm


def ue_rows(phases: dict[str, UeHold]) -> list[dict]:
    return [{"phase": name, "cap_dbm": h.ue.applied.ul_max_tx_power_dbm,
             "pusch_power_dbm_mean": h.ue.kpis.pusch_power_dbm_mean,
             "pusch_power_dbm_max": h.ue.kpis.pusch_power_dbm_max,
             "cap_hits": h.ue.kpis.ul_power_cap_hits, "pusch_tti": h.ue.kpis.pusch_tti,
             "rsrp_dbm": h.ue.kpis.rsrp_dbm_mean, "enb_ul_snr_db": h.enb.cell.ul_snr_mean,
             "enb_ul_mcs": h.enb.cell.ul_mcs_mean, "ul_rate_mbps": rate_mbps(h.enb, "ul")}
            for name, h in phases.items()]


@pytest.mark.needs("ue_rtctl")
def test_a_ue_power_cap_is_kept_and_a_reset_lifts_it(testbed, testbed_config, ue, measured):
    assert ue.reset().applied.ul_max_tx_power_dbm is None
    uncapped, capped, cap_dbm = uncapped_then_capped(testbed, testbed_config, ue)
    assert ue.reset().applied.ul_max_tx_power_dbm is None
    restored = hold_ue(testbed, testbed_config, ue, None, HOLD_S)
    measured.table("the UE's transmit power under its cap",
                   ue_rows({"uncapped": uncapped, "capped": capped, "restored": restored}))
    k = uncapped.ue.kpis
    assert k.rsrp_nof_meas > 0 and -140 <= k.rsrp_dbm_mean <= -44  # TS 36.133 RSRP range
    assert k.pusch_tti > 0 and k.ul_power_cap_hits == 0
    assert capped.ue.applied.ul_max_tx_power_dbm == cap_dbm
    assert capped.ue.kpis.pusch_tti > 0, "the UE still transmits"
    assert capped.ue.kpis.pusch_power_dbm_max <= cap_dbm
    assert capped.ue.kpis.ul_power_cap_hits >= capped.ue.kpis.pusch_tti
    assert restored.ue.kpis.ul_power_cap_hits == 0
    assert abs(restored.ue.kpis.pusch_power_dbm_mean - k.pusch_power_dbm_mean) < 1


@pytest.mark.needs("ue_rtctl", "ul_noise_floor")
def test_a_ue_power_cap_lowers_the_ul_snr_mcs_and_rate_at_the_enb(testbed, testbed_config, ue,
                                                                 measured):
    ue.reset()
    uncapped, capped, _ = uncapped_then_capped(testbed, testbed_config, ue)
    ue.reset()
    measured.table("the eNB's uplink under the UE's power cap",
                   ue_rows({"uncapped": uncapped, "capped": capped}))
    assert capped.enb.cell.ul_snr_mean < uncapped.enb.cell.ul_snr_mean - 5
    assert capped.enb.cell.ul_mcs_mean < uncapped.enb.cell.ul_mcs_mean
    assert rate_mbps(capped.enb, "ul") <= rate_mbps(uncapped.enb, "ul") * (1 + MONOTONE_SLACK)


@pytest.mark.needs("curve")
def test_curve_serves_only_the_authorized_controller(testbed, testbed_config, tmp_path):
    """The vBS's control socket answers the controller whose key it holds (the testbed's
    own client), and nobody else: not a plaintext client, not a client with a key of its
    own."""
    assert testbed.ran.ping().ok
    assert isinstance(testbed.ran, RtctlClient)
    server_public = ClientCurve.from_dir(testbed_config.vbs.curve_dir).server_public
    _, secret = zmq.auth.create_certificates(str(tmp_path), "intruder")
    intruder = ClientCurve(*zmq.auth.load_certificate(secret), server_public=server_public)
    for curve in (None, intruder):
        with RtctlClient(testbed.ran.endpoint, timeout_s=0.5, retries=0, curve=curve) as ran, \
                pytest.raises(VbsUnreachableError):
            ran.ping()
    assert testbed.ran.set({"dl_max_mcs": 10}).applied.dl_max_mcs == 10  # still served
