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
from tools.metahrl.experiments import (
    JobResult,
    Setup,
    iterations_to_converge,
    shots_to_converge,
    trains,
)
from tools.metahrl.protocol import Baselines, bootstrap_interval, load_or_compute

COMPARED = ("meta-hrl", "drl", "tl", "mtl", "scratch")
ABLATION = {"uniform-meta": ("Uniform-Meta", "0.78", "28"),
            "static-var": ("Static-Var", "-", "-"),
            "meta-hrl": ("Adaptive-Var, softmin", "0.84", "17"),
            "meta-hrl-softmax": ("Adaptive-Var, softmax", "0.84", "17")}
SHOTS_SHOWN = (0, 5, 30)
PROTOCOL = (
    "Protocol: every method trains on the same DUs and is adapted to, and scored on, the same "
    "held-out DUs (`tools/metahrl/protocol.py`); a seed changes only a learner's weights and "
    "noise. Scores per held-out DU: 0 the equal split at full power, 1 the best constant "
    "slice split searched on that DU. Differences are paired per (seed, DU), with bootstrap "
    "95 % intervals.")


def _by(jobs: Iterable[JobResult], setup: Setup) -> dict[str, list[JobResult]]:
    grouped: dict[str, list[JobResult]] = defaultdict(list)
    for job in jobs:
        if job.setup == setup:
            grouped[job.method].append(job)
    return grouped


