"""Round rows for recorder tests: every value depends on the round and the column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from hil.schema import ROUND_SCHEMA

START_UTC = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_row(i: int) -> dict:
    """A complete round row whose every value depends on the round and the column, so a
    mixed-up column or row shows up in a comparison."""
    row: dict = {}
    for k, field in enumerate(ROUND_SCHEMA):
        type_ = field.type
        if pa.types.is_integer(type_):
            row[field.name] = i + k
        elif pa.types.is_floating(type_):
            row[field.name] = i + k / 8
        elif pa.types.is_boolean(type_):
            row[field.name] = i % 2 == 0
        elif pa.types.is_timestamp(type_):
            row[field.name] = START_UTC + timedelta(seconds=i)
        elif pa.types.is_string(type_):
            row[field.name] = f"reason {i}"
        elif pa.types.is_list(type_):  # per-user columns: two users, the second uncapped
            row[field.name] = [i + k, None]
    row["round"] = i
    return row
