"""`hil`: the command line.

    hil run [CONFIG...] [--agent NAME] [--rounds N] [--seed S] [--out DIR] [--resume RUN_DIR]
    hil check [CONFIG]
    hil bench [CONFIG] [--quick | --soak [--soak-rounds N]]
    hil replay [CONFIG] --scenario C --agents bsvbs,metbs,... --seeds N --rounds T --out DIR
               [--executor local:N | dask-local:N | dask:HOST:PORT]
    hil metahrl --out DIR [--seeds N] [--iterations N] [--families visible,hidden] [--executor ...]
    hil compare [CONFIG] --agents A B[:KEY=VALUE...] ... --seeds N --rounds R --out DIR
    hil collect [CONFIG...] --grid AXIS=V1,V2 ... [--dwell-rounds N] [--reps N] [--out DIR]
    hil fit-power DATASET [--out CALIBRATION.yaml]
    hil keys DIR
    hil landscape DATASET [--calibration CAL] [--delta D ...]
    hil publish-dataset SWEEP [SWEEP...] DEST
    hil srsran build --source SRSRAN_4G_CHECKOUT | --clone [--prefix DIR] [--uhd]

Operator errors (`HilError`) print one line saying what to fix and exit with status 2; an
interrupted run exits with 130 after its cleanup; anything else is a bug and keeps its trace.
"""

from __future__ import annotations

import os

# One OpenBLAS thread (numpy's) unless the operator says otherwise: the agents' linear
# algebra is small (BP-vRAN's per-round work is matrix-vector products over <= 1000 points),
# where threads give nothing; measured on 2 cores (1000-point budget): bpvran_round_ms_5k
# 1.48 ms with two threads, 1.38 ms with one; with the former 100-point GP, 14 ms and 4.3 ms.
# Set here, in the program's entry module, before numpy loads OpenBLAS (which reads it
# once); a library user of vbs-hil keeps their own setting.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from agents.registry import AGENTS
from drivers.srsran.series import DEFAULT_PREFIX
from hil.base.errors import ConfigError, HilError
from hil.base.thresholds import POLICY_FIELDS
from hil.executor import Executor, parse_executor

if TYPE_CHECKING:
    from hil.config import HilConfig
    from hil.recorder import RunDirectory

DEFAULT_CONFIG = Path("testbed_configs/zmq-emulated.yaml")
DEFAULT_CALIBRATION = Path("testbed_configs/calibration/srsran-zmq.yaml")
console = Console(stderr=True)


LOG_EVERY_S = 10.0


