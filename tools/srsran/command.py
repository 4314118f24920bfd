"""`hil srsran build` (arguments declared in tools/cli.py): the patched srsRAN, one command.

    hil srsran build --source ~/srsRAN_4G             # a local checkout (any branch: the
                                                      # pinned commit is exported from it)
    hil srsran build --clone                          # clone the upstream tag (internet)
    hil srsran build --source ... --uhd --prefix /opt/vbs-hil-srsran   # B210s, elsewhere

Prints each step, a bar over the objects to compile with an ETA (plain lines without a
terminal), and the stamp at the end; `make srsran SRSRAN_SRC=...` runs it from the Makefile.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from drivers.srsran.series import STAMP_FILE
from hil.progress import LineLog, progress_bar
from tools.srsran.build import DEFAULT_WORK, BuildPlan, build

LINE_EVERY_S = 30.0


def run(args: argparse.Namespace, console: Console) -> int:
    plan = BuildPlan(prefix=Path(args.prefix).expanduser(),
                     work=Path(args.work or DEFAULT_WORK).expanduser(),
                     source=Path(args.source) if args.source else None,
                     radios=("zmq", "uhd") if args.uhd else ("zmq",),
                     jobs=args.jobs,
                     install_deps=not args.no_install_deps)
    started = time.monotonic()

    def say(text: str) -> None:
        console.print(f"[bold]srsran:[/] {text}", highlight=False, soft_wrap=True)

    bar = progress_bar(console, "compiling")
    lines = LineLog(console, 0, "compiling", "objects", every_s=LINE_EVERY_S)
    with bar:
        task = bar.add_task("build", total=None, note="")

        def on_progress(done: int, total: int, _latest: str) -> None:
            bar.update(task, completed=done, total=total)
            lines.total = total
            lines.advance()

        stamp = build(plan, say, on_progress)
    prefix = plan.prefix.expanduser()
    say(f"installed into {prefix} in {time.monotonic() - started:.0f} s: bin/ "
        f"(srsepc, srsenb, srsue), lib/ (RF plugins), {STAMP_FILE} (patch series "
        f"{stamp.short})")
    say("the shipped testbed_configs/zmq-srsran.yaml looks there (vbs.srsran.prefix); next: "
        "hil check testbed_configs/zmq-srsran.yaml")
    return 0
