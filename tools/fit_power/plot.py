"""The residual plot of a power fit: is the form right, and where does it miss?

Left: measured against predicted power, one point per cell, on the identity line if the fit
is perfect. Right: residuals against predicted power, where structure (a curve, a fan) means
the form misses something the testbed does, and plain noise means it does not.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on CI and over SSH without a display
import matplotlib.pyplot as plt
import numpy as np

from tools.fit_power.fit import PowerFit


def residual_figure(fit: PowerFit, title: str, path: Path) -> Path:
    fig, (ax_fit, ax_res) = plt.subplots(1, 2, figsize=(10, 4.2))
    fig.suptitle(title)
    lo, hi = float(fit.observed_w.min()), float(fit.observed_w.max())
    ax_fit.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax_fit.plot(fit.predicted_w, fit.observed_w, ".", ms=4, alpha=0.6)
    ax_fit.set_xlabel("predicted power (W)")
    ax_fit.set_ylabel("measured power (W)")
    ax_fit.set_title(f"R$^2$ = {fit.r2:.5f}")

    ax_res.axhline(0, color="0.6", lw=1)
    ax_res.plot(fit.predicted_w, fit.residual_w * 1000, ".", ms=4, alpha=0.6)
    ax_res.set_xlabel("predicted power (W)")
    ax_res.set_ylabel("measured - predicted (mW)")
    ax_res.set_title(f"RMSE = {fit.rmse_w * 1000:.2f} mW, max |r| = "
                     f"{np.abs(fit.residual_w).max() * 1000:.1f} mW")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
