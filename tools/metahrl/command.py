"""`hil metahrl` (arguments declared in hil/cli.py): the Meta-HRL experiments and their report.

    hil metahrl --seeds 5 --iterations 200 --out runs/metahrl            (everything)
    hil metahrl --experiments compare,ablation --seeds 2 --iterations 50 --out DIR
    hil metahrl --report-only --out DIR

Each (method, seed, setup) job is saved as it finishes; running the same command again
skips saved jobs, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from hil.progress import LineLog, progress_bar
from agents.meta_hrl.agent import save_model
from tools.metahrl.experiments import (
    METHODS,
    Setup,
    job_path,
    load_jobs,
    run_job,
    save_job,
    train,
    trains,
)
from tools.metahrl.report import ABLATION, COMPARED, write_report

EXPERIMENTS = ("compare", "ablation", "scaling")


def plan(experiments: list[str], setup: Setup, scale: Setup, seeds: int,
         only: set[str] | None = None) -> list[tuple[str, int, Setup]]:
    """The (method, seed, setup) jobs the chosen experiments need, without repeats; with
    `only`, just those methods' jobs."""
    methods: list[tuple[str, Setup]] = []
    if "compare" in experiments:
        methods += [(m, setup) for m in COMPARED]
    if "ablation" in experiments:
        methods += [(m, setup) for m in ABLATION]
    if "scaling" in experiments:
        methods += [("meta-hrl", setup), ("meta-hrl", scale)]
    unique = [(m, s) for m, s in dict.fromkeys(methods) if only is None or m in only]
    return [(m, seed, s) for m, s in unique for seed in range(seeds)]


def run(args: argparse.Namespace, console: Console) -> int:
    setup = Setup(n_dus=args.dus, n_ues=args.ues, iterations=args.iterations, shots=args.shots,
                  first_order=args.first_order, n_heldout=args.heldout_dus,
                  updates_per_iteration=args.updates_per_iteration)
    if args.save_model:
        return _save_model(Path(args.save_model), setup, console)
    if not args.out:
        console.print("[red]--out: give the folder for the jobs and the report")
        return 2
    out = Path(args.out)
    if not args.report_only:
        experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
        unknown = set(experiments) - set(EXPERIMENTS)
        if unknown:
            console.print(f"[red]--experiments: unknown {sorted(unknown)}; choose from "
                          f"{', '.join(EXPERIMENTS)}")
            return 2
        only = {m.strip() for m in args.methods.split(",") if m.strip()} if args.methods \
            else None
        if only and (unknown := only - set(METHODS)):
            console.print(f"[red]--methods: unknown {sorted(unknown)}; choose from "
                          f"{', '.join(METHODS)}")
            return 2
        scale = replace(setup, n_dus=args.scale_dus, n_ues=args.scale_ues)
        todo = [job for job in plan(experiments, setup, scale, args.seeds, only)
                if not job_path(out, *job).exists()]
        total = sum(s.iterations for m, _, s in todo if trains(m))
        console.print(f"{len(todo)} jobs to run into {out} ({total} training iterations)")
        try:
            with progress_bar(console, "metahrl iterations") as progress:
                task = progress.add_task("metahrl", total=total)
                log = LineLog(console, total, "metahrl", "iterations")

                def advance() -> None:
                    progress.advance(task)
                    log.advance()

                for method, seed, job_setup in todo:
                    result = run_job(method, seed, job_setup, on_iteration=advance)
                    save_job(job_path(out, method, seed, job_setup), result)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: finished jobs are saved; run the same command "
                          "again to continue")
            return 130
    jobs = load_jobs(out)
    if not jobs:
        console.print(f"[red]no saved jobs in {out / 'jobs'}: run without --report-only first")
        return 1
    report = write_report(jobs, setup, out)
    console.print(f"report: [bold]{report}[/]")
    console.print(report.read_text(), highlight=False, soft_wrap=True, markup=False)
    return 0


def _save_model(path: Path, setup: Setup, console: Console) -> int:
    """Meta-train Meta-HRL (seed 0) and save the weights a `metahrl` run can start from."""
    with progress_bar(console, "meta-training") as progress:
        task = progress.add_task("meta", total=setup.iterations)
        log = LineLog(console, setup.iterations, "meta-training", "iterations")

        def advance() -> None:
            progress.advance(task)
            log.advance()

        learner, stats, iteration_s = train("meta-hrl", 0, setup, on_iteration=advance)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(learner, path)
    console.print(f"meta-model: [bold]{path}[/] ({setup.n_dus} DUs x {setup.n_ues} UEs, "
                  f"{setup.iterations} iterations, {iteration_s:.3f} s each, last reward "
                  f"{stats[-1].reward:.3f})")
    return 0
