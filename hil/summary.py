"""The end-of-run summary: the figures an operator checks before anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.table import Table

from hil.run import RunResult


def summarise(result: RunResult, rounds: pd.DataFrame, top: int = 3) -> Table:
    valid = rounds[rounds["valid"]] if len(rounds) else rounds
    tail = valid.tail(max(1, len(valid) // 10))
    figures = {
        "status": f"{result.outcome.status} ({result.outcome.reason})",
        "rounds recorded": f"{len(rounds)} ({len(rounds) - len(valid)} invalid)",
    }
    if len(valid):
        figures.update({
            "reward, all / last 10%": f"{valid['reward'].mean():.3f} / {tail['reward'].mean():.3f}",
            "power W, all / last 10%":
                f"{valid['power_w'].mean():.2f} / {tail['power_w'].mean():.2f}",
            "DL / UL Mb/s, last 10%":
                f"{tail['dl_rate_mbps'].mean():.1f} / {tail['ul_rate_mbps'].mean():.1f}",
            "energy J": f"{valid['energy_j'].sum():.0f}",
            "cap violations": f"{int(valid['violations'].sum())}",
        })
    gamma = getattr(result.agent, "gamma", None)
    if gamma is not None:
        figures["exploration gamma"] = f"{gamma:.3f}"
    probs = result.agent.probabilities()
    space = result.config.policy_space
    if probs.max() <= 2.0 / len(probs):  # no favourite yet: a ranking would list ties
        figures["policies"] = f"no favourite yet: max probability {probs.max():.4f}"
        top = 0
    for rank, idx in enumerate(np.argsort(probs)[::-1][:top], start=1):
        p = space.policy(int(idx))
        figures[f"policy #{rank} (p={probs[idx]:.3f})"] = (
            f"DL mcs<={p.dl_max_mcs} prb<={p.dl_prb_ratio:g} gain {p.dl_gain_db:g} dB | "
            f"UL mcs<={p.ul_max_mcs} prb<={p.ul_prb_ratio:g}")
    figures["run directory"] = str(result.run_dir.path)

    table = Table(title=f"{result.config.name}: {result.config.agent.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in figures.items():
        table.add_row(key, value)
    return table
