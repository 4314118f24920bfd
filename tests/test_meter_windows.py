"""Round windows measured by the GPM-8213 driver (pyvisa-py over TCP) from its twin, whose
power changes at every window start as a new policy's would: a healthy meter loses no window
even when polled only once per window, and faults cost only the time they stand for.

Time is scaled down (0.2 s windows) to keep the suite short; `hil bench` measures 1 s
windows (RELIABILITY.md's meter table)."""

import pytest

from drivers.power.window_check import HEALTHY, FaultPlan, check_windows

WINDOW_S = 0.2


@pytest.mark.parametrize("poll_s", [WINDOW_S / 10, WINDOW_S])
def test_a_healthy_meter_loses_no_window_at_any_poll_up_to_the_window(poll_s):
    check = check_windows(windows=10, window_s=WINDOW_S, poll_s=poll_s, plan=HEALTHY)
    assert check.valid == 10
    assert check.max_error_w < 0.05  # no reading mixes two windows' power
    assert check.mean_coverage > 0.8  # at most a poll's tail is not waited for


@pytest.mark.parametrize("integrator", [False, True])
def test_nan_late_and_dropped_replies_cost_only_their_time(integrator):
    faulty = FaultPlan(nan_every=3, delay_every=5, delay_s=WINDOW_S / 5, drop_every=7)
    check = check_windows(windows=15, window_s=WINDOW_S, poll_s=WINDOW_S / 10, plan=faulty,
                          use_integrator=integrator)
    assert check.valid >= 8  # a third of the readings are NaN: windows lose ~1/3, not all
    assert check.max_error_w <= 0.3
    assert check.mean_coverage < 0.9  # the NaNs' time is not counted as measured
