"""A power window from a meter's readings: the time-weighted mean of the polled readings
that cover it, or the meter's own integrator between two readings. Pure functions of the
readings the GPM-8213 driver's poller keeps (drivers/power/gpm8213.py), tested on their own
(tests/test_gpm8213.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One answered value query: monotonic time of its reply, the items we use (NaN:
    missing), and when the query was sent (the meter's values are from between the two)."""

    t_s: float
    power_w: float
    energy_wh: float = math.nan
    integrated_s: float = math.nan
    session: int = 0
    sent_s: float = -math.inf


@dataclass(frozen=True)
class WindowMean:
    """A window's mean power from the readings that cover it."""

    power_w: float
    coverage: float  # share of the window the valid readings stand for
    samples: int     # valid readings that cover part of it


def window_mean(samples: Sequence[Sample], t0_s: float, t1_s: float,
                max_span_s: float) -> WindowMean | None:
    """Time-weighted mean power of the valid readings that cover the window (t0_s, t1_s].

    A reading taken at t stands for (max(previous reading, t - max_span_s), t]. One whose
    interval begins before t0_s mixes the previous round's power and is left out; the
    others weigh by the part of their interval inside the window, so the first reading
    after t1_s counts for the window's tail. NaN readings cut their successor's interval
    too, so the time they stand for counts for nothing and lowers the coverage. None if no
    valid reading covers any of the window.
    """
    previous_t = -math.inf
    weighted, covered_s, count = 0.0, 0.0, 0
    for sample in samples:
        begin = max(sample.t_s - max_span_s, previous_t)
        end = min(sample.t_s, t1_s)
        previous_t = sample.t_s
        if begin >= t1_s:
            break
        if begin < t0_s or end <= begin or not math.isfinite(sample.power_w):
            continue
        weighted += sample.power_w * (end - begin)
        covered_s += end - begin
        count += 1
    if not count:
        return None
    return WindowMean(weighted / covered_s, min(1.0, covered_s / (t1_s - t0_s)), count)


def integrated_mean(samples: Sequence[Sample], t0_s: float, t1_s: float,
                    max_lag_s: float) -> WindowMean | None:
    """Mean power from the integrator over the window (t0_s, t1_s]: per session (a
    reconnect resets the integrator), the energy and integrated time between its first
    valid reading asked for at or after t0_s and its last one answered by t1_s + max_lag_s
    (the driver reads at the end edge and waits that long); their sums give the mean.

    The meter's values come from between a query and its reply, so a session surely
    integrates from its first reply to its last query: the coverage is the share of the
    window those spans hold. A reading asked for before t0_s may hold energy from before
    the window and opens nothing. None if no session's integrator advanced.
    """
    spans: dict[int, tuple[Sample, Sample]] = {}
    for s in samples:
        if (s.sent_s >= t0_s and s.t_s <= t1_s + max_lag_s and math.isfinite(s.energy_wh)
                and math.isfinite(s.integrated_s)):
            first = spans.get(s.session, (s, s))[0]
            spans[s.session] = (first, s)
    energy_wh = integrated_s = covered_s = 0.0
    for first, last in spans.values():
        if last.integrated_s > first.integrated_s and last.energy_wh >= first.energy_wh:
            energy_wh += last.energy_wh - first.energy_wh
            integrated_s += last.integrated_s - first.integrated_s
            covered_s += max(0.0, min(last.sent_s, t1_s) - first.t_s)
    if integrated_s <= 0.0:
        return None
    return WindowMean(energy_wh * 3600.0 / integrated_s,
                      min(1.0, covered_s / (t1_s - t0_s)), 2 * len(spans))
