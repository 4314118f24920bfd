"""Following a run directory while it is written: every recorded row once, in order.

Why a reader of its own: `hil serve` shows a run live from another process, so it cannot
ask the recorder; it reads what the recorder writes (hil/journal.py), which changes under
it in three ways:

- the journal grows by one Arrow message per row, the last possibly cut short mid-write:
  the follower keeps its byte offset and reads only whole messages past it;
- every `segment_rows` rows the journal's rows go to a Parquet segment and a new journal
  (another file, atomically renamed over the old) starts at the next row: the follower
  notices the new file, takes the rows it had not seen from the segment, then reads the new
  journal from its start;
- `hil run --resume` rewrites every row into a fresh journal starting at row 0 (dropping
  the rows after a SIGKILLed run's checkpoint) and `close()` leaves rounds.parquet alone:
  rows already delivered are skipped; if the resumed journal started with fewer rows than
  were delivered (its header says how many it started with: a SIGKILLed run resumed from an
  older checkpoint), the follower counts a rewind and delivers the rows from there again.

Rows are numbered by their position in the run (row i is the i-th recorded row), which is
`round` except after such a rewind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hil.base.errors import RecorderError
from hil.journal import FIRST_ROW_KEY, START_ROWS_KEY
from hil.recorder import RunDirectory
from hil.schema import ROUND_SCHEMA


@dataclass
class _Journal:
    """The journal file being read: which file, the run row of its first message, and the
    offset after the last whole message read (and the rows that makes)."""

    inode: int
    first_row: int
    schema: pa.Schema
    offset: int
    rows: int


class RunFollower:
    """New rows of one run directory on each `poll()`, each row exactly once."""

    def __init__(self, path: Path, schema: pa.Schema = ROUND_SCHEMA, table: str = "rounds"):
        self.run_dir = RunDirectory(Path(path), table)
        self.schema = schema
        self.delivered = 0
        """Rows delivered so far: the run row the next poll starts at."""
        self.rewinds = 0
        """How often the run was found to hold fewer rows than delivered (see the module)."""
        self._journal: _Journal | None = None

    def poll(self) -> pa.Table:
        """The rows recorded since the last poll (possibly none), in run order.

        RecorderError if the directory holds no run (never had, or was removed).
        """
        if not self.run_dir.path.is_dir():
            raise RecorderError(f"{self.run_dir.path} is not a directory (removed?)")
        try:
            if self.run_dir.journal_path.exists():
                return self._poll_live()
        except FileNotFoundError:  # the journal went mid-read: compacted, or the run closed
            self._journal = None
        if self.run_dir.journal_path.exists():
            return self.schema.empty_table()  # replaced just now: read it next time
        self._journal = None
        parquet = self.run_dir.parquet_path
        if parquet.exists() and pq.read_metadata(parquet).num_rows > self.delivered:
            return self._take(pq.read_table(parquet), first_row=0)
        return self.schema.empty_table()

    # ---- the live run
    def _poll_live(self) -> pa.Table:
        path = self.run_dir.journal_path
        with pa.OSFile(str(path)) as source:
            inode = os.fstat(source.fileno()).st_ino
            journal = self._journal
            if journal is None or journal.inode != inode:
                journal = self._open(source, inode)
                if journal is None:
                    return self.schema.empty_table()  # its header is not whole yet
            parts = []
            if journal.first_row > self.delivered:  # compacted past us: the segments hold them
                parts.append(self._segment_rows(self.delivered, journal.first_row))
            source.seek(journal.offset)
            batches = []
            while True:
                try:
                    message = pa.ipc.read_message(source)
                except EOFError:
                    break
                except (pa.ArrowInvalid, OSError):
                    break  # a message cut short: being written, read it next time
                batches.append(pa.ipc.read_record_batch(message, journal.schema))
                journal.offset = source.tell()
            self._journal = journal
        if batches:
            rows = pa.Table.from_batches(batches, schema=journal.schema)
            parts.append(self._take(rows, journal.first_row + journal.rows))
            journal.rows += rows.num_rows
        parts = [p for p in parts if p.num_rows]
        if not parts:
            return self.schema.empty_table()
        return pa.concat_tables([p.replace_schema_metadata(None) for p in parts])

    def _open(self, source: pa.NativeFile, inode: int) -> _Journal | None:
        """A journal not seen before, from its header; if it started with fewer rows than
        were delivered (a resume that dropped rows after its checkpoint), the rows from
        there are delivered again (a rewind)."""
        try:
            schema = pa.ipc.read_schema(pa.ipc.read_message(source))
        except (EOFError, pa.ArrowInvalid, OSError):
            return None
        metadata = schema.metadata or {}
        first_row = int(metadata.get(FIRST_ROW_KEY, b"0"))
        if START_ROWS_KEY in metadata:
            kept = first_row + int(metadata[START_ROWS_KEY])
            if kept < self.delivered:
                self.rewinds += 1
                self.delivered = kept
        return _Journal(inode, first_row, schema, source.tell(), 0)

    def _segment_rows(self, start: int, stop: int) -> pa.Table:
        """Rows [start, stop) from the Parquet segments that chain over them."""
        segments, parts, row = self.run_dir.segments(), [], start
        while row < stop:
            first = max((f for f in segments if f <= row), default=None)
            if first is None or segments[first][0] <= row:
                raise RecorderError(f"{self.run_dir.path}: no segment holds row {row}")
            end, path = segments[first]
            table = pq.read_table(path)
            parts.append(table.slice(row - first, min(end, stop) - row))
            row = min(end, stop)
        self.delivered = stop
        return pa.concat_tables([p.replace_schema_metadata(None) for p in parts])

    def _take(self, rows: pa.Table, first_row: int) -> pa.Table:
        """The rows of `rows` (run rows first_row ...) not delivered yet; marks them delivered."""
        skip = max(0, self.delivered - first_row)
        new = rows.slice(skip)
        self.delivered = max(self.delivered, first_row + rows.num_rows)
        return new.replace_schema_metadata(None)
