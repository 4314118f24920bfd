"""What `hil serve` knows about the runs it follows: their rows, totals and agent.

Read-only and outside the round loop: everything here comes from the files the recorder
and the engine write (hil/follow.py reads the rows; run.json and the checkpoint give the
run's name, agent and the agent's state). Nothing secret leaves this module: a run is
described by its name, testbed, agent, status and counts, never by its config (which
holds SSH key paths and host names).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hil.base.errors import RecorderError
from hil.follow import RunFollower
from hil.recorder import META_NAME, RunDirectory

log = logging.getLogger(__name__)

TOP_POLICIES = 10
"""Policy probabilities exported per run: the most likely ones, not all 1080 series."""
TABLES = ("rounds", "cells")
"""A run directory records `rounds`; a `hil collect` sweep records `cells`."""


def reason_kind(reason: str) -> str:
    """An invalid round's reason without its particulars (addresses, numbers), for a
    metric label: the text before the first colon, parentheses dropped."""
    head = re.sub(r"\([^)]*\)", "", reason).split(":", 1)[0]
    return " ".join(head.split())[:60] or "unknown"


@dataclass
class Totals:
    """Counters over every row so far, and the last row's gauges."""

    rows: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    violations: int = 0
    energy_j: float = 0.0
    dl_bits: int = 0
    ul_bits: int = 0
    restarts: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def add(self, rows: pa.Table) -> None:
        self.rows += rows.num_rows
        self.violations += int(_column_sum(rows, "violations"))
        self.energy_j += _column_sum(rows, "energy_j")
        self.dl_bits += int(_column_sum(rows, "dl_bits"))
        self.ul_bits += int(_column_sum(rows, "ul_bits"))
        if "invalid_reason" in rows.column_names:
            for reason in rows.column("invalid_reason").drop_null().to_pylist():
                kind = reason_kind(reason)
                self.invalid[kind] = self.invalid.get(kind, 0) + 1
        if rows.num_rows:
            self.last = rows.slice(rows.num_rows - 1).to_pylist()[0]
            restarts = self.last.get("testbed_restarts")
            if restarts is not None:
                self.restarts = max(self.restarts, int(restarts))


@dataclass(frozen=True)
class AgentView:
    """The agent as its last checkpoint left it."""

    round: int
    top: list[tuple[int, float]]  # (policy index, probability), most likely first
    entropy_bits: float
    gamma: float | None
    grid: list[list[float]]  # the probabilities as summary.png's heat map lays them out
    dl_labels: list[str]  # one per grid row: "gain dB / max MCS / PRB ratio"
    ul_labels: list[str]  # one per grid column: "max MCS / PRB ratio"
    children: dict[str, float]  # MetBS: each child's share of the rounds (eq. 10's y)

    def as_json(self) -> dict[str, Any]:
        return {"round": self.round, "gamma": self.gamma, "entropy_bits": self.entropy_bits,
                "top": [{"policy": p, "probability": q} for p, q in self.top],
                "grid": self.grid, "dl_labels": self.dl_labels, "ul_labels": self.ul_labels,
                "children": self.children}


