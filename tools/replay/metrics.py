"""What a replay measured, computed from its saved files (so a report never re-runs agents).

Definitions (t = rounds played so far, f_s(x) the reward of policy x in round s):

- regret R_t = max_x sum_{s<=t} f_s(x) - sum_{s<=t} f_s(x_s): against the best *fixed*
  policy in hindsight up to t, as the paper's static regret (4); `R_t / t` is plotted.
- bound: Lemma 1, eq. (8), 2 sqrt(e - 1) sqrt(t K ln K), evaluated at each t.
- benchmark: the best fixed policy in hindsight over the whole horizon, x*, per seed.
  Excess power = mean over s <= t of P_s(x_s) - P_s(x*) (W).
- energy, as the paper's Fig. 6b measures it (Sec. VI-C: "w.r.t. the ideal-minimum-energy
  of the benchmark, where the power consumption of the idle user is subtracted"; the
  formulas are our reading, the paper gives none): with P_idle the power with nothing
  scheduled and P_min,s = min_x P_s(x) the ideal minimum of round s (an oracle),
  * energy above the ideal, per agent: (sum_s P_s(x_s) - sum_s P_min,s) /
    (sum_s P_min,s - P_idle), in % of the ideal's energy above idle;
  * the power saving of agent A against agent B: (E_B - E_A) / E_B with E = sum_s
    (P_s(x_s) - P_idle), in % of B's energy above idle, paired per seed.
- decision time: `select` alone (the paper's inference time) and select + update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.bsvbs import exp3_regret_bound
from tools.replay.runner import ReplayError, env_path, result_path


@dataclass(frozen=True)
class AgentRuns:
    """One agent's saved rounds over the seeds it finished: arrays (seeds, rounds)."""

    name: str
    seeds: list[int]
    action: np.ndarray
    reward: np.ndarray
    power_w: np.ndarray
    select_us: np.ndarray
    update_us: np.ndarray
    child: np.ndarray
    """Index into `child_names` of the child that decided each round; -1: none named."""
    child_names: list[str]
    final_probs: np.ndarray


@dataclass(frozen=True)
class Benchmark:
    """Every policy's cumulative reward and power at the checkpoints: (seeds, points, K)."""

    seeds: list[int]
    rounds: np.ndarray
    policy_reward: np.ndarray
    policy_power_w: np.ndarray
    min_power_w: np.ndarray
    """(seeds, points): cumulative per-round minimum power over all policies."""
    idle_power_w: np.ndarray
    """(seeds,) power with nothing scheduled (NaN: the source does not know it)."""
    max_reward: np.ndarray
    """(seeds, points): cumulative per-round maximum reward over all policies."""


@dataclass(frozen=True)
class Replay:
    spec: dict
    agents: dict[str, AgentRuns]
    benchmark: Benchmark
    """The rounds' benchmark side; where each agent met its own rounds (C-adaptive), the
    first agent's, for the report's description of the landscape."""
    own_benchmarks: dict[str, Benchmark] = field(default_factory=dict)
    """Per agent, where its rounds depended on its play: every metric of it uses its own."""

    @property
    def n_actions(self) -> int:
        return self.benchmark.policy_reward.shape[-1]

    def benchmark_of(self, runs: AgentRuns) -> Benchmark:
        return self.own_benchmarks.get(runs.name, self.benchmark)


def load_replay(out: Path) -> Replay:
    """Read what a replay saved in `out`; agents with no finished seed are left out."""
    spec_file = out / "spec.json"
    if not spec_file.exists():
        raise ReplayError(f"{out} holds no replay (no spec.json); run hil replay --out {out}")
    spec = json.loads(spec_file.read_text())
    agents, own = {}, {}
    for name in spec["agents"]:
        adaptive = (out / "env" / name).is_dir()
        seeds = [s for s in spec["seeds"] if result_path(out, name, s).exists()
                 and env_path(out, s, name if adaptive else None).exists()]
        if seeds:
            agents[name] = _load_agent(out, name, seeds)
            if adaptive:
                own[name] = _load_benchmark(out, seeds, name)
    shared = [s for s in spec["seeds"] if env_path(out, s).exists()]
    if shared:
        benchmark = _load_benchmark(out, shared, None)
    elif own:
        benchmark = next(iter(own.values()))
    else:
        raise ReplayError(f"{out}: no seed has finished yet; run the replay again to continue")
    return Replay(spec, agents, benchmark, own)


