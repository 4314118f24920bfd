"""`hil publish-dataset SWEEP DEST`: a finished sweep as a dataset others can use and a
repository can hold: its cells (Parquet and the dataset_dlul CSV), run.json and
provenance.json, without the per-round block folders, and with every path of the measuring
machine replaced by its last part (`<local>/name`): those paths mean nothing elsewhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tools.collect.reading import DatasetError, read_sweep
from tools.collect.sweep import DLUL_NAME

REPO = Path(__file__).resolve().parents[2]
FILES = ("cells.parquet", DLUL_NAME, "provenance.json")


def publish(sweep_dir: Path, dest: Path) -> list[Path]:
    sweep = read_sweep(sweep_dir)
    if sweep.meta.get("status") != "completed":
        raise DatasetError(f"{sweep_dir}: the sweep is {sweep.meta.get('status')!r}; finish it "
                           "first (run the same hil collect command again)")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        source = sweep_dir / name
        if source.exists():
            if name.endswith(".json"):
                data = json.loads(source.read_text())
                (dest / name).write_text(json.dumps(portable(data), indent=2) + "\n")
            else:
                shutil.copyfile(source, dest / name)
            written.append(dest / name)
    meta = portable(sweep.meta)
    (dest / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    written.append(dest / "run.json")
    return written


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