def _progress() -> Progress:
    """A live bar on a terminal; without one (CI, nohup) `_RoundLog` prints lines instead."""
    return Progress(
        TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(),
        TextColumn("reward {task.fields[reward]:.3f}  power {task.fields[power]:.2f} W  "
                   "invalid {task.fields[invalid]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False, refresh_per_second=4, disable=not console.is_terminal,
    )


class _RoundLog:
    """Plain progress lines every LOG_EVERY_S for logs, where a live bar cannot show."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.first = total, 0, 0
        self.t0 = self.last = time.monotonic()

    def start(self, first: int, total: int) -> None:
        self.first = self.done = first
        self.total = total
        self.t0 = self.last = time.monotonic()

    def round(self, row: dict) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last < LOG_EVERY_S and self.done < self.total:
            return
        self.last = now
        rate = (self.done - self.first) / max(now - self.t0, 1e-9)
        eta_s = (self.total - self.done) / rate if rate else float("inf")
        reward = f"{row['reward']:.3f}" if row["valid"] else "invalid"
        console.print(f"round {self.done}/{self.total}  {rate:.0f} rounds/s  "
                      f"reward {reward}  eta {eta_s:.0f} s", highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    from hil import run as runmod

    if len(args.config) > 1:
        if args.resume:
            raise HilError("--resume continues one run: give its folder without configs (hil "
                           "run --resume RUN_DIR), once per testbed")
        options = _options(args, {"agent": "--agent", "rounds": "--rounds", "seed": "--seed"})
        return _run_lab("run", args, options, "runs")
    args.config = args.config[0]
    if args.resume:
        if args.agent or args.seed is not None or args.out:
            console.print("[yellow]--resume continues the run as it was configured: "
                          "--agent, --seed and --out are ignored")
        cfg, run_dir = runmod.resume_run(Path(args.resume), args.rounds)
        if args.rounds is not None:
            console.print(f"--rounds {cfg.rounds}: the agent keeps the horizon it was built "
                          f"for (agent.horizon {cfg.agent.horizon}), so every parameter tuned "
                          "for it (gamma, eta) is the saved one", highlight=False)
    else:
        if args.config == str(DEFAULT_CONFIG) and not DEFAULT_CONFIG.exists():
            raise ConfigError(str(DEFAULT_CONFIG), "", "the default config is not here: run "
                              "hil from the vbs-hil checkout, or pass a config file's path")
        cfg, run_dir = runmod.new_run(
            Path(args.config), {"agent.name": args.agent, "rounds": args.rounds, "seed": args.seed},
            Path(args.out) if args.out else None)
    console.print(f"run directory: [bold]{run_dir.path}[/]")
    _note_pure_exploration(cfg)
    _warn_plaintext_control(cfg)
    with _live_view(run_dir.path, args.serve):
        return _run_and_summarise(args, cfg, run_dir)


@contextmanager
def _live_view(run_path: Path, address: str | None) -> Iterator[None]:
    """`hil serve` beside the run while it lasts, when asked (--serve); a live view that
    cannot start is reported and the run goes on without it."""
    if address is None:
        yield
        return
    from hil.serve import ServeError, spawn

    try:
        process, url = spawn([run_path], address)
    except ServeError as exc:
        console.print(f"[yellow]no live view: {escape(str(exc))}", soft_wrap=True)
        yield
        return
    console.print(f"live view: [bold]{url}[/] (Prometheus: {url.split('?')[0]}metrics)",
                  soft_wrap=True, highlight=False)
    try:
        yield
    finally:
        process.terminate()
        process.wait()


def _run_and_summarise(args: argparse.Namespace, cfg: HilConfig, run_dir: RunDirectory) -> int:
    from hil import run as runmod
    from hil.recorder import read_rounds
    from hil.summary import summarise

    log = None if console.is_terminal else _RoundLog(cfg.rounds)
    with _progress() as progress:
        task = progress.add_task("run", total=cfg.rounds, reward=0.0, power=0.0, invalid=0)
        state = {"invalid": 0}

        def on_start(first: int, total: int) -> None:
            progress.update(task, completed=first, total=total)
            if log:
                log.start(first, total)

        def on_round(row: dict) -> None:
            if log:
                log.round(row)
            fields: dict = {"advance": 1}
            if row["valid"]:
                fields.update(reward=row["reward"], power=row["power_w"])
            else:
                state["invalid"] += 1
                fields["invalid"] = state["invalid"]
            progress.update(task, **fields)

        result = runmod.execute(cfg, run_dir, resume=bool(args.resume), on_start=on_start,
                                on_round=on_round)

    rounds = read_rounds(run_dir.path)
    status = result.outcome.status
    if status != "completed" and not len(rounds):
        console.print(f"[red]run {status} before its first round: "
                      f"{escape(result.outcome.reason)}[/]\nNothing was recorded, so there is "
                      f"nothing to resume: fix the above and run the same command again.")
        return {"interrupted": 130}.get(status, 1)
    console.print(summarise(result, rounds))
    if cfg.recording.plot and len(rounds):
        from hil.plots import summary_figure

        png = summary_figure(rounds, result.agent.probabilities(), cfg.policy_space,
                             f"{cfg.name}: {cfg.agent.name}, {len(rounds)} rounds",
                             run_dir.path / "summary.png")
        console.print(f"summary plot: {png}")
    if status != "completed":
        console.print(f"[yellow]run {status}: {escape(result.outcome.reason)}. "
                      f"Continue it with: hil run --resume {run_dir.path}")
    return {"completed": 0, "interrupted": 130}.get(status, 1)


def _warn_plaintext_control(cfg) -> None:
    """`vbs.allow_plaintext_control` is a risk the operator chose: said on every run."""
    for socket in cfg.vbs.plaintext_on_network():
        console.print(f"[yellow]warning: {socket.key} {socket.endpoint} takes commands in "
                      "plaintext from the network (vbs.allow_plaintext_control)",
                      highlight=False)


def _note_pure_exploration(cfg) -> None:
    """Lemma 1 gives gamma = 1 (uniform play) when T < K ln K / (e - 1): say so up front."""
    from agents.bsvbs import gamma_for_horizon

    if cfg.agent.name != "bsvbs" or cfg.agent.gamma is not None:
        return
    size, horizon = cfg.policy_space.size, cfg.agent.horizon or cfg.rounds
    if gamma_for_horizon(size, horizon) >= 1.0:
        console.print(
            f"[yellow]note: with {size} policies and a horizon of {horizon} rounds, Lemma 1 "
            "gives gamma = 1: BSvBS only explores. Run more rounds (the paper: 50000), use a "
            "smaller policy_space, or set agent.gamma.")


def cmd_acceptance(args: argparse.Namespace) -> int:
    import pytest

    from hil.config import load_config
    from tools.acceptance import suite

    load_config(Path(args.config))  # a bad config is named here, not inside pytest
    argv = [str(Path(suite.__file__).parent), "-p", "tools.acceptance.plugin",
            "--testbed", args.config, "-p", "no:cacheprovider", "-rs",
            *(["--acceptance-report", args.report] if args.report else []),
            *(["-k", args.k] if args.k else [])]
    return int(pytest.main(argv))


def cmd_check(args: argparse.Namespace) -> int:
    from hil.config import load_config
    from hil.preflight import run_checks

    cfg = load_config(Path(args.config))
    failed = 0
    marks = {"ok": "[green]ok  [/]", "warn": "[yellow]WARN[/]", "fail": "[red]FAIL[/]"}
    for result in run_checks(cfg):
        failed += not result.ok
        mark = marks[result.level]
        console.print(f"{mark}  {result.name}: {escape(result.detail)}", soft_wrap=True,
                      highlight=False)
    console.print(f"{args.config}: " + ("ready" if not failed else f"{failed} problem(s) to fix"),
                  soft_wrap=True, highlight=False)
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hil.soak import soak
    from tools.bench import run_benchmarks

    figures = (soak(Path(args.config), args.soak_rounds) if args.soak
               else run_benchmarks(Path(args.config), quick=args.quick))
    for name, value, unit in figures:
        print(f"{name} {value:.6g} {unit}", flush=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from tools.replay.command import run

    return run(args, console)


def cmd_keys(args: argparse.Namespace) -> int:
    from drivers.rtctl.curve import create_keys
    from hil.config import load_config
    from hil.testbeds.keys import install

    if args.directory is None and args.install is None:
        console.print("give a folder to make keys in (hil keys DIR), or --install CONFIG")
        return 2
    if args.directory is not None:
        for path in create_keys(Path(args.directory)):
            console.print(str(path), highlight=False)
        console.print("set `vbs.curve_dir` to this folder; where the vBS runs on another "
                      "host, set `vbs.server_curve_dir` and run `hil keys --install CONFIG`",
                      highlight=False)
    if args.install is not None:
        for where in install(load_config(Path(args.install))):
            console.print(f"installed {where}", highlight=False)
        console.print("the server's secret now lives on the vBS's host only", highlight=False)
    return 0


def cmd_metahrl(args: argparse.Namespace) -> int:
    from tools.metahrl.command import run

    return run(args, console)


def cmd_compare(args: argparse.Namespace) -> int:
    from tools.online_compare.command import run

    return run(args, console)


def cmd_collect(args: argparse.Namespace) -> int:
    from tools.collect.command import run

    if len(args.config) > 1:
        options = _options(args, {"grid": "--grid", "condition": "--condition",
                                  "dwell_rounds": "--dwell-rounds",
                                  "warmup_rounds": "--warmup-rounds",
                                  "block_warmup_rounds": "--block-warmup-rounds",
                                  "reps": "--reps", "seed": "--seed", "retries": "--retries",
                                  "blocks_per_condition": "--blocks-per-condition",
                                  "reference_policy": "--reference-policy",
                                  "check_fit": "--check-fit"})
        return _run_lab("collect", args, options, "datasets")
    args.config = args.config[0]
    return run(args, console)


def _options(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """The options given, as a testbed's own command takes them (hil/lab.py)."""
    options: list[str] = []
    for name, flag in flags.items():
        value = getattr(args, name)
        if value is None or value is False or value == []:
            continue
        if value is True:
            options.append(flag)
        elif name == "grid":
            options += [flag, *value]
        elif name == "condition":
            options += [part for item in value for part in (flag, item)]
        else:
            options += [flag, str(value)]
    return options


def _run_lab(command: str, args: argparse.Namespace, options: list[str], root: str) -> int:
    from hil.lab import members, run_lab

    out = Path(args.out) if args.out else Path(root) / time.strftime("lab-%Y%m%d-%H%M%S")
    lab = members([Path(c) for c in args.config], out)
    console.print(f"a lab of {len(lab)} testbeds into [bold]{out}[/]", highlight=False)
    return run_lab(command, lab, options, console, getattr(args, "serve", None))


def cmd_fit_power(args: argparse.Namespace) -> int:
    from tools.fit_power.command import run

    return run(args, console)


def cmd_publish_dataset(args: argparse.Namespace) -> int:
    from tools.collect.publish import publish
    from tools.collect.sweep import rebuild_cells

    if args.rebuild:
        for sweep in args.sweep:
            console.print(f"{rebuild_cells(Path(sweep))} cells derived again from the rounds "
                          f"in {sweep}/blocks", highlight=False)
    for path in publish([Path(s) for s in args.sweep], Path(args.dest)):
        console.print(str(path), highlight=False)
    return 0


def cmd_landscape(args: argparse.Namespace) -> int:
    from tools.landscape.command import run

    args.delta = args.delta or [0.1, 1.5]
    return run(args, console)


def cmd_serve(args: argparse.Namespace) -> int:
    from hil.serve import LiveServer

    server = LiveServer([Path(p) for p in args.paths], host=args.host, port=args.port,
                        token=args.token).start()
    console.print(f"serving {len(server.runs.all())} run(s) at [bold]{server.url}[/] "
                  "(metrics: /metrics); Ctrl-C stops", soft_wrap=True, highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_srsran_build(args: argparse.Namespace) -> int:
    from tools.srsran.command import run

    return run(args, console)


def add_executor_argument(parser: argparse.ArgumentParser) -> None:
    """`--executor`, the same for every command that fans out jobs (see hil/executor.py)."""
    def executor(text: str) -> Executor:
        try:
            return parse_executor(text)
        except HilError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parser.add_argument("--executor", type=executor, default=Executor("local", os.cpu_count() or 1),
                        metavar="WHERE", help="where jobs run: local[:N] (N processes; default: "
                        "one per core), dask-local:N (a Dask cluster on this machine), "
                        "dask:HOST:PORT (a running Dask scheduler); Dask needs "
                        "pip install 'vbs-hil[dask]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run rounds of an agent against a testbed")
    run.add_argument("config", nargs="*", default=[str(DEFAULT_CONFIG)],
                     help=f"testbed config (default: {DEFAULT_CONFIG}); several: a lab of "
                     "testbeds, one process each, results side by side (hil/lab.py)")
    run.add_argument("--agent", choices=sorted(AGENTS),
                     help="overrides agent.name; the config's agent options (agent.params, "
                          "agent.gamma) apply only when it names the same agent")
    run.add_argument("--rounds", type=int, help="rounds to run (with --resume: the new total)")
    run.add_argument("--seed", type=int)
    run.add_argument("--out", help="parent folder of the run directory (default: runs/); of "
                     "the testbeds' folders for several configs (default: runs/lab-<time>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run")
    run.add_argument("--serve", nargs="?", const="127.0.0.1:8765", metavar="HOST:PORT",
                     help="the live view (hil serve) beside the run; prints its URL "
                          "(default address: %(const)s)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="preflight: is this testbed ready? one line per check")
    check.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG))
    check.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="measure speed; prints `name value unit` lines")
    bench.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                       help="testbed for the control and round figures (default: %(default)s)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests)")
    bench.add_argument("--soak", action="store_true", help="instead: many rounds with memory "
                       "and open files sampled (soak_* figures)")
    bench.add_argument("--soak-rounds", type=int, default=100_000,
                       help="rounds of the soak (default: %(default)s)")
    bench.set_defaults(func=cmd_bench)

    replay = sub.add_parser("replay", help="evaluate agents x seeds offline: regret, power, "
                            "decision time; figures and report.md in --out")
    replay.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                        help="policy space, reward and calibration (default: %(default)s)")
    replay.add_argument("--scenario", default="C",
                        help="A, B, C, C-iid, C-adaptive or mixed (default: C)")
    replay.add_argument("--policy-space", help="paper (1080) or paper16 (the paper's Sec. VI-C "
                        "subset); default: CONFIG's")
    replay.add_argument("--agents", default="bsvbs,random",
                        help="comma-separated agent names (default: %(default)s)")
    replay.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default: 10)")
    replay.add_argument("--rounds", type=int, default=50_000, help="horizon T (default: 50000)")
    replay.add_argument("--out", required=True, help="folder for results, figures, report.md")
    replay.add_argument("--delta", type=float, help="reward weight of power (default: CONFIG's)")
    replay.add_argument("--dataset", metavar="PATH", help="rewards from a dataset_dlul.csv")
    replay.add_argument("--dataset-filter", action="append", default=[], metavar="KEY=VALUE",
                        help="which experiment of the dataset: cpu_platform, fixed_mcs_flag, BW, "
                        "TM (defaults: the paper's NUC, 0, 50, any; VALUE `any` keeps all)")
    replay.add_argument("--run", metavar="RUN_DIR", help="a recorded run's trace through the model")
    replay.add_argument("--agent-param", action="append", default=[], metavar="AGENT.KEY=VALUE",
                        help="an agent parameter, value in YAML, e.g. metbs.children=[bsvbs,ucb]")
    add_executor_argument(replay)
    replay.add_argument("--report-only", action="store_true",
                        help="redraw report.md and the figures from --out, run nothing")
    replay.set_defaults(func=cmd_replay)

    keys = sub.add_parser("keys", help="make CURVE keys for rtctl on a lab network "
                          "(`vbs.curve_dir`), or install the vBS's half on its host")
    keys.add_argument("directory", nargs="?",
                      help="folder to make the keypairs and authorized_clients/ in")
    keys.add_argument("--install", metavar="CONFIG",
                      help="copy the server keypair (secret 0600) and authorized_clients/ of "
                           "the config's vbs.curve_dir to vbs.server_curve_dir on the vBS's "
                           "host over SFTP, then delete the server's secret here")
    keys.set_defaults(func=cmd_keys)

    meta = sub.add_parser("metahrl", help="Meta-HRL experiments (baselines, ablation, scaling) "
                          "with tables beside the paper's; or train and save a meta-model")
    meta.add_argument("--experiments", default="compare,ablation,scaling",
                      help="any of compare, ablation, scaling, weightings (default: "
                      "%(default)s)")
    meta.add_argument("--families", default="visible,hidden",
                      help="task families the comparison runs on: visible (all per-DU "
                      "differences observed), hidden (per-DU slice weights unobserved) "
                      "(default: %(default)s)")
    meta.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    add_executor_argument(meta)
    meta.add_argument("--methods", help="only these of the experiments' methods, comma-"
                      "separated (e.g. meta-hrl,mtl; default: all)")
    meta.add_argument("--iterations", type=int, default=100,
                      help="training iterations per method (default: 100)")
    meta.add_argument("--shots", type=int, default=30, help="adaptation shots (default: 30)")
    meta.add_argument("--dus", type=int, default=7, help="DUs to train on (default: 7)")
    meta.add_argument("--ues", type=int, default=30, help="users per DU (default: 30)")
    meta.add_argument("--heldout-dus", type=int, default=12,
                      help="held-out DUs every method is adapted to and scored on (default: 12)")
    meta.add_argument("--scale-dus", type=int, default=30, help="scaling test (default: 30)")
    meta.add_argument("--scale-ues", type=int, default=30, help="scaling test (default: 30)")
    meta.add_argument("--first-order", action="store_true", help="first-order MAML")
    meta.add_argument("--updates-per-iteration", type=int, default=10,
                      help="updates per training iteration, each on fresh batches "
                      "(default: 10)")
    meta.add_argument("--tasks-per-update", type=int, default=7,
                      help="DUs drawn for each update (the meta-batch; default: 7, so the "
                      "30-DU scaling run costs per update what 7 DUs do)")
    meta.add_argument("--out", help="folder for the jobs, figures, report.md")
    meta.add_argument("--report-only", action="store_true",
                      help="redraw report.md and the figures from --out, run nothing")
    meta.add_argument("--save-model", metavar="PATH",
                      help="instead: meta-train (--dus x --ues, --iterations, seed 0) and save "
                      "the weights for `agent.params.model` of a metahrl run")
    meta.set_defaults(func=cmd_metahrl)

    compare = sub.add_parser("compare", help="agents x seeds online through the run engine: "
                             "mean reward, power, throughput, paired differences with 95 %% "
                             "intervals; compare.md, compare.json; resumable")
    compare.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                         help="testbed config of every run (default: %(default)s)")
    compare.add_argument("--agents", nargs="+", required=True, metavar="NAME[:KEY=VALUE...]",
                         help="agents, each with its parameters (YAML values), e.g. metahrl "
                         "fixed-slicing:rule=best-constant; the first is the reference")
    compare.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    compare.add_argument("--rounds", type=int, help="rounds per run (default: CONFIG's)")
    compare.add_argument("--out", required=True, help="folder for the runs and the report; "
                         "the same command continues there")
    compare.set_defaults(func=cmd_compare)

    collect = sub.add_parser("collect", help="measure a dataset: a policy grid x conditions, "
                             "each cell held for a dwell time; resumable")
    collect.add_argument("config", nargs="*", default=[str(DEFAULT_CONFIG)],
                         help=f"testbed config (default: {DEFAULT_CONFIG}); several: one sweep "
                         "per testbed at once, in --out/<testbed name> (hil/lab.py)")
    collect.add_argument("--grid", nargs="*", default=[], metavar="AXIS=V1,V2",
                         help=f"policy axes ({', '.join(POLICY_FIELDS)}; default: the config's "
                         "policy space, `paper` for the "
                         "1080) and condition axes (dl_load_mbps, ul_load_mbps; dl_cqi, ul_cqi on "
                         "the emulated vBS; dl_snr_db, ul_snr_db on srsRAN; default 32, 23, 15, "
                         "15, the config's SNRs)")
    collect.add_argument("--condition", action="append", default=[],
                         metavar="AXIS=V,AXIS=V", help="one condition (repeat for more), "
                         "instead of condition axes in --grid: for conditions that go together, "
                         "e.g. dl_load_mbps=0.5,ul_load_mbps=0.5,dl_snr_db=2,ul_snr_db=-74")
    collect.add_argument("--dwell-rounds", type=int, default=10,
                         help="rounds measured per cell (default: %(default)s)")
    collect.add_argument("--warmup-rounds", type=int, default=2,
                         help="rounds held and discarded before them (default: %(default)s)")
    collect.add_argument("--block-warmup-rounds", type=int, default=0,
                         help="rounds discarded at the start of each block, while a testbed "
                         "just brought up settles (default: %(default)s)")
    collect.add_argument("--reps", type=int, default=1, help="repetitions of each cell")
    collect.add_argument("--blocks-per-condition", type=int, default=1, metavar="K",
                         help="deal each condition's cells into K blocks, all blocks in random "
                         "order, each opening with a reference cell, so that the sweep "
                         "measures drift over its time (default: %(default)s)")
    collect.add_argument("--reference-policy", type=int, metavar="INDEX",
                         help="the policy a reference cell measures (default with K > 1: the "
                         "grid's last, every cap at its loosest)")
    collect.add_argument("--check-fit", action="store_true",
                         help="measure nothing: say which power-model coefficients the plan's "
                         "cells would let `hil fit-power` determine (predicted with the "
                         "testbed's calibration) and what the others need")
    collect.add_argument("--retries", type=int, default=1, metavar="N",
                         help="measure a failed cell again at the sweep's end, up to N more "
                         "times (default: %(default)s)")
    collect.add_argument("--seed", type=int, default=0, help="seed of the measuring order")
    collect.add_argument("--out", help="sweep folder; the same command continues a sweep "
                         "in it (default: datasets/<config name>; for several configs the "
                         "lab's folder, default datasets/lab-<time>)")
    collect.set_defaults(func=cmd_collect)

    fit = sub.add_parser("fit-power", help="fit the power model to a collected dataset: R^2, "
                         "RMSE, residual plot, calibration YAML")
    fit.add_argument("dataset", nargs="+", help="sweep folders (or a cells.parquet), fitted "
                     "together")
    fit.add_argument("--power", default="power_w", choices=("power_w", "enb_cpu_model_w"),
                     help="the watts to fit: the meter's, or the CPU model on the eNB's CPU "
                     "alone (a one-machine ZMQ testbed; default: %(default)s)")
    fit.add_argument("--fit-link", action="store_true",
                     help="also fit the link adaptation (MCS per CQI) the datasets measured")
    fit.add_argument("--base", help="calibration whose cell, channel and fixed parts the fit "
                     "keeps (default: the sweep's, else the bundled emulated-nuc.yaml)")
    fit.add_argument("--out", help="calibration YAML to write (default: DATASET/calibration.yaml)")
    fit.add_argument("--name", help="`name:` of the calibration (default: fitted-<sweep>)")
    fit.set_defaults(func=cmd_fit_power)

    pub = sub.add_parser("publish-dataset", help="a finished sweep as a portable dataset: "
                         "cells, run.json, provenance.json, no per-round blocks or local paths")
    pub.add_argument("sweep", nargs="+", help="`hil collect` sweep folders: one, or one plan "
                     "measured again with other seeds (their cells become repetitions)")
    pub.add_argument("dest", help="folder to write (e.g. datasets/measured/<name>)")
    pub.add_argument("--rebuild", action="store_true", help="first derive the cells again from "
                     "the sweep's rounds with this version's definitions (measures nothing)")
    pub.set_defaults(func=cmd_publish_dataset)

    land = sub.add_parser("landscape", help="does the emulator rank the policies as a measured "
                          "dataset does? Spearman and the best policy per condition, a figure")
    land.add_argument("dataset", help="a `hil collect` sweep folder")
    land.add_argument("--calibration", default=str(DEFAULT_CALIBRATION),
                      help="the emulator's calibration (default: %(default)s)")
    land.add_argument("--delta", type=float, action="append",
                      help="reward weight of power (repeat; default: 0.1 and 1.5)")
    land.add_argument("--power", default="power_w", choices=("power_w", "enb_cpu_model_w"),
                      help="the measured watts (default: the meter's)")
    land.add_argument("--out", help="folder for landscape.png (default: DATASET)")
    land.set_defaults(func=cmd_landscape)

    srsran = sub.add_parser("srsran", help="the patched srsRAN_4G (patches/srsRAN_4G)")
    srsran_sub = srsran.add_subparsers(dest="srsran_command", required=True)
    srs_build = srsran_sub.add_parser(
        "build", help="build the patched srsepc, srsenb, srsue and RF plugins from upstream's "
        "source and install them into a prefix, stamped with the patch series")
    origin = srs_build.add_mutually_exclusive_group(required=True)
    origin.add_argument("--source", metavar="DIR", help="a local srsRAN_4G git checkout (it is "
                        "not changed: the pinned upstream commit is exported from it)")
    origin.add_argument("--clone", action="store_true",
                        help="clone the upstream tag into the work folder (needs the internet)")
    srs_build.add_argument("--prefix", default=DEFAULT_PREFIX,
                           help="install here: bin/, lib/, the stamp (default: %(default)s, "
                           "where the shipped zmq-srsran.yaml looks)")
    srs_build.add_argument("--work", help="source and CMake tree, kept for fast rebuilds "
                           "(default: ~/.cache/vbs-hil/srsran-build)")
    srs_build.add_argument("--uhd", action="store_true",
                           help="also the UHD radio plugin, for USRP B210s (needs libuhd-dev)")
    srs_build.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                           help="parallel compile jobs (default: the CPU count)")
    srs_build.add_argument("--no-install-deps", action="store_true",
                           help="only check the Debian build packages, install none")
    srs_build.set_defaults(func=cmd_srsran_build)

    accept = sub.add_parser("acceptance", help="the acceptance suite against a testbed: caps "
                            "kept and throughput following them, the meter, starving caps, "
                            "runs, Ctrl-C, a killed controller resumed, CURVE; report.md")
    accept.add_argument("config", help="the testbed config")
    accept.add_argument("--report", metavar="DIR", help="where report.md and its figures go "
                        "(default: acceptance/<name>-<time>)")
    accept.add_argument("-k", metavar="EXPR", help="only the tests whose names match (pytest's "
                        "-k)")
    accept.set_defaults(func=cmd_acceptance)

    serve = sub.add_parser("serve", help="the live view of runs: /metrics for Prometheus, "
                           "/api/runs, /api/rounds (read-only, beside the runs)")
    serve.add_argument("paths", nargs="*", default=["runs"], metavar="PATH",
                       help="run directories or folders of runs (default: runs)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s; any other needs a "
                            "token)")
    serve.add_argument("--port", type=int, default=8765, help="default: %(default)s")
    serve.add_argument("--token", help="required of every request when not on loopback "
                       "(default: generated and printed)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HilError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