def _load_benchmark(out: Path, seeds: list[int], agent: str | None) -> Benchmark:
    envs = [np.load(env_path(out, s, agent)) for s in seeds]

    def per_point(name: str) -> np.ndarray:  # NaN where an older replay did not save it
        return np.stack([e[name] if name in e else np.full(len(e["rounds"]), np.nan)
                         for e in envs])

    return Benchmark(seeds, envs[0]["rounds"],
                     np.stack([e["policy_reward"] for e in envs]),
                     np.stack([e["policy_power_w"] for e in envs]),
                     per_point("min_power_w"),
                     np.array([float(e["idle_power_w"]) if "idle_power_w" in e
                               else np.nan for e in envs]),
                     per_point("max_reward"))


def _load_agent(out: Path, name: str, seeds: list[int]) -> AgentRuns:
    files = [np.load(result_path(out, name, s)) for s in seeds]
    names: list[str] = []
    children = []
    for f in files:  # child codes are per seed: map them onto one list of names
        local = [str(n) for n in f["child_names"]]
        for n in local:
            if n not in names:
                names.append(n)
        lookup = np.array([names.index(n) for n in local] + [-1], dtype=np.int16)
        children.append(lookup[f["child"]])  # code -1 picks the appended -1
    stack = {key: np.stack([f[key] for f in files]) for key in (
        "action", "reward", "power_w", "select_us", "update_us", "final_probs")}
    return AgentRuns(name, seeds, child=np.stack(children), child_names=names, **stack)


# ------------------------------------------------------------------------------ curves
def _seed_rows(replay: Replay, runs: AgentRuns) -> tuple[Benchmark, np.ndarray]:
    """The benchmark `runs` is measured against, and its rows of `runs`' seeds."""
    bench = replay.benchmark_of(runs)
    return bench, np.array([bench.seeds.index(s) for s in runs.seeds])


def regret(replay: Replay, runs: AgentRuns) -> np.ndarray:
    """R_t per seed at each checkpoint: (seeds, points)."""
    bench, rows = _seed_rows(replay, runs)
    at = bench.rounds
    best = bench.policy_reward[rows].max(axis=2)
    return best - np.cumsum(runs.reward, axis=1, dtype=np.float64)[:, at - 1]


def regret_bound(n_actions: int, rounds: np.ndarray) -> np.ndarray:
    """Lemma 1, eq. (8), at each t."""
    return np.array([exp3_regret_bound(n_actions, int(t)) for t in rounds])


def oracle_gain_per_round(replay: Replay) -> np.ndarray:
    """Per seed: what an oracle playing each round's best policy earns per round above the
    best fixed policy in hindsight. Near 0, no learner can gain by tracking contexts, and
    a fixed policy (or Greedy) is as good as any; the paper's adversarial claims need it
    well above the learners' regrets."""
    horizon = int(replay.benchmark.rounds[-1])
    best_fixed = replay.benchmark.policy_reward[:, -1, :].max(axis=1)
    return (replay.benchmark.max_reward[:, -1] - best_fixed) / horizon


def benchmark_policy(bench: Benchmark) -> np.ndarray:
    """x*, the best fixed policy in hindsight over the whole horizon, per seed."""
    return bench.policy_reward[:, -1, :].argmax(axis=1)


def excess_power_w(replay: Replay, runs: AgentRuns) -> np.ndarray:
    """Mean power above the benchmark's over rounds <= t, per seed: (seeds, points)."""
    bench, rows = _seed_rows(replay, runs)
    at = bench.rounds
    best = benchmark_policy(bench)[rows]
    best_power = np.take_along_axis(bench.policy_power_w[rows],
                                    best[:, None, None], axis=2)[:, :, 0]
    mine = np.cumsum(runs.power_w, axis=1, dtype=np.float64)[:, at - 1]
    return (mine - best_power) / at


def benchmark_power_w(replay: Replay) -> np.ndarray:
    """The benchmark's mean power over the horizon, per seed."""
    best = benchmark_policy(replay.benchmark)
    power = replay.benchmark.policy_power_w[np.arange(len(best)), -1, best]
    return power / replay.benchmark.rounds[-1]