def _ms(values: Sequence[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ({v.std():.{digits}f})" if len(v) else "-"


def _ci(mean: float, low: float, high: float) -> str:
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def scores(runs: Sequence[JobResult], baselines: Baselines) -> np.ndarray:
    """(seeds, held-out DUs, shots + 1): each job's per-DU curves as scores."""
    return np.array([[[baselines.score(r, du) for r in curve]
                      for du, curve in enumerate(job.adapt_reward)] for job in runs])


def _shot(curves: np.ndarray, shot: int) -> np.ndarray:
    return curves[..., min(shot, curves.shape[-1] - 1)]


def comparison_table(jobs: Sequence[JobResult], setup: Setup, baselines: Baselines) -> str:
    """Scores on the held-out DUs of every learned and fixed scheduler, and Meta-HRL's
    paired difference to each, with bootstrap intervals."""
    groups = _by(jobs, setup)
    shot_head = " | ".join(f"{s} shots" for s in SHOTS_SHOWN)
    lines = [f"| scheduler | runs | {shot_head} | iteration (s) |",
             "|---|---|" + "---|" * len(SHOTS_SHOWN) + "---|"]
    learned = {m: scores(groups[m], baselines) for m in COMPARED if groups.get(m)}
    for method, curves in learned.items():
        # sd over seeds of each seed's mean over the DUs: the learner's own spread
        cells = " | ".join(_ms(_shot(curves, s).mean(axis=1)) for s in SHOTS_SHOWN)
        lines.append(f"| {method} | {curves.shape[0]} seeds x {curves.shape[1]} DUs | {cells} | "
                     f"{np.mean([j.iteration_s for j in groups[method]]):.3f} |")
    fixed = {name: baselines.scores(rewards) for name, rewards in baselines.fixed.items()}
    for name, per_du in fixed.items():
        cell = f"{per_du.mean():.3f} (DUs: {per_du.std():.3f})"
        lines.append(f"| {name} | {len(per_du)} DUs | " + " | ".join([cell] * len(SHOTS_SHOWN))
                     + " | - |")
    lines += ["", "Score per held-out DU: 0 is the equal split at full power, 1 the best "
              "constant slice split searched on that DU itself. Learned: mean (sd over seeds "
              "of the mean over DUs); fixed schedulers learn nothing, so every shot is the "
              "same (sd over DUs).", ""]
    if "meta-hrl" not in learned:
        return "\n".join(lines)
    ours = learned["meta-hrl"]
    lines += [f"| Meta-HRL minus | {shot_head} | reward gain at {setup.shots} shots |",
              "|---|" + "---|" * len(SHOTS_SHOWN) + "---|"]
    ours_reward = np.mean([np.array(j.adapt_reward)[:, -1] for j in groups["meta-hrl"]])
    others = {**{m: c for m, c in learned.items() if m != "meta-hrl"},
              **{name: np.broadcast_to(per_du[None, :, None], (1, len(per_du), 1))
                 for name, per_du in fixed.items()}}
    for name, curves in others.items():
        cells = []
        for shot in SHOTS_SHOWN:
            mine, theirs = _shot(ours, shot), _shot(curves, shot)
            cells.append(_ci(*bootstrap_interval(mine - theirs)))  # theirs: (1, DUs) if fixed
        theirs_reward = (np.mean([np.array(j.adapt_reward)[:, -1] for j in groups[name]])
                         if name in learned else float(np.mean(baselines.fixed[name])))
        gain = 100 * (ours_reward - theirs_reward) / abs(theirs_reward)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gain:+.1f} % |")
    lines += ["", "Paired per (seed, held-out DU): score differences, mean [bootstrap 95 % "
              "interval]; against a fixed scheduler each seed is paired with the same DU. "
              "Paper: Meta-HRL +19.8 % management efficiency over DRL, TL and MTL (the "
              "summary does not define it; the last column is the gain in mean reward)."]
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


GATE_INNER_STEP = 0.05
GATE_COSINE = 0.9
GATE_HEADROOM = 0.5


def gates_table(jobs: Sequence[JobResult], setup: Setup, baselines: Baselines) -> str:
    """The conditions under which the comparison below means anything, each measured."""
    groups, last = _by(jobs, setup), setup.shots
    rows: list[tuple[str, str, str, bool]] = []
    for method, runs in groups.items():
        if not trains(method):
            continue
        mean, low, high = bootstrap_interval(_shot(scores(runs, baselines), last))
        rows.append((f"{method} beats the equal split at {last} shots", _ci(mean, low, high),
                     "interval above 0", low > 0))
    meta = groups.get("meta-hrl", [])
    if meta:
        moved = float(np.nanmean([j.inner_action_change for j in meta]))
        rows.append(("MAML's inner step moves the actions", f"{moved:.4f}",
                     f">= {GATE_INNER_STEP}", moved >= GATE_INNER_STEP))
        cosine = float(np.nanmean([j.weighting_cosine for j in meta]))
        rows.append(("the task weights change the meta-gradient (cosine of weighted and "
                     "uniform)", f"{cosine:.4f}", f"< {GATE_COSINE}", cosine < GATE_COSINE))
    if groups.get("scratch"):
        curves = scores(groups["scratch"], baselines).reshape(-1, last + 1)
        headroom = 1.0 - curves[:, 0]
        room = headroom > 1e-9
        share = float(np.mean((curves[room, -1] - curves[room, 0]) / headroom[room])) \
            if room.any() else float("nan")
        rows.append((f"an untrained model recovers the headroom to the best constant split "
                     f"in {last} shots", f"{share:.3f}", f">= {GATE_HEADROOM}",
                     share >= GATE_HEADROOM))
    lines = ["| gate | measured | needs | result |", "|---|---|---|---|"]
    lines += [f"| {g} | {m} | {n} | {'passed' if ok else '**FAILED**'} |"
              for g, m, n, ok in rows]
    lines += ["", "A comparison below a failed gate shows only that the learning failed, not "
              "which method is better."]
    return "\n".join(lines)


def ablation_table(jobs: Sequence[JobResult], setup: Setup, baselines: Baselines) -> str:
    groups = _by(jobs, setup)
    lines = ["| weighting | runs | score, 30 shots | paper (normalised reward) | shots to "
             "converge | paper |", "|---|---|---|---|---|---|"]
    for method, (label, paper_reward, paper_shots) in ABLATION.items():
        runs = groups.get(method, [])
        if not runs:
            continue
        curves = scores(runs, baselines)
        shots = [shots_to_converge(c) for seed in curves for c in seed]
        lines.append(f"| {label} | {curves.shape[0]} seeds x {curves.shape[1]} DUs | "
                     f"{_ms(_shot(curves, setup.shots).mean(axis=1))} | {paper_reward} | "
                     f"{_ms(shots, 1)} | {paper_shots} |")
    lines.append("")
    lines.append("Shots to converge: per (seed, DU), the first shot whose score has made 95 % "
                 "of the best improvement over shot 0 (0 if adaptation never improves).")
    return "\n".join(lines)


def figures(jobs: Sequence[JobResult], setup: Setup, baselines: Baselines,
            out: Path) -> list[Path]:
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
            curves = scores(runs, baselines).mean(axis=1)  # each seed's mean over the DUs
            band(ax, np.arange(curves.shape[1]), curves, method)
    for name, rewards in baselines.fixed.items():
        ax.axhline(float(baselines.scores(rewards).mean()), ls=":", lw=1, label=name)
    ax.set(xlabel="adaptation shots on the held-out DUs", ylabel="score (0: equal split, "
           "1: the DU's best constant split)", title="adaptation to new DUs")
    ax.legend()
    paths.append(save_figure(fig, out / "adaptation.png"))
    return paths


def write_report(jobs: Sequence[JobResult], setup: Setup, out: Path) -> Path:
    """report.md with the tables and the figures of `setup` (the comparison's)."""
    baselines = load_or_compute(out, setup.pools)
    figures(jobs, setup, baselines, out)
    text = "\n\n".join([
        f"# Meta-HRL experiments ({setup.n_dus} DUs x {setup.n_ues} UEs, "
        f"{setup.iterations} iterations, {'first' if setup.first_order else 'second'}-order MAML)",
        PROTOCOL,
        "## Gates", gates_table(jobs, setup, baselines),
        "## Against the baselines (held-out DUs)", comparison_table(jobs, setup, baselines),
        "![training](training.png) ![adaptation](adaptation.png)",
        "## Scaling", scaling_table(jobs),
        "## Task weighting (ablation)", ablation_table(jobs, setup, baselines)])
    path = out / "report.md"
    path.write_text(text + "\n")
    return path
