"""`hil publish-dataset SWEEP... DEST`: finished sweeps as a dataset others can use and a
repository can hold: the cells (Parquet and the dataset_dlul CSV), run.json and
provenance.json, without the per-round block folders, and with every path of the measuring
machine replaced by its last part (`<local>/name`): those paths mean nothing elsewhere.

Several sweeps of one plan (measured again with another `--seed`, so in another order)
become one dataset whose cells are their repetitions: sweep i's cells are repetition i.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tools.collect.export import write_dlul_csv
from tools.collect.reading import DatasetError, read_sweep
from tools.collect.schema import CELL_SCHEMA
from tools.collect.sweep import DLUL_NAME

REPO = Path(__file__).resolve().parents[2]


def publish(sweep_dirs: list[Path], dest: Path) -> list[Path]:
    sweeps = [read_sweep(path) for path in sweep_dirs]
    for sweep in sweeps:
        if sweep.meta.get("status") != "completed":
            raise DatasetError(f"{sweep.path}: the sweep is {sweep.meta.get('status')!r}; "
                               "finish it first (run the same hil collect command again)")
    first = sweeps[0]
    plan = {k: v for k, v in first.meta["plan"].items() if k != "seed"}
    for other in sweeps[1:]:
        theirs = {k: v for k, v in other.meta["plan"].items() if k != "seed"}
        if theirs != plan or plan["reps"] != 1:
            raise DatasetError(f"{other.path}: not the plan of {first.path} measured again "
                               "(only the seed may differ, with one repetition each)")
    dest.mkdir(parents=True, exist_ok=True)
    cells = pd.concat([sweep.cells.assign(rep=i) for i, sweep in enumerate(sweeps)],
                      ignore_index=True)
    cells["cell_id"] = [f"c{c}-p{p}-r{r}" for c, p, r in
                        zip(cells["condition"], cells["policy_index"], cells["rep"])]
    pq.write_table(pa.Table.from_pandas(cells, schema=CELL_SCHEMA, preserve_index=False),
                   dest / "cells.parquet")
    write_dlul_csv(cells, dest / DLUL_NAME)
    meta = dict(first.meta)
    if len(sweeps) > 1:
        meta["plan"] = {**first.meta["plan"], "reps": len(sweeps),
                        "seeds": [s.meta["plan"]["seed"] for s in sweeps]}
        meta["cells_total"] = meta["cells_done"] = len(cells)
    provenance = dict(first.provenance or {})
    provenance["sweeps"] = [{"seed": s.meta["plan"]["seed"], "start_utc": s.meta["start_utc"],
                             "stop_utc": s.meta.get("stop_utc"),
                             "vbs_hil_commit": (s.provenance or {}).get("vbs_hil_commit")}
                            for s in sweeps]
    written = []
    for name, data in (("run.json", meta), ("provenance.json", provenance)):
        (dest / name).write_text(json.dumps(portable(data), indent=2) + "\n")
        written.append(dest / name)
    return [dest / "cells.parquet", dest / DLUL_NAME, *written]


def portable(value: Any) -> Any:
    """`value` with absolute paths made relative to the repository where they are inside it,
    and reduced to `<local>/name` where they are not."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path = Path(value)
        try:
            return str(path.relative_to(REPO))
        except ValueError:
            return f"<local>/{path.name}"
    return value
