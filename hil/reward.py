"""The reward of the BSvBS paper (Kalntis et al., eqs. 1-3), the one place it is computed.

    U  = log(1 + R_d / d_d) + log(1 + R_u / d_u)      (a direction with d = 0 adds 0)
    f~ = U - delta * p,    p = (P - power_min_w) / (power_max_w - power_min_w) clipped to [0, 1]
    f  = (f~ - f~_min) / (f~_max - f~_min),   f~_min = -delta,  f~_max = 2 log 2

Power enters normalised to [0, 1] by declared bounds so that delta trades a share of the
testbed's power range against utility, whatever the testbed's absolute watts; the paper
leaves the scale to the operator and uses delta = 1.5. The demand d is the backlog at the
window start plus what arrived during it, so R <= d and U <= 2 log 2 by construction:
the declared bounds hold and f stays in [0, 1] (it is clipped anyway, for a meter spike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UTILITY_MAX = 2 * float(np.log(2.0))


@dataclass(frozen=True)
class RewardParams:
    delta: float
    power_min_w: float
    power_max_w: float

    def __post_init__(self) -> None:
        if self.delta < 0:
            raise ValueError("delta must be >= 0")
        if not self.power_max_w > self.power_min_w:
            raise ValueError("power_max_w must be greater than power_min_w")


def utility(rate_dl, demand_dl, rate_ul, demand_ul):
    """log(1 + R/d) per direction, 0 where the demand is 0; broadcasts over arrays."""

    def one(rate, demand):
        rate, demand = np.asarray(rate, float), np.asarray(demand, float)
        ratio = np.divide(rate, demand, out=np.zeros(np.broadcast(rate, demand).shape),
                          where=demand > 0)
        return np.log1p(np.clip(ratio, 0.0, 1.0))

    return one(rate_dl, demand_dl) + one(rate_ul, demand_ul)


def normalised_power(power_w, params: RewardParams):
    span = params.power_max_w - params.power_min_w
    return np.clip((np.asarray(power_w, float) - params.power_min_w) / span, 0.0, 1.0)


def raw_reward(util, power_w, params: RewardParams):
    """f~ = U - delta * normalised power."""
    return np.asarray(util, float) - params.delta * normalised_power(power_w, params)


def scaled_reward(raw, params: RewardParams):
    """f in [0, 1] from f~ with the declared bounds f~_min = -delta, f~_max = 2 log 2."""
    low, high = -params.delta, UTILITY_MAX
    return np.clip((np.asarray(raw, float) - low) / (high - low), 0.0, 1.0)


def reward(rate_dl, demand_dl, rate_ul, demand_ul, power_w, params: RewardParams):
    """(utility, f~, f) for one round or arrays of rounds."""
    u = utility(rate_dl, demand_dl, rate_ul, demand_ul)
    raw = raw_reward(u, power_w, params)
    return u, raw, scaled_reward(raw, params)
