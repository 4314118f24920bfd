"""What `hil compare` reports, from the runs' recorded rounds (`rounds.parquet`).

Per agent, over seeds (mean and sd): each run's mean reward per round (the engine's reward
of the valid rounds), the same over the last 10 % of its rounds (where a learner should
have learnt), its mean power and DL throughput. Per other agent, the paired difference of
the first agent's mean reward minus its own, seed by seed, with a percentile bootstrap 95 %
interval over the seeds: the same seed is the same traffic and channels of the emulator, so
the pairs cancel what the seed's draw does to both. Only seeds at which every agent has a
completed run count, so every figure rests on the same pairs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.recorder import read_rounds
from tools.metahrl.protocol import bootstrap_interval

FIGURES = (("reward", "reward per round"), ("reward_last", "reward, last 10 %"),
           ("power_w", "power W"), ("dl_rate_mbps", "DL Mb/s"))
"""The per-run figures each agent is summarised by, and their headers."""


@dataclass(frozen=True)
class RunFigures:
    agent: str
    seed: int
    run_dir: str
    rounds: int
    invalid_rounds: int
    reward: float
    reward_last: float
    power_w: float
    dl_rate_mbps: float


def run_figures(agent: str, seed: int, run_dir: Path) -> RunFigures:
    """The means of one run's valid rounds."""
    rounds = read_rounds(run_dir)
    valid = rounds[rounds["valid"]]
    tail = valid.tail(max(1, len(valid) // 10))
    return RunFigures(agent, seed, str(run_dir), len(rounds), len(rounds) - len(valid),
                      float(valid["reward"].mean()), float(tail["reward"].mean()),
                      float(valid["power_w"].mean()), float(valid["dl_rate_mbps"].mean()))


@dataclass(frozen=True)
class Comparison:
    config: str
    rounds: int
    agents: tuple[str, ...]  # the first is the reference of the paired differences
    runs: tuple[RunFigures, ...]

    @property
    def seeds(self) -> list[int]:
        """The seeds at which every agent has a run with valid rounds: the pairs."""
        have = [{r.seed for r in self.runs if r.agent == a and r.rounds > r.invalid_rounds}
                for a in self.agents]
        return sorted(set.intersection(*have)) if have else []

    @property
    def unpaired(self) -> list[RunFigures]:
        """Runs left out: their seed lacks a usable run of another agent, or they have no
        valid round."""
        return [r for r in self.runs if r.seed not in self.seeds]

    def invalid_rounds(self, agent: str) -> int:
        return sum(r.invalid_rounds for r in self.runs if r.agent == agent
                   and r.seed in self.seeds)

    def values(self, agent: str, figure: str) -> np.ndarray:
        """One figure of the agent's runs, in the order of `seeds`."""
        by_seed = {r.seed: getattr(r, figure) for r in self.runs if r.agent == agent}
        return np.array([by_seed[s] for s in self.seeds], dtype=float)

    def summary(self) -> list[dict[str, Any]]:
        """Per agent: mean and sd over seeds of every figure; the paired difference of the
        reference's reward minus this agent's, per seed and as mean [95 % interval]."""
        reference = self.values(self.agents[0], "reward")
        rows = []
        for agent in self.agents:
            row: dict[str, Any] = {"agent": agent, "invalid_rounds": self.invalid_rounds(agent)}
            for figure, _ in FIGURES:
                v = self.values(agent, figure)
                row[figure] = {"mean": _mean(v), "sd": _sd(v)}
            if agent != self.agents[0]:
                d = reference - self.values(agent, "reward")
                mean, low, high = bootstrap_interval(d)
                row["paired"] = {"per_seed": d.tolist(), "mean": mean, "low": low, "high": high}
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "rounds": self.rounds, "seeds": self.seeds,
                "reference": self.agents[0], "agents": self.summary(),
                "runs": [asdict(r) for r in self.runs],
                "unpaired_runs": [r.run_dir for r in self.unpaired]}


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if len(v) else float("nan")


def _sd(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows, as text."""
    header = ["agent", *(label for _, label in FIGURES), "invalid rounds",
              f"{comparison.agents[0]} minus it (95 % interval)"]
    rows = []
    for row in comparison.summary():
        cells = [row["agent"], *(f"{row[f]['mean']:.3f} ({row[f]['sd']:.3f})"
                                 for f, _ in FIGURES), str(row["invalid_rounds"])]
        paired = row.get("paired")
        cells.append("" if paired is None else
                     f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]")
        rows.append(cells)
    return header, rows


def table(comparison: Comparison) -> str:
    """The summary as a Markdown table: what compare.md opens with and the command prints (as
    plain text it reads in a log and pastes into a README, at any width)."""
    header, rows = _cells(comparison)
    return "\n".join([_md_row(header), _md_row(["---"] * len(header)),
                      *(_md_row(r) for r in rows)])


def title(comparison: Comparison) -> str:
    return (f"{Path(comparison.config).name}: {comparison.rounds} rounds, "
            f"{len(comparison.seeds)} paired seeds; mean (sd) over seeds")


def markdown(comparison: Comparison) -> str:
    lines = [f"# Online comparison: {title(comparison)}", "",
             "Reward: the engine's (throughput utility minus weighted power, in [0, 1]), mean "
             "per valid round of a run; the paired difference is per seed (the same traffic "
             "and channels), its interval a percentile bootstrap over the seeds.", "",
             table(comparison), "",
             "Mean reward per round, per seed:", "",
             _md_row(["seed", *comparison.agents]),
             _md_row(["---"] * (len(comparison.agents) + 1))]
    for k, seed in enumerate(comparison.seeds):
        lines.append(_md_row([str(seed), *(f"{comparison.values(a, 'reward')[k]:.4f}"
                                           for a in comparison.agents)]))
    if comparison.unpaired:
        lines += ["", "Left out (no valid round, or no pair at their seed): " + ", ".join(
            f"{r.agent} seed {r.seed}" for r in comparison.unpaired)]
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def write(out: Path, comparison: Comparison) -> tuple[Path, Path]:
    """`compare.md` and `compare.json` in `out`."""
    md, js = out / "compare.md", out / "compare.json"
    md.write_text(markdown(comparison))
    js.write_text(json.dumps(comparison.to_json(), indent=2))
    return md, js
