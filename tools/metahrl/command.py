"""`hil metahrl` (arguments declared in tools/cli.py): the Meta-HRL experiments and their report.

    hil metahrl --out runs/metahrl                      (the full protocol, ~1 h on 2 cores)
    hil metahrl --experiments compare --families hidden --seeds 2 --out DIR
    hil metahrl --report-only --out DIR

Each (method, seed, setup) job is saved as it finishes; running the same command again
skips saved jobs, so an interrupted sweep continues where it stopped. Jobs run on
`--executor` (processes here, or a Dask cluster; one torch thread each).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.console import Console

from agents.meta_hrl.agent import save_model
from agents.meta_hrl.env import FAMILIES
from hil.executor import Callbacks, Executor, JobCounts, JobFailure, run_jobs
from hil.progress import tracked
from tools.metahrl.experiments import (
    METHODS,
    JobResult,
    Setup,
    job_path,
    load_jobs,
    run_job,
    save_job,
    train,
    trains,
)
from tools.metahrl.report import ABLATION, COMPARED, WEIGHTINGS, write_report

EXPERIMENTS = ("compare", "ablation", "scaling", "weightings")
Job = tuple[str, int, Setup]


def plan(experiments: list[str], setup: Setup, scale: Setup, seeds: int,
         families: list[str], only: set[str] | None = None) -> list[Job]:
    """The (method, seed, setup) jobs the chosen experiments need, without repeats; with
    `only`, just those methods' jobs. `compare` runs on every family, the rest on the
    visible one (`setup`)."""
    methods: list[tuple[str, Setup]] = []
    if "compare" in experiments:
        methods += [(m, replace(setup, family=f)) for f in families for m in COMPARED]
    if "ablation" in experiments:
        methods += [(m, setup) for m in ("meta-hrl", *ABLATION)]
    if "weightings" in experiments:
        methods += [(m, setup) for m in ("meta-hrl", *WEIGHTINGS)]
    if "scaling" in experiments:
        methods += [("meta-hrl", setup), ("meta-hrl", scale)]
    unique = [(m, s) for m, s in dict.fromkeys(methods) if only is None or m in only]
    return [(m, seed, s) for m, s in unique for seed in range(seeds)]


def _cost(job: Job) -> int:
    """A job's rough cost, to start the longest first (training iterations x DUs)."""
    method, _, setup = job
    return (setup.iterations * setup.n_dus if trains(method) else 0) + setup.n_heldout


def _run(job: Job, progress: Callable[[int], None]) -> JobResult:
    """One job on a worker: `progress(1)` after each training iteration."""
    return run_job(*job, on_iteration=lambda: progress(1))


def _save(out: Path, job: Job, result: JobResult) -> None:
    save_job(job_path(out, *job), result)


def run_all(todo: list[Job], out: Path, executor: Executor, advance: Callable[[int], None],
            on_counts: Callable[[JobCounts], None]) -> list[JobFailure]:
    """Every job of `todo`, longest first, on `executor`; each saved as it returns."""
    todo = sorted(todo, key=_cost, reverse=True)
    return run_jobs(_run, todo, executor, Callbacks(partial(_save, out), advance, on_counts))


def run(args: argparse.Namespace, console: Console) -> int:
    setup = Setup(n_dus=args.dus, n_ues=args.ues, iterations=args.iterations, shots=args.shots,
                  first_order=args.first_order, n_heldout=args.heldout_dus,
                  updates_per_iteration=args.updates_per_iteration,
                  tasks_per_update=args.tasks_per_update)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if unknown_families := set(families) - set(FAMILIES):
        console.print(f"[red]--families: unknown {sorted(unknown_families)}; choose from "
                      f"{', '.join(FAMILIES)}")
        return 2
    if args.save_model:
        return _save_model(Path(args.save_model), setup, console)
    if not args.out:
        console.print("[red]--out: give the folder for the jobs and the report")
        return 2
    out = Path(args.out)
    failed: list[JobFailure] = []
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
        # the scaling run is judged on its zero-shot held-out curve: no adaptation
        scale = replace(setup, n_dus=args.scale_dus, n_ues=args.scale_ues, shots=0)
        todo = [job for job in plan(experiments, setup, scale, args.seeds, families, only)
                if not job_path(out, *job).exists()]
        total = sum(s.iterations for m, _, s in todo if trains(m))
        console.print(f"{len(todo)} jobs to run into {out} ({total} training iterations)")
        try:
            with tracked(console, "metahrl", "iterations", total) as progress:
                failed = run_all(todo, out, args.executor, progress.advance, progress.note)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: finished jobs are saved; run the same command "
                          "again to continue")
            return 130
        for failure in failed:
            method, seed, _ = failure.job
            console.print(f"[red]{method} seed {seed} failed: {failure.error}", highlight=False)
        if failed:
            console.print("[red]the report below leaves the failed jobs out")
    jobs = load_jobs(out)
    if not jobs:
        console.print(f"[red]no saved jobs in {out / 'jobs'}: run without --report-only first")
        return 1
    report = write_report(jobs, setup, out, args.executor)
    console.print(f"report: [bold]{report}[/]")
    console.print(report.read_text(), highlight=False, soft_wrap=True, markup=False)
    return 1 if not args.report_only and failed else 0


def _save_model(path: Path, setup: Setup, console: Console) -> int:
    """Meta-train Meta-HRL (seed 0) and save the weights a `metahrl` run can start from:
    without a power head, on DUs at full power, as the online agent schedules."""
    setup = replace(setup, power_control=False)
    with tracked(console, "meta-training", "iterations", setup.iterations) as progress:
        trained = train("meta-hrl", 0, setup, on_iteration=progress.advance)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(trained.learner, path)
    console.print(f"meta-model: [bold]{path}[/] ({setup.n_dus} DUs x {setup.n_ues} UEs, "
                  f"{setup.iterations} iterations, {trained.iteration_s:.3f} s each, last "
                  f"reward {trained.stats[-1].reward:.3f})")
    return 0
