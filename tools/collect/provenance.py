"""`provenance.json` of a sweep: what was measured, where and how, beside its cells.

A calibration fitted to a dataset is only as good as the reader's knowledge of the
dataset, so every sweep states, when it starts: the machine that ran the controller and
the vBS host (CPU model, cores, kernel), the vBS (for srsRAN: the build stamp beside the
eNB binary, i.e. upstream commit and patch series), the meter and its coefficients, the
conditions of the plan (loads, SNRs), the vbs-hil commit and the date. Facts that cannot
be read (a host that does not answer) are recorded as such, never guessed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hil.base.repo import REPO
from hil.config import HilConfig
from hil.testbeds import kind_of
from tools.collect.plan import SweepPlan


def provenance(cfg: HilConfig, plan: SweepPlan) -> dict[str, Any]:
    """Everything the sweep can state about itself before it measures."""
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "what": "hil collect: each cell one policy of the plan's grid under one condition, "
                f"held {plan.warmup_rounds} + {plan.dwell_rounds} rounds of {cfg.round_s} s "
                f"(warm-up discarded, dwell averaged), {plan.block_warmup_rounds} rounds "
                "discarded at each block's start; cells in random order within blocks",
        "vbs_hil_commit": _git_commit(),
        "controller": _machine_here(),
        "vbs": kind_of(cfg).provenance(cfg),
        "meter": cfg.meter.model_dump(mode="json"),
        "conditions": [{"index": i, "label": c.label(), **c.__dict__}
                       for i, c in enumerate(plan.conditions)],
    }


def write_provenance(path: Path, cfg: HilConfig, plan: SweepPlan) -> Path:
    out = path / "provenance.json"
    out.write_text(json.dumps(provenance(cfg, plan), indent=2) + "\n")
    return out


def _machine_here() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    return {"hostname": platform.node(), "cpu_model": cpu, "cpus": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def _git_commit() -> str | None:
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None
