"""Reading a sweep back: its cells, the policy grid they index, its run.json and provenance,
and the measured watts a study chooses (`POWER_SOURCES`).

On a one-machine ZMQ testbed the meter is a model of the host's CPU (`meter.kind:
cpu_model`), and the host runs the UE, the core, iperf3 and the controller beside the eNB.
A BBU host runs the eNB alone, so the vBS's watts are better stood in for by the same CPU
model applied to the eNB process's CPU (`enb_cpu_model_w`); which one a fit or a comparison
used is always named with its result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agents.policy_space import PolicySpace
from hil.base.errors import HilError
from hil.recorder import RunDirectory
from tools.collect.schema import CELL_SCHEMA, last_attempts

POWER_SOURCES = ("power_w", "enb_cpu_model_w")


class DatasetError(HilError):
    """A sweep folder that cannot be read as a dataset."""


@dataclass(frozen=True)
class Sweep:
    path: Path
    cells: pd.DataFrame
    space: PolicySpace
    meta: dict[str, Any]
    provenance: dict[str, Any] | None

    def with_power(self, source: str) -> pd.DataFrame:
        """The cells with `source` watts in column `source` (`power_w` is the meter's)."""
        if source == "power_w":
            return self.cells
        if source != "enb_cpu_model_w":
            raise DatasetError(f"unknown power source {source!r}; known: "
                               f"{', '.join(POWER_SOURCES)}")
        meter = self.meta["config"]["meter"]
        if meter["kind"] != "cpu_model":
            raise DatasetError(f"{self.path}: enb_cpu_model_w applies the cpu_model meter to "
                               f"the eNB's CPU; this sweep's meter is {meter['kind']}")
        watts_per_pct = meter["per_core_w"] * self._vbs_host_cpus() / 100.0
        return self.cells.assign(
            enb_cpu_model_w=meter["idle_w"] + watts_per_pct * self.cells["enb_cpu_pct"]
            + meter["radio_w"],
            enb_cpu_model_w_var=watts_per_pct ** 2 * self.cells["enb_cpu_pct_var"])

    def _vbs_host_cpus(self) -> int:
        machine = (self.provenance or {}).get("vbs", {}).get("machine")
        if not isinstance(machine, dict) or not machine.get("cpus"):
            raise DatasetError(f"{self.path}: provenance.json does not give the vBS host's CPU "
                               "count, which enb_cpu_pct (a share of all its CPUs) needs")
        return int(machine["cpus"])


def read_sweep(path: Path) -> Sweep:
    """A `hil collect` folder: cells.parquet (or the journal of a live one), run.json and,
    when there is one, provenance.json."""
    path = Path(path)
    sweep = RunDirectory(path, table="cells")
    if not path.is_dir() or not (sweep.parquet_path.exists() or sweep.journal_path.exists()):
        raise DatasetError(f"{path}: no cells.parquet here; give a `hil collect` sweep folder")
    if not sweep.meta_path.exists():
        raise DatasetError(f"{path}: no run.json beside the cells, so the policy grid they "
                           "index is unknown")
    meta = sweep.read_meta()
    provenance_path = path / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else None
    return Sweep(path, last_attempts(sweep.read_rounds(CELL_SCHEMA)).to_pandas(),
                 PolicySpace(**meta["plan"]["space"]), meta, provenance)
