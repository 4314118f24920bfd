"""`hil replay` (arguments declared in tools/cli.py): turning them into a replay, showing its
progress, and writing the report.

    hil replay [CONFIG] --scenario C --agents bsvbs,metbs,... --seeds 10 --rounds 50000 --out DIR
    hil replay [CONFIG] --dataset dataset_dlul.csv --scenario B ...   (rewards from the dataset)
    hil replay --run RUN_DIR ...                       (a recorded run's trace through the model)
    hil replay --report-only --out DIR                 (redraw the report from saved results)

CONFIG gives the policy space, the reward (delta, power bounds) and the calibration of the
model, as for `hil run`; a recorded run uses its own. Running again into the same --out
continues an interrupted replay.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from agents.policy_space import NAMED_SPACES
from agents.registry import BANDITS
from hil.config import load_config
from hil.progress import tracked
from hil.reward import RewardParams
from tools.replay.dataset import DatasetSource, parse_filters
from tools.replay.environments import ADAPTIVE_SCENARIO, ModelSource
from tools.replay.recorded import RecordedSource
from tools.replay.report import write_report
from tools.replay.runner import ReplayError, ReplaySpec, Source, run_replay

REPLAY_SCENARIOS = ("A", "B", "C", "C-iid", ADAPTIVE_SCENARIO, "mixed")


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the replay (unless --report-only), then write the report of what is saved."""
    out = Path(args.out)
    status = 0
    if not args.report_only:
        spec = build_spec(args)
        total = len(spec.agents) * len(spec.seeds) * spec.rounds
        started = time.perf_counter()
        with tracked(console, "replay", "rounds", total) as progress:
            outcome = run_replay(spec, out, executor=args.executor, on_rounds=progress.advance,
                                 on_counts=progress.note)
        console.print(f"replay_wall_s {time.perf_counter() - started:.0f} s (the jobs not "
                      f"saved before this command, on {args.executor}); {outcome.jobs_done} "
                      f"of {outcome.jobs_total} jobs saved", highlight=False)
        for failure in outcome.failed:
            agent, seed = failure.job
            console.print(f"[red]{agent} seed {seed} failed: {failure.error}", highlight=False)
        if outcome.failed:
            status = 1
        if outcome.interrupted:
            console.print(f"[yellow]interrupted: {outcome.jobs_done} of {outcome.jobs_total} "
                          "(agent, seed) jobs are saved; run the same command again to continue")
            status = 130
            if outcome.jobs_done == 0:
                return status
    report = write_report(out)
    console.print(f"report: [bold]{report}[/]")
    console.print((out / "headline.md").read_text(), highlight=False, soft_wrap=True)
    return status


def build_spec(args: argparse.Namespace) -> ReplaySpec:
    agents = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    unknown = [a for a in agents if a not in BANDITS]
    if unknown or not agents:
        raise ReplayError(f"unknown agent {unknown[0] if unknown else '(none given)'!r}; "
                          f"known agents: {', '.join(sorted(BANDITS))}")
    if args.seeds < 1:
        raise ReplayError(f"--seeds must be at least 1, got {args.seeds}")
    return ReplaySpec(_source(args), agents, tuple(range(args.seeds)), args.rounds,
                      _agent_params(args.agent_param, agents))


def _source(args: argparse.Namespace) -> Source:
    if args.run:
        if args.dataset:
            raise ReplayError("give --run or --dataset, not both")
        return RecordedSource(Path(args.run))
    if args.scenario not in REPLAY_SCENARIOS:
        raise ReplayError(f"unknown scenario {args.scenario!r}; known scenarios: "
                          f"{', '.join(REPLAY_SCENARIOS)}")
    cfg = load_config(Path(args.config))
    delta = cfg.reward.delta if args.delta is None else args.delta
    try:
        params = RewardParams(delta, cfg.reward.power_min_w, cfg.reward.power_max_w)
    except ValueError as exc:
        raise ReplayError(f"--delta: {exc}") from exc
    switch_epoch = cfg.demand_scenario.switch_epoch  # mixed: B, then C from this round
    space = cfg.policy_space
    if args.policy_space:
        if args.policy_space not in NAMED_SPACES:
            raise ReplayError(f"--policy-space {args.policy_space!r}: known spaces: "
                              f"{', '.join(NAMED_SPACES)} (or set policy_space in CONFIG)")
        space = NAMED_SPACES[args.policy_space]
    if args.dataset:
        if args.scenario == ADAPTIVE_SCENARIO:
            raise ReplayError(f"--scenario {ADAPTIVE_SCENARIO} needs the model (both kinds of "
                              "round every round); a dataset replay takes A, B, C, C-iid, mixed")
        return DatasetSource(Path(args.dataset), args.scenario, space, params, switch_epoch,
                             parse_filters(args.dataset_filter))
    return ModelSource(args.scenario, space, cfg.vbs.calibration, params,
                       switch_epoch)


def _agent_params(items: list[str], agents: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        agent, dot, name = key.partition(".")
        if not sep or not dot or agent not in agents:
            raise ReplayError(f"--agent-param {item!r}: expected AGENT.KEY=VALUE with AGENT one "
                              f"of --agents ({', '.join(agents)})")
        try:
            params.setdefault(agent, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ReplayError(f"--agent-param {item!r}: the value is not YAML: {exc}") from exc
    return params


