"""The run summary figure: what happened, at a glance.

Top: reward per round and its moving average. Middle: power and throughput. Bottom: the
agent's probability over every policy at the end of the run, laid out as the paper's
Fig. 2b: DL settings (gain, MCS cap, PRB cap) down, UL settings (MCS cap, PRB cap) across.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on CI and over SSH without a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from agents.policy_space import PolicySpace


def _smooth(series: pd.Series) -> pd.Series:
    window = max(1, len(series) // 50)
    return series.rolling(window, min_periods=1).mean()


def probability_grid(probs: np.ndarray, space: PolicySpace) -> np.ndarray:
    """(DL settings, UL settings) matrix of a probability vector in policy-index order."""
    g, md, bd, mu, bu = space.shape
    return np.asarray(probs).reshape(g * md * bd, mu * bu)


def summary_figure(rounds: pd.DataFrame, probs: np.ndarray, space: PolicySpace, title: str,
                   path: Path) -> Path:
    fig, (ax_r, ax_p, ax_h) = plt.subplots(
        3, 1, figsize=(9, 11), gridspec_kw={"height_ratios": [1, 1, 1.6]})
    fig.suptitle(title)
    valid = rounds[rounds["valid"]]

    ax_r.plot(valid["round"], valid["reward"], ".", ms=1.5, alpha=0.3, color="tab:blue")
    ax_r.plot(valid["round"], _smooth(valid["reward"]), color="tab:blue", label="reward (avg)")
    invalid = rounds[~rounds["valid"]]
    if len(invalid):
        ax_r.plot(invalid["round"], np.zeros(len(invalid)), "x", color="tab:red",
                  label=f"invalid rounds ({len(invalid)})")
    ax_r.set(ylabel="reward f in [0, 1]", ylim=(-0.05, 1.05))
    ax_r.legend(loc="lower right")

    power_line = ax_p.plot(valid["round"], _smooth(valid["power_w"]), color="tab:red",
                           label="power (W)")
    ax_p.set_ylabel("power (W)", color="tab:red")
    ax_t = ax_p.twinx()
    rate_lines = [
        *ax_t.plot(valid["round"], _smooth(valid["dl_rate_mbps"]), color="tab:green",
                   label="DL Mb/s"),
        *ax_t.plot(valid["round"], _smooth(valid["ul_rate_mbps"]), color="tab:olive",
                   label="UL Mb/s"),
    ]
    ax_t.set_ylabel("throughput (Mb/s)")
    ax_t.legend(handles=[*power_line, *rate_lines], loc="lower right")
    ax_p.set_xlabel("round")

    grid = probability_grid(probs, space)
    im = ax_h.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest", vmin=0)
    fig.colorbar(im, ax=ax_h, label="selection probability at the end")
    ax_h.set(xlabel="UL policy (max MCS x PRB ratio)",
             ylabel="DL policy (gain x max MCS x PRB ratio)")
    _, _, bd, mu, bu = space.shape
    ax_h.set_xticks(np.arange(0, mu * bu, bu), [f"M{m}" for m in space.ul_max_mcs])
    ax_h.set_yticks(np.arange(0, grid.shape[0], bd),
                    [f"M{m}" for _ in space.dl_gain_db for m in space.dl_max_mcs])
    if grid.max() > 2.0 / grid.size:  # mark the favourite only once there is one
        best = np.unravel_index(np.argmax(grid), grid.shape)
        ax_h.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, ec="red"))

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
