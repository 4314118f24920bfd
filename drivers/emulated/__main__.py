"""`python -m drivers.emulated`: start an emulated vBS (one user in a scenario, or a DU of
users in slices) and serve rtctl v1 and its meter until SIGTERM/SIGINT (see
`drivers.emulated.vbs`). It prints one JSON line with the endpoints it bound once ready.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from drivers.emulated.sliced_vbs import SlicedVbs
from drivers.emulated.vbs import EmulatedVbs, SteppedClock, TtiClock, serve
from drivers.rtctl.curve import ServerCurve
from hil.base import model
from hil.base.scenarios import make_scenario
from hil.base.slices import du_profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Emulated srsENB speaking rtctl v1 over ZMQ.")
    p.add_argument("--calibration", type=Path, required=True)
    p.add_argument("--scenario", default="A")
    p.add_argument("--trace", type=Path)
    p.add_argument("--switch-epoch", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-s", type=float, default=1.0)
    p.add_argument("--speedup", type=float, default=1.0)
    p.add_argument("--stepped", action="store_true",
                   help="each KPI window a `get` closes is one round of TTIs, simulated at once")
    p.add_argument("--control", default="tcp://127.0.0.1:0")
    p.add_argument("--meter", default="tcp://127.0.0.1:0")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when the process that started it dies (local runs)")
    p.add_argument("--exit-when-idle-s", type=float, metavar="S",
                   help="exit after S seconds without a control request (SSH hosts)")
    p.add_argument("--scpi-meter", metavar="HOST:PORT",
                   help="also serve a GPM-8213 SCPI twin of the modelled power on raw TCP")
    p.add_argument("--du-ues", type=int, metavar="N",
                   help="serve N users in slices (drivers.emulated.sliced_vbs) instead of one")
    p.add_argument("--du-seed", type=int, default=0, help="which DU of the task distribution")
    p.add_argument("--curve-dir", type=Path, metavar="DIR",
                   help="take only CURVE clients authorized in DIR (made by `hil keys DIR`)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    cal = model.load_calibration(args.calibration)
    clock = SteppedClock() if args.stepped else TtiClock(args.speedup)
    vbs: EmulatedVbs
    if args.du_ues:
        vbs = SlicedVbs(cal, du_profile(args.du_ues, args.du_seed), seed=args.seed,
                        clock=clock)
    else:
        scenario = make_scenario(args.scenario, args.seed, trace_path=args.trace,
                                 switch_epoch=args.switch_epoch)
        vbs = EmulatedVbs(cal, scenario, seed=args.seed, round_s=args.round_s,
                          clock=clock)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def ready(bound: dict) -> None:
        print(json.dumps({"ready": True, **bound, "pid": os.getpid()}), flush=True)

    serve(vbs, args.control, args.meter, stop, on_ready=ready, scpi_meter=args.scpi_meter,
          exit_with_parent=args.exit_with_parent, idle_exit_s=args.exit_when_idle_s,
          curve=ServerCurve(args.curve_dir.expanduser()) if args.curve_dir else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