def energy_above_idle_j(replay: Replay, runs: AgentRuns) -> np.ndarray:
    """sum_s (P_s(x_s) - P_idle) over the horizon, per seed of `runs` (W x rounds)."""
    bench, rows = _seed_rows(replay, runs)
    idle = bench.idle_power_w[rows]
    return runs.power_w.sum(axis=1, dtype=np.float64) - idle * runs.power_w.shape[1]


def energy_over_ideal_pct(replay: Replay, runs: AgentRuns) -> np.ndarray:
    """Energy above the ideal minimum, in % of the ideal's energy above idle, per seed."""
    bench, rows = _seed_rows(replay, runs)
    horizon = runs.power_w.shape[1]
    ideal = bench.min_power_w[rows, -1]
    mine = runs.power_w.sum(axis=1, dtype=np.float64)
    above_idle = ideal - bench.idle_power_w[rows] * horizon
    return 100.0 * (mine - ideal) / above_idle


def power_saving_pct(replay: Replay, mine: AgentRuns, other: AgentRuns) -> tuple[float, float]:
    """`mine`'s power saving against `other`, in % of other's energy above idle, paired on
    the seeds both finished: mean and the half-width of a normal 95 % interval."""
    common = sorted(set(mine.seeds) & set(other.seeds))
    if not common:
        return float("nan"), float("nan")
    pick = [[runs.seeds.index(s) for s in common] for runs in (mine, other)]
    e_mine = energy_above_idle_j(replay, mine)[pick[0]]
    e_other = energy_above_idle_j(replay, other)[pick[1]]
    return mean_interval(100.0 * (e_other - e_mine) / e_other)


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """Mean over seeds and the half-width of a normal 95 % interval (NaN from one seed)."""
    values = np.asarray(values, dtype=float)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return float(values.mean()), float(half)


def window_mean(values: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """Mean of per-round values (seeds, T) over each interval between checkpoints."""
    edges = np.concatenate([[0], rounds])
    sums = np.cumsum(values, axis=1, dtype=np.float64)[:, rounds - 1]
    sums = np.diff(np.concatenate([np.zeros((len(values), 1)), sums], axis=1), axis=1)
    return sums / np.diff(edges)


def child_shares(runs: AgentRuns, rounds: np.ndarray) -> np.ndarray:
    """Share of rounds each named child decided, per interval: (children, points), seed mean."""
    return np.stack([window_mean((runs.child == i).astype(np.float64), rounds).mean(axis=0)
                     for i in range(len(runs.child_names))]) if runs.child_names else \
        np.zeros((0, len(rounds)))


# ------------------------------------------------------------------------------ headline
@dataclass(frozen=True)
class Headline:
    """One agent at the horizon, means (and sd) over its seeds."""

    agent: str
    seeds: int
    regret_per_round: float
    regret_per_round_sd: float
    regret_vs_bound: float
    mean_reward: float
    excess_power_w: float
    excess_power_w_sd: float
    energy_over_ideal_pct: float
    select_us: float
    select_us_p99: float
    decide_learn_us: float
    child_shares: dict[str, float]


def headline(replay: Replay, runs: AgentRuns) -> Headline:
    at = replay.benchmark.rounds
    horizon = int(at[-1])
    final_regret = regret(replay, runs)[:, -1]
    excess = excess_power_w(replay, runs)[:, -1]
    shares = {name: float(np.mean(runs.child == i)) for i, name in enumerate(runs.child_names)}
    return Headline(
        agent=runs.name, seeds=len(runs.seeds),
        regret_per_round=float(final_regret.mean() / horizon),
        regret_per_round_sd=float(final_regret.std() / horizon),
        regret_vs_bound=float(final_regret.mean() / exp3_regret_bound(replay.n_actions, horizon)),
        mean_reward=float(runs.reward.mean()),
        excess_power_w=float(excess.mean()), excess_power_w_sd=float(excess.std()),
        energy_over_ideal_pct=float(energy_over_ideal_pct(replay, runs).mean()),
        select_us=float(runs.select_us.mean()),
        select_us_p99=float(np.percentile(runs.select_us, 99)),
        decide_learn_us=float((runs.select_us + runs.update_us).mean()),
        child_shares=shares,
    )


def reduction_pct(mine: float, other: float) -> float:
    """How much smaller `mine` is than `other`, in % of `other` (NaN if other is not > 0)."""
    return float(100.0 * (1.0 - mine / other)) if other > 0 else float("nan")
