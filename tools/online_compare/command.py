"""`hil compare` (arguments declared in tools/cli.py): agents x seeds through `hil run`'s engine,
then the paired table.

    hil compare testbed_configs/zmq-emulated-slices.yaml --agents metahrl \\
        fixed-slicing:rule=best-constant fixed-slicing:rule=equal --seeds 5 --rounds 300 \\
        --out compare/slices

Each agent is `NAME[:KEY=VALUE...]` (values in YAML): its parameters on top of the config's
own when NAME is the config's agent, alone otherwise. The first agent is the reference of
the paired differences. The same command again skips completed runs and continues a stopped
one; the report is written from the seeds every agent has completed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from hil.progress import tracked
from tools.online_compare.report import Comparison, run_figures, table, title, write
from tools.online_compare.runs import AgentSpec, Plan, RunDone, run_all, seeds, specs


def run(args: argparse.Namespace, console: Console) -> int:
    plan = Plan(config=Path(args.config), agents=specs(args.agents), seeds=seeds(args.seeds),
                rounds=_rounds(args), out=Path(args.out))
    total = len(plan.agents) * len(plan.seeds) * plan.rounds
    with tracked(console, "compare", "rounds", total) as progress:
        advance = progress.advance

        def on_start(agent: AgentSpec, seed: int, first: int, _total: int) -> None:
            where = f" from round {first}" if first else ""
            progress.console.print(f"{agent.text} seed {seed}: running{where}", highlight=False)
            advance(first)  # resumed: the rounds it had

        def on_run(agent: AgentSpec, seed: int, done: RunDone) -> None:
            if not done.ran:
                advance(plan.rounds)
            note = "" if done.ran else " (done before)"
            console.print(f"{agent.text} seed {seed}: {done.status}{note} {done.run_dir}",
                          highlight=False, soft_wrap=True)

        try:
            results = run_all(plan, on_run=on_run, on_start=on_start,
                              on_round=lambda _row: advance(1))
        except KeyboardInterrupt:  # between runs; a run in flight stops cleanly by itself
            results = []
            console.print("[yellow]interrupted between runs")
    complete = [(a, s, d) for a, s, d in results if d.status == "completed"]
    status = 0 if len(complete) == len(plan.agents) * len(plan.seeds) else 130
    if status:
        stopped = next((d for _, _, d in results if d.status != "completed"), None)
        why = f"{stopped.status}: {stopped.reason}" if stopped else "interrupted"
        console.print(f"[yellow]not every run completed ({why}); run the same command again to "
                      "continue", highlight=False)
        status = 1 if stopped is not None and stopped.status == "failed" else 130
    if not complete:
        return status
    comparison = Comparison(str(plan.config), plan.rounds, tuple(a.text for a in plan.agents),
                            tuple(run_figures(a.text, s, d.run_dir) for a, s, d in complete))
    md, js = write(plan.out, comparison)
    console.print(f"{title(comparison)}\n\n{table(comparison)}", soft_wrap=True,
                  highlight=False, markup=False)
    for left in comparison.unpaired:
        console.print(f"[yellow]left out: {left.agent} seed {left.seed} ({left.invalid_rounds} "
                      f"of {left.rounds} rounds invalid, or no pair): {left.run_dir}",
                      highlight=False)
    console.print(f"report: [bold]{md}[/], {js}", soft_wrap=True)
    return status


def _rounds(args: argparse.Namespace) -> int:
    """--rounds, or the config's."""
    if args.rounds is not None:
        return int(args.rounds)
    from hil.config import load_config

    return load_config(Path(args.config)).rounds
