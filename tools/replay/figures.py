"""The replay's figures, in the style of the paper's (matplotlib, PNG, one file each).

    regret.png          R_t / t of every agent with the Lemma 1 bound (Figs. 2a, 4, 6a, 8a)
    power.png           excess power over the benchmark policy (Fig. 6b)
    decision-time.png   time to decide per round over t (Fig. 7)
    reward.png          average reward per interval (Fig. 9a)
    metbs-shares.png    which child a meta-learner delegated to, over t (Figs. 8b, 9b)
    policies.png        final selection probability over the policy grid (Fig. 2b)

Curves are means over seeds; shaded bands span +-1 standard deviation across seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from agents.policy_space import PolicySpace
from hil.plots import probability_grid
from tools.replay import metrics
from tools.replay.metrics import AgentRuns, Replay


def band(ax, x: np.ndarray, per_seed: np.ndarray, label: str) -> None:
    mean, sd = per_seed.mean(axis=0), per_seed.std(axis=0)
    (line,) = ax.plot(x, mean, label=label)
    ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def regret_figure(replay: Replay, path: Path) -> Path:
    at = replay.benchmark.rounds
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 0.0
    for runs in replay.agents.values():
        curve = metrics.regret(replay, runs) / at
        band(ax, at, curve, runs.name)
        top = max(top, float(curve.mean(axis=0)[len(at) // 10:].max()))
    bound = metrics.regret_bound(replay.n_actions, at) / at
    top = max(1.2 * top, 1e-3)
    label = "bound, Lemma 1 eq. (8)"
    if bound.min() > top:  # K ln K large against t: the bound exceeds every curve here
        label += f" (>= {bound.min():.2f}, above this axis)"
    ax.plot(at, bound, "k--", label=label)
    ax.set(xlabel="round t", ylabel="R_t / t", ylim=(0, top),
           title=f"average regret against the best fixed policy (K = {replay.n_actions})")
    ax.legend()
    return save_figure(fig, path)


def _curves(replay: Replay, path: Path, per_seed: Callable[[AgentRuns], np.ndarray], *,
            ylabel: str, title: str, yscale: str = "linear") -> Path:
    """One curve (mean over seeds, +-1 sd band) per agent over the checkpoints."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for runs in replay.agents.values():
        band(ax, replay.benchmark.rounds, per_seed(runs), runs.name)
    ax.set(xlabel="round t", ylabel=ylabel, title=title, yscale=yscale)
    ax.legend()
    return save_figure(fig, path)


def power_figure(replay: Replay, path: Path) -> Path:
    return _curves(replay, path, lambda runs: metrics.excess_power_w(replay, runs),
                   ylabel="mean power above the benchmark policy's (W)",
                   title="power against the best fixed policy in hindsight")


def decision_time_figure(replay: Replay, path: Path) -> Path:
    at = replay.benchmark.rounds
    return _curves(replay, path, lambda runs: metrics.window_mean(runs.select_us, at) / 1e3,
                   ylabel="time to decide (ms, mean per interval)", yscale="log",
                   title="decision time per round (select), this machine")


def reward_figure(replay: Replay, path: Path) -> Path:
    at = replay.benchmark.rounds
    return _curves(replay, path, lambda runs: metrics.window_mean(runs.reward, at),
                   ylabel="average reward f per interval", title="reward over time")


def shares_figure(replay: Replay, path: Path) -> Path | None:
    """One panel per agent that named children in Decision.info; None if none did."""
    meta = [r for r in replay.agents.values() if r.child_names]
    if not meta:
        return None
    at = replay.benchmark.rounds
    fig, axes = plt.subplots(len(meta), 1, figsize=(7, 3.5 * len(meta)), squeeze=False)
    for ax, runs in zip(axes[:, 0], meta):
        shares = metrics.child_shares(runs, at)
        ax.stackplot(at, shares, labels=runs.child_names, alpha=0.8)
        ax.set(xlabel="round t", ylabel="share of rounds", ylim=(0, 1),
               title=f"{runs.name}: child chosen per interval")
        ax.legend(loc="lower right")
    return save_figure(fig, path)


def policies_figure(replay: Replay, space: PolicySpace, path: Path) -> Path | None:
    """Final probabilities (mean over seeds) on the grid, for agents over the whole space
    that favour some policies (a uniform map, e.g. Random's, says nothing)."""
    agents = [r for r in replay.agents.values()
              if r.final_probs.shape[1] == space.size and np.ptp(r.final_probs.mean(axis=0)) > 0]
    if not agents:
        return None
    fig, axes = plt.subplots(len(agents), 1, figsize=(8, 3.2 * len(agents)), squeeze=False)
    _, _, bd, mu, bu = space.shape
    for ax, runs in zip(axes[:, 0], agents):
        grid = probability_grid(runs.final_probs.mean(axis=0), space)
        im = ax.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest", vmin=0)
        fig.colorbar(im, ax=ax, label="probability at the end")
        ax.set_xticks(np.arange(0, mu * bu, bu), [f"M{m}" for m in space.ul_max_mcs])
        ax.set_yticks(np.arange(0, grid.shape[0], bd),
                      [f"M{m}" for _ in space.dl_gain_db for m in space.dl_max_mcs])
        ax.set(title=runs.name, xlabel="UL policy (max MCS x PRB ratio)",
               ylabel="DL policy (max MCS x PRB ratio)")
    return save_figure(fig, path)


def all_figures(replay: Replay, space: PolicySpace | None, out: Path) -> list[Path]:
    made = [regret_figure(replay, out / "regret.png"), power_figure(replay, out / "power.png"),
            decision_time_figure(replay, out / "decision-time.png"),
            reward_figure(replay, out / "reward.png"),
            shares_figure(replay, out / "metbs-shares.png")]
    if space is not None:
        made.append(policies_figure(replay, space, out / "policies.png"))
    return [p for p in made if p is not None]