class FollowedRun:
    """One followed directory: its rows (kept as Arrow chunks), totals and agent view."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        """How the run is called in the view and its metrics (unique among followed runs)."""
        self.table = _table_of(self.path, "rounds")
        self.follower = RunFollower(self.path, schema=pa.schema([]), table=self.table)
        self.lock = threading.Lock()
        self._chunks: list[pa.Table] = []
        self.totals = Totals()
        self.error: str | None = None
        self._rewinds_seen = 0
        self._agent: AgentView | None = None
        self._checkpoint_mtime = 0.0

    def refresh(self) -> None:
        """Take the rows recorded since the last refresh; note a removed directory."""
        if not self.totals.rows:  # a sweep's cells table may appear after its run.json
            table = _table_of(self.path, self.table)
            if table != self.table:
                self.table = table
                self.follower = RunFollower(self.path, schema=pa.schema([]), table=table)
        try:
            rows = self.follower.poll()
        except (RecorderError, OSError, pa.ArrowException) as exc:
            self.error = str(exc)
            return
        with self.lock:
            self.error = None
            if self.follower.rewinds > self._rewinds_seen:
                self._rewinds_seen = self.follower.rewinds
                self._rewind(self.follower.delivered - rows.num_rows)
            if rows.num_rows:
                self._chunks.append(rows)
                self.totals.add(rows)

    def _rewind(self, keep: int) -> None:
        """The run dropped rows (a resume from an older checkpoint): forget them; counters
        are recomputed from the rows kept."""
        kept = pa.concat_tables(self._chunks).slice(0, keep) if self._chunks else None
        self._chunks = [kept] if kept is not None and kept.num_rows else []
        self.totals = Totals()
        for chunk in self._chunks:
            self.totals.add(chunk)

    def rows(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Rows since..since+limit as JSON-ready dicts (NaN as null, times as ISO text)."""
        with self.lock:
            if not self._chunks or since >= self.totals.rows:
                return []
            table = pa.concat_tables(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks = [table]  # concatenated once, kept so
            part = table.slice(since, limit)
        return [{k: _json_value(v) for k, v in row.items()} for row in part.to_pylist()]

    def describe(self) -> dict[str, Any]:
        """What /api/runs says about the run: nothing from the config but its name."""
        meta = self._meta()
        exit_ = meta.get("exit") or {}
        with self.lock:
            rows, restarts = self.totals.rows, self.totals.restarts
            stage = self.totals.last.get("testbed_stage")
        return {
            "run": self.name, "table": self.table, "rows": rows,
            "testbed": (meta.get("config") or {}).get("name"), "agent": meta.get("agent"),
            "status": exit_.get("status", "running" if meta else "unknown"),
            "start_utc": meta.get("start_utc"), "stop_utc": meta.get("stop_utc"),
            "testbed_restarts": restarts, "testbed_stage": stage,
            "rewinds": self.follower.rewinds, "error": self.error,
        }

    def agent_view(self) -> AgentView | None:
        """Probabilities, entropy and gamma from the last checkpoint (rebuilt when it
        changes); None for a run without one or whose agent cannot be rebuilt here."""
        checkpoint = self.path / "checkpoint" / "state.pkl"
        try:
            mtime = checkpoint.stat().st_mtime
        except OSError:
            return self._agent
        if mtime != self._checkpoint_mtime:
            self._checkpoint_mtime = mtime
            self._agent = self._load_agent()
        return self._agent

    def _load_agent(self) -> AgentView | None:
        from hil.config import config_from_dict
        from hil.plots import probability_grid
        from hil.run import build_agent

        try:
            meta = self._meta()
            state = RunDirectory(self.path).load_checkpoint()
            if not meta.get("config") or state is None:
                return None
            cfg = config_from_dict(dict(meta["config"]), str(self.path))
            if meta.get("agent") != cfg.agent.name:  # a learner outside (hil/gym.py)
                return None
            agent = build_agent(cfg)
            agent.load_state_dict(state["agent"])
            probs = np.asarray(agent.probabilities(), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a view of the agent is best effort
            log.warning("%s: cannot rebuild the agent from its checkpoint (%s: %s)",
                        self.path, type(exc).__name__, exc)
            return None
        order = np.argsort(-probs, kind="stable")[:TOP_POLICIES]
        nonzero = probs[probs > 0]
        space = cfg.policy_space
        children = getattr(agent, "children", None)
        shares = (dict(zip((c.name for c in children), agent.meta_probabilities().tolist()))
                  if children else {})
        return AgentView(
            int(state["round"]), [(int(i), float(probs[i])) for i in order],
            float(-(nonzero * np.log2(nonzero)).sum()), getattr(agent, "gamma", None),
            probability_grid(probs, space).tolist(),
            [f"{g:g} dB / M{m} / {b:g}" for g in space.dl_gain_db for m in space.dl_max_mcs
             for b in space.dl_prb_ratio],
            [f"M{m} / {b:g}" for m in space.ul_max_mcs for b in space.ul_prb_ratio], shares)

    def _meta(self) -> dict[str, Any]:
        try:
            return RunDirectory(self.path).read_meta()
        except RecorderError:
            return {}


def _column_sum(rows: pa.Table, name: str) -> float:
    """The sum of a numeric column, nulls left out; 0 for a table without it (a sweep)."""
    if name not in rows.column_names:
        return 0.0
    total = pc.sum(rows.column(name)).as_py()
    return float(total) if total is not None else 0.0


def _table_of(path: Path, default: str) -> str:
    """Which of TABLES the directory records, `default` while it records none yet."""
    return next((t for t in TABLES if any(path.glob(f"{t}.arrow"))
                 or any(path.glob(f"{t}.*parquet"))), default)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def find_runs(paths: list[Path]) -> list[Path]:
    """The run directories among `paths`: each one that is a run (has run.json), and the
    runs directly inside each one that is not (a `runs/` folder)."""
    found = []
    for path in paths:
        if (path / META_NAME).exists():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if (p / META_NAME).exists()))
    return found
