"""report.md and the figures of a replay, from its saved files alone.

The report states what was replayed, a headline table (one row per agent), each of the
paper's numbers for the scenario beside ours with what differs, and, for a recorded run,
the off-policy estimates its logged probabilities allow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from agents.policy_space import PolicySpace
from tools.collect.publish import portable
from tools.replay import metrics
from tools.replay.figures import all_figures
from tools.replay.metrics import Headline, Replay, load_replay
from tools.replay.paper import claims_for
from tools.replay.recorded import RecordedRun, off_policy

COMMON_DIFFERENCES = (
    "Our rewards are expected rewards of the project's link and power model "
    "(`hil/base/model.py`), not the paper's testbed dataset; every policy's reward is "
    "known each round, so regret is exact per seed rather than estimated. The reward weight "
    "delta, the power bounds and the policy space are the replay's (above), and decision "
    "times are measured on this machine."
)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _mean_sd(values: np.ndarray, digits: int = 3) -> str:
    return f"{_fmt(float(np.mean(values)), digits)} (sd {_fmt(float(np.std(values)), digits)})"


def headline_table(heads: list[Headline]) -> str:
    lines = ["| agent | seeds | R_T/T (sd) | R_T / bound (8) | mean reward | excess power W (sd) "
             "| select us (p99) | select+update us | children chosen |",
             "|---|---|---|---|---|---|---|---|---|"]
    for h in heads:
        shares = ", ".join(f"{n} {100 * s:.1f} %" for n, s in h.child_shares.items()) or "-"
        lines.append(
            f"| {h.agent} | {h.seeds} | {h.regret_per_round:.4f} ({h.regret_per_round_sd:.4f}) "
            f"| {h.regret_vs_bound:.3f} | {h.mean_reward:.4f} | {h.excess_power_w:+.3f} "
            f"({h.excess_power_w_sd:.3f}) | {h.select_us:.1f} ({h.select_us_p99:.1f}) "
            f"| {h.decide_learn_us:.1f} | {shares} |")
    return "\n".join(lines)


VERDICT = {True: "yes", False: "**no**", None: "undecided"}


def paper_table(scenario: str | None, replay: Replay, heads: dict[str, Headline]) -> str:
    lines = ["| claim | scenario | paper | ours | holds here | on what | where in the paper "
             "| where and why we differ |",
             "|---|---|---|---|---|---|---|---|"]
    for claim in claims_for(scenario):
        found = claim.ours(replay, heads)
        ours, holds, detail = "", "-", ""
        if found is None:
            why = "not measured here: the agents it needs were not in this replay"
        elif math.isnan(found.value):
            ours, holds, detail = "n/a", VERDICT[found.holds], found.detail
            why = "no figure here (on what: why)"
        else:
            unit = "points" if claim.unit == "%" else claim.unit
            ours, holds, detail = (f"{_fmt(found.value)} {claim.unit}", VERDICT[found.holds],
                                   found.detail)
            why = f"{found.value - claim.paper:+.3g} {unit} from the paper. " + claim.why
        lines.append(f"| {claim.text} | {claim.scenario or 'any'} | {claim.paper:g} {claim.unit} "
                     f"| {ours} | {holds} | {detail} | {claim.where} | {why.strip()} |")
    return "\n".join(lines)


def energy_section(replay: Replay, heads: list[Headline]) -> str:
    """Energy as the paper's Fig. 6b measures it (definitions: tools/replay/metrics.py)."""
    idle = replay.benchmark.idle_power_w
    lines = ["## Energy", "",
             f"Idle power subtracted: {_fmt(float(np.nanmean(idle)), 4)} W (with nothing "
             "scheduled). The ideal minimum energy is an oracle that plays the lowest-power "
             "policy of every round. *Above the ideal*: an agent's energy above that minimum, in "
             "% of the ideal's energy above idle. *Saving against X*: (E_X - E_agent) / E_X, "
             "energies above idle, paired per seed, mean and 95 % interval.", "",
             "| agent | above the ideal | " + " | ".join(
                 f"saving against {h.agent}" for h in heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    for h in heads:
        cells = []
        for other in heads:
            if other.agent == h.agent:
                cells.append("-")
                continue
            mean, half = metrics.power_saving_pct(replay, replay.agents[h.agent],
                                                  replay.agents[other.agent])
            cells.append(f"{_fmt(mean)} % (± {_fmt(half, 2)})")
        lines.append(f"| {h.agent} | {_fmt(h.energy_over_ideal_pct)} % | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def _space(spec: dict) -> PolicySpace | None:
    values = spec["source"].get("policy_space")
    return PolicySpace(**values) if values else None


def _off_policy_section(run_path: Path) -> str:
    run = RecordedRun.load(run_path)
    est = off_policy(run)
    space = run.config.policy_space
    best = space.policy(est.best)
    return "\n".join([
        "## Off-policy estimates from the logged decisions",
        "",
        "From bandit feedback only the logged agent's own rewards are known; these inverse "
        "propensity estimates use its logged probabilities (see `tools/replay/recorded.py`).",
        "",
        f"- valid rounds: {est.rounds}; logged mean reward: {est.logged_mean_reward:.4f}",
        f"- best fixed policy by IPS: #{est.best} {best.to_thresholds()}, estimated mean "
        f"reward {est.ips[est.best]:.4f} (self-normalised {_fmt(float(est.snips[est.best]), 4)}),"
        f" played {int(est.plays[est.best])} times",
        f"- estimated regret per round of the logged run: {est.estimated_regret_per_round:.4f} "
        "(the max over noisy estimates leans high)",
        f"- model vs measurement, mean |reward difference| of the played policies: "
        f"{est.model_gap:.4f} (how far the model-based replay above is from this testbed)",
    ])


def write_report(out: Path) -> Path:
    """Draw the figures and write report.md in `out`; returns the report's path."""
    replay: Replay = load_replay(out)
    spec = replay.spec
    source = spec["source"]
    heads = [metrics.headline(replay, runs) for runs in replay.agents.values()]
    figures = all_figures(replay, _space(spec), out)
    reward = source.get("reward", {})
    horizon = int(replay.benchmark.rounds[-1])
    bench_power = metrics.benchmark_power_w(replay)
    lines = [
        "# Replay report",
        "",
        f"- source: {source['kind']} " + ", ".join(
            f"{k} {portable(v)}" for k, v in source.items()
            if k not in ("kind", "policy_space", "reward")),
        f"- agents: {', '.join(spec['agents'])}; seeds: {len(replay.benchmark.seeds)} of "
        f"{len(spec['seeds'])} finished; rounds: {horizon}; policies K = {replay.n_actions}",
        f"- reward: delta {reward.get('delta', 'n/a')}, power bounds "
        f"{reward.get('power_min_w', '?')}-{reward.get('power_max_w', '?')} W",
        "- protocol: every agent plays the same seeds, so the same rounds (contexts and every "
        "policy's reward); learners are compared paired per seed, with normal 95 % intervals, "
        "beside baselines that need no learning (Random, and the best fixed policy in "
        "hindsight as the benchmark)",
        f"- benchmark (best fixed policy in hindsight): mean power {bench_power.mean():.2f} W",
        f"- landscape: an oracle playing each round's best policy earns "
        f"{_mean_sd(metrics.oracle_gain_per_round(replay), 4)} reward per round above that "
        "benchmark (near 0: nothing to gain by tracking contexts)",
        *([f"- adaptive rounds: each agent met rounds of its own (the adversary reacts to its "
           f"play), so each is measured against the benchmark of its own rounds; the two lines "
           f"above are {next(iter(replay.own_benchmarks))}'s"] if replay.own_benchmarks else []),
        "",
        "## Headline",
        "",
        headline_table(heads),
        "",
        "R_T: regret against the best fixed policy in hindsight at T; bound: Lemma 1, eq. (8); "
        "excess power: mean power above the benchmark policy's (negative: the agent spent less "
        "power, and earned less reward, than the benchmark); times per round in microseconds.",
        "",
        "## Beside the paper",
        "",
        COMMON_DIFFERENCES,
        "",
        paper_table(source.get("scenario"), replay, {h.agent: h for h in heads}),
        "",
        energy_section(replay, heads),
        "",
    ]
    if source["kind"] == "recorded":
        lines += [_off_policy_section(Path(source["run"])), ""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "headline.md").write_text(headline_table(heads) + "\n")
    return path
