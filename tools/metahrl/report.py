"""Tables (beside the paper's numbers) and figures from the Meta-HRL experiment jobs.

    report.md            the comparison, scaling and ablation tables
    training.png         training reward per iteration, mean +- sd over seeds, per method
    adaptation.png       held-out DU: normalised reward after 0..30 shots, per method

The paper's figures are those of `../shared/FACTS.md` (arXiv 2512.13715 as summarised):
+19.8 % management efficiency over DRL/TL/MTL; adaptive weighting 0.84 vs 0.78 normalised
reward (Uniform-Meta) and 17 vs 28 shots; 7 -> 30 DUs: +69 % iterations, < 2 % reward
variance. "Management efficiency" is not defined in the summary; we compare the normalised
reward on a held-out DU after adaptation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from tools.replay.figures import band, save_figure
from tools.metahrl.experiments import JobResult, Setup, iterations_to_converge, shots_to_converge

COMPARED = ("meta-hrl", "drl", "tl", "mtl", "scratch")
ABLATION = {"uniform-meta": ("Uniform-Meta", "0.78", "28"),
            "static-var": ("Static-Var", "-", "-"),
            "meta-hrl": ("Adaptive-Var, softmin", "0.84", "17"),
            "meta-hrl-softmax": ("Adaptive-Var, softmax", "0.84", "17")}
SHOTS_SHOWN = (0, 5, 30)


def _by(jobs: Iterable[JobResult], setup: Setup) -> dict[str, list[JobResult]]:
    grouped: dict[str, list[JobResult]] = defaultdict(list)
    for job in jobs:
        if job.setup == setup:
            grouped[job.method].append(job)
    return grouped


def _ms(values: Sequence[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ({v.std():.{digits}f})" if len(v) else "-"


def _at(job: JobResult, shot: int) -> float:
    return job.adapt_reward[min(shot, len(job.adapt_reward) - 1)]


def comparison_table(jobs: Sequence[JobResult], setup: Setup) -> str:
    groups = _by(jobs, setup)
    last = setup.shots
    head = ("| method | seeds | " + " | ".join(f"{s} shots" for s in SHOTS_SHOWN)
            + " | Meta-HRL's gain at " + f"{last} shots | iteration (s) |")
    lines = [head, "|" + "---|" * (len(SHOTS_SHOWN) + 4)]
    ours = np.mean([_at(j, last) for j in groups.get("meta-hrl", [])] or [np.nan])
    for method in COMPARED:
        runs = groups.get(method, [])
        if not runs:
            continue
        final = np.mean([_at(j, last) for j in runs])
        gain = "" if method == "meta-hrl" else f"{100 * (ours - final) / final:+.1f} %"
        cells = " | ".join(_ms([_at(j, s) for j in runs]) for s in SHOTS_SHOWN)
        lines.append(f"| {method} | {len(runs)} | {cells} | {gain} | "
                     f"{np.mean([j.iteration_s for j in runs]):.3f} |")
    lines.append("")
    lines.append("Paper: Meta-HRL +19.8 % management efficiency over DRL, TL and MTL. Ours: "
                 "normalised reward on a held-out DU (mean (sd) over seeds).")
    return "\n".join(lines)


def scaling_table(jobs: Sequence[JobResult], method: str = "meta-hrl") -> str:
    rows = sorted({j.setup for j in jobs if j.method == method and j.train_reward},
                  key=lambda s: (s.n_dus, s.n_ues))
    lines = ["| DUs | UEs | seeds | iterations to converge | vs first row | final training "
             "reward | reward sd / mean | iteration (s) |", "|---|---|---|---|---|---|---|---|"]
    base = None
    for setup in rows:
        runs = _by(jobs, setup)[method]
        its = np.mean([iterations_to_converge(np.asarray(j.train_reward)) for j in runs])
        finals = np.array([np.mean(j.train_reward[-max(1, len(j.train_reward) // 10):])
                           for j in runs])
        base = its if base is None else base
        change = "" if its == base or base == 0 else f"{100 * (its - base) / base:+.0f} %"
        spread = finals.std() / abs(finals.mean()) if finals.mean() else float("nan")
        lines.append(f"| {setup.n_dus} | {setup.n_ues} | {len(runs)} | {its:.0f} | {change} | "
                     f"{_ms(finals)} | {100 * spread:.1f} % | "
                     f"{np.mean([j.iteration_s for j in runs]):.3f} |")
    lines.append("")
    lines.append("Paper: 7 -> 30 DUs and 30 -> 200 UEs: +69 % iterations to converge, < 2 % "
                 "reward variance. Convergence: the smoothed training reward has made 95 % "
                 "of its improvement.")
    return "\n".join(lines)


def ablation_table(jobs: Sequence[JobResult], setup: Setup) -> str:
    groups = _by(jobs, setup)
    lines = ["| weighting | seeds | normalised reward, 30 shots | paper | shots to converge "
             "| paper |", "|---|---|---|---|---|---|"]
    for method, (label, paper_reward, paper_shots) in ABLATION.items():
        runs = groups.get(method, [])
        if not runs:
            continue
        shots = [shots_to_converge(np.asarray(j.adapt_reward)) for j in runs]
        lines.append(f"| {label} | {len(runs)} | {_ms([_at(j, setup.shots) for j in runs])} | "
                     f"{paper_reward} | {_ms(shots, 1)} | {paper_shots} |")
    lines.append("")
    lines.append("Shots to converge: the first shot whose reward has made 95 % of the best "
                 "improvement over shot 0 (0 if adaptation never improves).")
    return "\n".join(lines)


def figures(jobs: Sequence[JobResult], setup: Setup, out: Path) -> list[Path]:
    groups = _by(jobs, setup)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in COMPARED:
        runs = [j for j in groups.get(method, []) if j.train_reward]
        if runs:
            curves = np.array([j.train_reward for j in runs])
            width = max(1, curves.shape[1] // 20)
            kernel = np.ones(width) / width
            smooth = np.array([np.convolve(c, kernel, mode="valid") for c in curves])
            band(ax, np.arange(smooth.shape[1]) + width, smooth, method)
    ax.set(xlabel="training iteration", ylabel="mean reward of the collected steps",
           title=f"training on {setup.n_dus} DUs x {setup.n_ues} UEs")
    ax.legend()
    paths.append(save_figure(fig, out / "training.png"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in (*COMPARED, *[m for m in ABLATION if m not in COMPARED]):
        runs = groups.get(method, [])
        if runs:
            curves = np.array([j.adapt_reward for j in runs])
            band(ax, np.arange(curves.shape[1]), curves, method)
    ax.set(xlabel="adaptation shots on the held-out DU", ylabel="normalised reward",
           title="adaptation to a new DU")
    ax.legend()
    paths.append(save_figure(fig, out / "adaptation.png"))
    return paths


def write_report(jobs: Sequence[JobResult], setup: Setup, out: Path) -> Path:
    """report.md with the three tables and the figures of `setup` (the comparison's)."""
    figures(jobs, setup, out)
    text = "\n\n".join([
        f"# Meta-HRL experiments ({setup.n_dus} DUs x {setup.n_ues} UEs, "
        f"{setup.iterations} iterations, {'first' if setup.first_order else 'second'}-order MAML)",
        "## Against the baselines (held-out DU)", comparison_table(jobs, setup),
        "![training](training.png) ![adaptation](adaptation.png)",
        "## Scaling", scaling_table(jobs),
        "## Task weighting (ablation)", ablation_table(jobs, setup)])
    path = out / "report.md"
    path.write_text(text + "\n")
    return path
