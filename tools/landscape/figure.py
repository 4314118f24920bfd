"""The side-by-side figure: measured against emulated reward of every policy, one panel per
condition and reward weight, the diagonal and the measured best marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tools.landscape.compare import ConditionLandscape  # noqa: E402


def landscape_figure(results: list[ConditionLandscape], title: str, path: Path) -> Path:
    conditions = sorted({r.condition for r in results})
    deltas = sorted({r.delta for r in results})
    fig, axes = plt.subplots(len(deltas), len(conditions), squeeze=False,
                             figsize=(3.4 * len(conditions), 3.2 * len(deltas)))
    for r in results:
        ax = axes[deltas.index(r.delta)][conditions.index(r.condition)]
        ax.errorbar(r.emulated, r.measured, yerr=2 * r.measured_se, fmt="o", ms=3, alpha=0.6,
                    elinewidth=0.6)
        best = r.measured_best
        ax.plot(r.emulated[best], r.measured[best], "r*", ms=11, label="measured best")
        low = min(r.emulated.min(), r.measured.min())
        high = max(r.emulated.max(), r.measured.max())
        ax.plot([low, high], [low, high], "k:", lw=0.8)
        label = r.label.replace(", DL SNR", "\nDL SNR")  # two lines: the panels sit close
        ax.set_title(f"{label}\ndelta {r.delta:g}: rho {r.spearman:.2f}", fontsize=7)
        ax.set_xlabel("emulated reward", fontsize=7)
        ax.set_ylabel("measured reward", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
