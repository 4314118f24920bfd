"""Recording a run: one directory per run, one typed row per round, nothing lost on a crash.

A run directory holds

    run.json            metadata (config, seed, versions, start/stop, exit status); the engine
                        supplies the content, this module only writes it atomically
    rounds.arrow        the journal while the run is live: an Arrow IPC stream, one record batch
                        per round, appended and handed to the OS as each round ends
    rounds.<first>-<end>.parquet   segments of a long live run: every `segment_rows` rows the
                        journal is compacted into one and starts again empty
    rounds.parquet      the finished table, written from the journal at `close()`; the journal
                        is then removed
    checkpoint/state.pkl  the engine's resumable state (agent, RNG, round index)

The rows themselves are the journal's business (`hil/journal.py`: append, compaction,
reading back); this module is the directory around them.
"""

from __future__ import annotations

import json
import pickle
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from hil.base.errors import RecorderError
from hil.base.files import atomic_write
from hil.journal import TableFiles, read_journal, read_parquet
from hil.schema import ROUND_SCHEMA

META_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint/state.pkl"


class RunDirectory(TableFiles):
    """The files of one run: its table's (`TableFiles`), run.json and the checkpoint.
    Constructing it touches nothing on disk."""

    @classmethod
    def create(cls, root: Path, name: str, table: str = "rounds") -> RunDirectory:
        """Make a new, empty `root/name`; if taken, `name-2`, `name-3`, ... (never reuses one)."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            candidate, suffix = root / name, 1
            while True:
                try:
                    candidate.mkdir()  # atomic: of two runs racing for a name, one gets it
                    return cls(candidate, table)
                except FileExistsError:
                    suffix += 1
                    candidate = root / f"{name}-{suffix}"
        except OSError as exc:
            raise RecorderError(
                f"cannot create a run directory under {root}: {exc.strerror or exc}; "
                "choose a writable directory for runs"
            ) from exc

    @property
    def meta_path(self) -> Path:
        return self.path / META_NAME

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace run.json; datetimes are written as ISO 8601 strings, paths as strings."""
        text = json.dumps(meta, indent=2, default=_json_default) + "\n"
        atomic_write(self.meta_path, lambda f: f.write(text.encode()))

    def update_meta(self, **fields: Any) -> None:
        """Merge `fields` into run.json (top-level keys are replaced), creating it if absent."""
        meta = self.read_meta() if self.meta_path.exists() else {}
        self.write_meta(meta | fields)

    def read_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_text())
        except FileNotFoundError as exc:
            raise RecorderError(
                f"{self.meta_path} does not exist; is {self.path} a run directory?"
            ) from exc
        except (OSError, ValueError) as exc:
            raise RecorderError(f"cannot read {self.meta_path}: {exc}") from exc
        if not isinstance(meta, dict):
            raise RecorderError(f"{self.meta_path}: expected a JSON object at the top level")
        return meta

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically replace the checkpoint; `state["round"]` is the engine's round index."""
        if "round" not in state:
            raise RecorderError(
                f"checkpoint for {self.path}: the state has no 'round' key; "
                "the engine must record which round the state belongs to"
            )
        atomic_write(self.checkpoint_path, lambda f: pickle.dump(state, f, protocol=5))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last saved state, or None if none was saved. Unpickles: trust your run dirs."""
        try:
            with open(self.checkpoint_path, "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            return None
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise RecorderError(
                f"cannot read checkpoint {self.checkpoint_path}: {exc}; "
                "restore it from a backup or start a new run"
            ) from exc


def read_rounds(path: Path) -> pd.DataFrame:
    """Rows of a run directory, a rounds.parquet or a rounds.arrow journal, for offline tools.

    `frame.attrs["units"]` maps each column to its unit. Integer columns holding nulls come
    back as floats with NaN (pandas' default conversion).
    """
    path = Path(path)
    if path.is_dir():
        table = RunDirectory(path).read_rounds()
    elif path.suffix == ".parquet":
        table = read_parquet(path)
    elif path.is_file():
        table = read_journal(path, ROUND_SCHEMA)[0]
    else:
        raise RecorderError(f"{path} is neither a run directory, a Parquet file nor a journal")
    frame = table.to_pandas()
    frame.attrs["units"] = {
        field.name: field.metadata[b"unit"].decode()
        for field in table.schema
        if field.metadata and b"unit" in field.metadata
    }
    return frame


def _json_default(value: object) -> str:
    if isinstance(value, date):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"run.json: cannot write {value!r} of type {type(value).__name__}")
