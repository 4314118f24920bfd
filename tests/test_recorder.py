"""Specification of the run recorder: what reaches disk, what survives a crash, what resumes."""

from __future__ import annotations

import errno
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from round_rows import make_row

import hil.journal
from hil.base.errors import RecorderError, ResumeError
from hil.journal import RoundRecorder
from hil.recorder import RunDirectory, read_rounds
from hil.schema import ROUND_SCHEMA


def sparse_row(i: int) -> dict:
    """A row with only the non-nullable fields, like an invalid round."""
    return {f.name: v for f, v in zip(ROUND_SCHEMA, make_row(i).values()) if not f.nullable}


def full_rows(rows: list[dict]) -> list[dict]:
    """The rows as they read back: every schema field present, absent ones null."""
    return [{name: row.get(name) for name in ROUND_SCHEMA.names} for row in rows]


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDirectory:
    return RunDirectory.create(tmp_path, "run")


def record(run_dir: RunDirectory, rows: list[dict]) -> Path:
    with RoundRecorder(run_dir) as recorder:
        for row in rows:
            recorder.append(row)
    return run_dir.parquet_path


def crashed_run(tmp_path: Path, rows: list[dict]) -> RunDirectory:
    """A run directory as a crash leaves it: the journal of `rows`, no Parquet file."""
    crashed, live = RunDirectory.create(tmp_path, "crashed"), RunDirectory.create(tmp_path, "live")
    with RoundRecorder(live) as recorder:
        for row in rows:
            recorder.append(row)
        shutil.copy(live.journal_path, crashed.journal_path)
    return crashed


CHILD = textwrap.dedent(
    """
    import pickle, sys, time
    from pathlib import Path
    from hil.journal import RoundRecorder
    from hil.recorder import RunDirectory
    run_dir, rows = RunDirectory(Path(sys.argv[1])), pickle.load(sys.stdin.buffer)
    if sys.argv[2] == "resume":
        recorder = RoundRecorder.resume(run_dir, fsync_every_s=3600.0)
    else:
        recorder = RoundRecorder(run_dir, fsync_every_s=3600.0)
    for row in rows:
        recorder.append(row)
    print("appended", flush=True)
    time.sleep(60)
    """
)


def record_then_sigkill(run_dir: RunDirectory, rows: list[dict], resume: bool = False) -> None:
    """Append `rows` in another process, then SIGKILL it: no close, no fsync, no cleanup."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir.path), "resume" if resume else "new"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        child.stdin.write(pickle.dumps(rows))
        child.stdin.close()
        assert child.stdout.readline() == b"appended\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


# --- rows, types and units ---------------------------------------------------------------


def test_rows_round_trip_through_parquet_with_types_and_nulls(run_dir: RunDirectory) -> None:
    rows = [make_row(0), sparse_row(1), make_row(2)]
    parquet_path = record(run_dir, rows)

    table = pq.read_table(parquet_path)
    assert table.schema.equals(ROUND_SCHEMA, check_metadata=False)
    assert table.to_pylist() == full_rows(rows)


def test_parquet_schema_keeps_units_and_schema_version(run_dir: RunDirectory) -> None:
    schema = pq.read_schema(record(run_dir, [make_row(0)]))

    assert schema.field("power_w").metadata[b"unit"] == b"W"
    assert schema.field("dl_rate_mbps").metadata[b"unit"] == b"Mb/s"
    assert schema.metadata[b"schema_version"] == ROUND_SCHEMA.metadata[b"schema_version"]
    for field in ROUND_SCHEMA:
        assert schema.field(field.name).metadata == field.metadata, field.name


def test_time_utc_accepts_any_aware_datetime_and_stores_the_instant(
    run_dir: RunDirectory,
) -> None:
    row = make_row(0)
    row["time_utc"] = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    [stored] = pq.read_table(record(run_dir, [row])).to_pylist()
    assert stored["time_utc"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_numpy_scalars_are_accepted_as_values(run_dir: RunDirectory) -> None:
    numpy_values = {
        "policy_index": np.int64(7),
        "power_w": np.float64(41.5),
        "dl_bler": np.float32(0.25),
        "policy_dl_max_mcs": np.int16(20),
        "valid": np.True_,
    }
    [stored] = pq.read_table(record(run_dir, [make_row(0) | numpy_values])).to_pylist()
    assert {name: stored[name] for name in numpy_values} == {
        "policy_index": 7,
        "power_w": 41.5,
        "dl_bler": 0.25,
        "policy_dl_max_mcs": 20,
        "valid": True,
    }


def test_close_removes_the_journal_and_is_idempotent(run_dir: RunDirectory) -> None:
    recorder = RoundRecorder(run_dir)
    recorder.append(make_row(0))
    assert run_dir.journal_path.exists()

    assert recorder.close() == run_dir.parquet_path
    assert recorder.close() == run_dir.parquet_path
    assert not run_dir.journal_path.exists()
    assert pq.read_table(run_dir.parquet_path).num_rows == 1
    with pytest.raises(RecorderError, match="closed"):
        recorder.append(make_row(1))


def test_context_manager_closes_on_exception(run_dir: RunDirectory) -> None:
    with pytest.raises(KeyboardInterrupt), RoundRecorder(run_dir) as recorder:
        recorder.append(make_row(0))
        raise KeyboardInterrupt

    assert not run_dir.journal_path.exists()
    assert pq.read_table(run_dir.parquet_path).to_pylist() == full_rows([make_row(0)])


def test_live_rows_are_readable_from_the_journal_before_close(run_dir: RunDirectory) -> None:
    with RoundRecorder(run_dir) as recorder:
        for i in range(3):
            recorder.append(make_row(i))
        assert recorder.rows_written == 3
        assert run_dir.read_rounds().to_pylist() == full_rows([make_row(i) for i in range(3)])


def test_empty_run_reads_as_empty_table_with_the_round_schema(run_dir: RunDirectory) -> None:
    table = run_dir.read_rounds()
    assert table.num_rows == 0
    assert table.schema.equals(ROUND_SCHEMA, check_metadata=True)


def test_read_rounds_gives_the_same_frame_from_run_dir_parquet_and_journal(
    run_dir: RunDirectory, tmp_path: Path
) -> None:
    rows = [make_row(0), sparse_row(1)]
    with RoundRecorder(run_dir) as recorder:
        for row in rows:
            recorder.append(row)
        journal_copy = shutil.copy(run_dir.journal_path, tmp_path / "copy.arrow")

    frames = [read_rounds(p) for p in (run_dir.path, run_dir.parquet_path, journal_copy)]
    for frame in frames:
        assert frame.equals(frames[0])
        assert frame["round"].tolist() == [0, 1]
        assert frame.attrs["units"]["power_w"] == "W"


def test_read_rounds_of_a_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match="nowhere"):
        read_rounds(tmp_path / "nowhere")


# --- bad rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("policy_prob", "missing"),
        ("round", None),
        ("valid", None),
    ],
)
def test_missing_non_nullable_field_raises_naming_it(
    run_dir: RunDirectory, field: str, value: object
) -> None:
    row = make_row(0)
    if value == "missing":
        del row[field]
    else:
        row[field] = value
    with (
        RoundRecorder(run_dir) as recorder,
        pytest.raises(RecorderError, match=repr(field)) as error,
    ):
        recorder.append(row)
    assert "required" in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("policy_dl_max_mcs", 27.5, "int16"),  # Arrow alone would store 27
        ("policy_index", 3.0, "int64"),
        ("round", True, "int64"),
        ("valid", 1, "bool"),
        ("power_w", "41.5", "double"),
        ("power_w", True, "double"),
        ("invalid_reason", 3, "string"),
        ("time_utc", datetime(2026, 3, 1, 12, 0), "timezone-aware"),  # naive: which zone?
        ("time_utc", 1_772_366_400, "timestamp"),
        ("policy_dl_max_mcs", 40_000, "int16"),  # out of range
        ("power_kw", 0.1, "not in the round schema"),
        ("ue_dl_max_prb", 10, "list<item: int16>"),  # a per-user column takes a list
        ("ue_dl_max_prb", [10, 2.5], "list<item: int16>"),
        ("ue_dl_rate_mbps", [1.0, "2"], "list<item: double>"),
    ],
)
def test_wrong_value_raises_naming_the_field_and_writes_nothing(
    run_dir: RunDirectory, field: str, value: object, says: str
) -> None:
    with RoundRecorder(run_dir) as recorder:
        recorder.append(make_row(0))
        with pytest.raises(RecorderError, match=repr(field)) as error:
            recorder.append(make_row(1) | {field: value})
        assert says in str(error.value)
        assert recorder.rows_written == 1
        recorder.append(make_row(1))
    assert pq.read_table(run_dir.parquet_path).to_pylist() == full_rows([make_row(0), make_row(1)])


# --- crashes -------------------------------------------------------------------------------


def test_rows_appended_before_sigkill_are_all_in_the_journal(run_dir: RunDirectory) -> None:
    rows = [make_row(i) for i in range(25)]
    record_then_sigkill(run_dir, rows)

    assert run_dir.read_rounds().to_pylist() == full_rows(rows)


@pytest.mark.parametrize(
    "cut_at",
    [
        lambda start, end: start + 1,
        lambda start, end: start + 6,
        lambda start, end: start + 100,
        lambda start, end: end - 3,
    ],
    ids=["in its marker", "in its length", "in its header", "in its body"],
)
def test_journal_cut_inside_the_last_row_yields_all_earlier_rows(
    run_dir: RunDirectory, tmp_path: Path, cut_at
) -> None:
    crashed = tmp_path / "crashed.arrow"
    with RoundRecorder(run_dir) as recorder:
        for i in range(3):
            recorder.append(make_row(i))
        last_row_start = run_dir.journal_path.stat().st_size  # each append reaches the file
        recorder.append(make_row(3))
        last_row_end = run_dir.journal_path.stat().st_size
        shutil.copy(run_dir.journal_path, crashed)
    with open(crashed, "r+b") as f:
        f.truncate(cut_at(last_row_start, last_row_end))

    assert read_rounds(crashed)["round"].tolist() == [0, 1, 2]


def test_journal_cut_inside_its_schema_header_reads_as_no_rows(tmp_path: Path) -> None:
    journal = tmp_path / "rounds.arrow"
    journal.write_bytes(ROUND_SCHEMA.serialize().to_pybytes()[:50])

    assert read_rounds(journal).empty


# --- resume --------------------------------------------------------------------------------


def test_resume_after_sigkill_appends_after_existing_rows(run_dir: RunDirectory) -> None:
    record_then_sigkill(run_dir, [make_row(i) for i in range(4)])

    with RoundRecorder.resume(run_dir) as recorder:
        assert recorder.rows_written == 4
        recorder.append(make_row(4))
        recorder.append(make_row(5))

    table = pq.read_table(run_dir.parquet_path)
    assert table.to_pylist() == full_rows([make_row(i) for i in range(6)])


def test_resume_after_a_torn_last_row_keeps_later_rows_readable(tmp_path: Path) -> None:
    run_dir = crashed_run(tmp_path, [make_row(i) for i in range(4)])
    with open(run_dir.journal_path, "r+b") as f:  # round 3 was being written at the crash
        f.truncate(run_dir.journal_path.stat().st_size - 10)

    with RoundRecorder.resume(run_dir) as recorder:
        recorder.append(make_row(3))
        recorder.append(make_row(4))

    assert pq.read_table(run_dir.parquet_path)["round"].to_pylist() == [0, 1, 2, 3, 4]


def test_resume_of_a_closed_run_continues_from_its_parquet_file(run_dir: RunDirectory) -> None:
    record(run_dir, [make_row(0), make_row(1)])

    with RoundRecorder.resume(run_dir) as recorder:
        recorder.append(make_row(2))
        assert run_dir.read_rounds()["round"].to_pylist() == [0, 1, 2]

    assert pq.read_table(run_dir.parquet_path).to_pylist() == full_rows(
        [make_row(i) for i in range(3)]
    )


def test_resume_keep_rounds_below_drops_rounds_to_redo(tmp_path: Path) -> None:
    run_dir = crashed_run(tmp_path, [make_row(i) for i in range(6)])

    with RoundRecorder.resume(run_dir, keep_rounds_below=3) as recorder:
        assert recorder.rows_written == 3
        for i in (3, 4):
            recorder.append(make_row(i) | {"power_w": -1.0})  # the redone rounds

    table = pq.read_table(run_dir.parquet_path)
    assert table["round"].to_pylist() == [0, 1, 2, 3, 4]
    assert table["power_w"].to_pylist()[3:] == [-1.0, -1.0]


def test_a_resumed_run_killed_again_resumes_with_every_row_once(tmp_path: Path) -> None:
    run_dir = crashed_run(tmp_path, [make_row(0)])
    record_then_sigkill(run_dir, [make_row(1)], resume=True)
    with RoundRecorder.resume(run_dir) as recorder:
        recorder.append(make_row(2))

    assert pq.read_table(run_dir.parquet_path)["round"].to_pylist() == [0, 1, 2]


def test_resume_with_a_different_schema_is_refused(run_dir: RunDirectory) -> None:
    record(run_dir, [make_row(0)])
    other = ROUND_SCHEMA.remove(ROUND_SCHEMA.get_field_index("power_w"))

    with pytest.raises(ResumeError, match=re.escape(str(run_dir.path))):
        RoundRecorder.resume(run_dir, other)


def test_a_new_recorder_refuses_a_directory_with_rounds(run_dir: RunDirectory) -> None:
    record(run_dir, [make_row(0)])

    with pytest.raises(RecorderError, match="resume"):
        RoundRecorder(run_dir)
    assert pq.read_table(run_dir.parquet_path).num_rows == 1


# --- durability policy -----------------------------------------------------------------------


def test_journal_is_fsynced_at_most_every_fsync_every_s(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_s = [100.0]
    fsyncs = []
    monkeypatch.setattr(hil.journal, "monotonic", lambda: clock_s[0])
    recorder = RoundRecorder(run_dir, fsync_every_s=1.0)
    monkeypatch.setattr(hil.journal.os, "fsync", fsyncs.append)
    for i in range(8):  # 0.25 s apart: 2 s in all
        clock_s[0] += 0.25
        recorder.append(make_row(i))
    recorder._fsync.wait()  # they run on the recorder's fsync thread
    assert len(fsyncs) == 2
    fsyncs.clear()
    recorder.close()
    assert fsyncs, "close must fsync"


def test_a_failed_background_fsync_is_raised_by_the_next_append_naming_the_journal(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_s = [100.0]
    monkeypatch.setattr(hil.journal, "monotonic", lambda: clock_s[0])
    recorder = RoundRecorder(run_dir, fsync_every_s=1.0)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(hil.journal.os, "fsync", failing_fsync)
    clock_s[0] += 2.0
    recorder.append(make_row(0))  # asks the fsync thread, which fails
    recorder._fsync.wait()
    with pytest.raises(RecorderError, match=r"rounds\.arrow to the disk: Input/output error"):
        recorder.append(make_row(1))


# --- metadata and checkpoints ---------------------------------------------------------------


def test_meta_round_trips_and_update_merges(run_dir: RunDirectory) -> None:
    run_dir.write_meta({"seed": 7, "config": {"round_s": 1.0}, "exit_status": None})
    run_dir.update_meta(exit_status="ok", stop_utc=datetime(2026, 3, 1, 13, 0, tzinfo=UTC))

    assert run_dir.read_meta() == {
        "seed": 7,
        "config": {"round_s": 1.0},
        "exit_status": "ok",
        "stop_utc": "2026-03-01T13:00:00+00:00",
    }
    assert not list(run_dir.path.glob("*.tmp"))


def test_read_meta_of_a_directory_without_it_says_so(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match="run.json"):
        RunDirectory(tmp_path).read_meta()


def test_checkpoint_round_trips(run_dir: RunDirectory) -> None:
    rng = np.random.default_rng(5)
    state = {"round": 41, "weights": np.arange(6.0).reshape(2, 3), "rng": rng.bit_generator.state}
    assert run_dir.load_checkpoint() is None

    run_dir.save_checkpoint(state)
    loaded = run_dir.load_checkpoint()

    assert loaded["round"] == 41
    np.testing.assert_array_equal(loaded["weights"], state["weights"])
    assert loaded["rng"] == state["rng"]


def test_a_newer_checkpoint_replaces_the_older(run_dir: RunDirectory) -> None:
    run_dir.save_checkpoint({"round": 1})
    run_dir.save_checkpoint({"round": 2})
    assert run_dir.load_checkpoint() == {"round": 2}


def test_stale_tmp_file_from_a_crashed_save_does_not_break_loading(run_dir: RunDirectory) -> None:
    run_dir.save_checkpoint({"round": 10})
    stale = run_dir.checkpoint_path.with_name(run_dir.checkpoint_path.name + ".tmp")
    stale.write_bytes(pickle.dumps({"round": 11}, protocol=5)[:9])  # the crash cut it short

    assert run_dir.load_checkpoint() == {"round": 10}
    run_dir.save_checkpoint({"round": 12})
    assert run_dir.load_checkpoint() == {"round": 12}


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(run_dir: RunDirectory) -> None:
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    run_dir.save_checkpoint({"round": 3})
    with pytest.raises(RuntimeError):
        run_dir.save_checkpoint({"round": 4, "agent": Unpicklable()})
    assert run_dir.load_checkpoint() == {"round": 3}


def test_checkpoint_without_round_is_refused(run_dir: RunDirectory) -> None:
    with pytest.raises(RecorderError, match="'round'"):
        run_dir.save_checkpoint({"agent": {}})


# --- run directories --------------------------------------------------------------------------


def test_create_picks_a_unique_name(tmp_path: Path) -> None:
    runs = [RunDirectory.create(tmp_path / "runs", "exp") for _ in range(3)]

    assert [r.path.name for r in runs] == ["exp", "exp-2", "exp-3"]
    assert all(r.path.is_dir() for r in runs)


def test_create_under_an_unwritable_root_raises(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(RecorderError, match=re.escape(str(not_a_dir))):
        RunDirectory.create(not_a_dir, "exp")


def test_run_directory_constructor_touches_nothing(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "later")
    assert run.journal_path == tmp_path / "later" / "rounds.arrow"
    assert run.parquet_path == tmp_path / "later" / "rounds.parquet"
    assert run.meta_path == tmp_path / "later" / "run.json"
    assert run.checkpoint_path == tmp_path / "later" / "checkpoint" / "state.pkl"
    assert not (tmp_path / "later").exists()


# ----------------------------------------------------------------------------- segments
def test_a_long_run_keeps_its_journal_short_by_compacting_it_into_segments(run_dir):
    rows = [make_row(i) for i in range(25)]
    recorder = RoundRecorder(run_dir, segment_rows=10)
    sizes = []
    for row in rows:
        recorder.append(row)
        sizes.append(run_dir.journal_path.stat().st_size)
    assert sorted(p.name for _, p in run_dir.segments().values()) == [
        "rounds.000000000-000000010.parquet", "rounds.000000010-000000020.parquet"]
    assert max(sizes) < 2 * sizes[8]  # never more than one segment's rows in the journal
    assert run_dir.read_rounds().to_pylist() == full_rows(rows)  # live: segments + journal
    assert recorder.rows_written == 25
    recorder.close()
    assert pq.read_table(run_dir.parquet_path).to_pylist() == full_rows(rows)
    assert not run_dir.segments() and not run_dir.journal_path.exists()
    assert pq.read_schema(run_dir.parquet_path).metadata == ROUND_SCHEMA.metadata


def test_a_crash_between_writing_a_segment_and_restarting_the_journal_loses_and_doubles_nothing(
        run_dir, tmp_path):
    rows = [make_row(i) for i in range(14)]
    recorder = RoundRecorder(run_dir, segment_rows=10)
    for row in rows[:9]:
        recorder.append(row)
    before = shutil.copy(run_dir.journal_path, tmp_path / "before.arrow")
    recorder.append(rows[9])  # writes segment [0, 10), then an empty journal from row 10
    # The crash: segment [0, 10) is on disk, the old journal (rows 0-9, from row 0) is not
    # yet replaced. Rebuilt here from rows 0-8 copied before; row 9 is appended again below.
    crashed = RunDirectory.create(tmp_path, "crashed")
    shutil.copy(before, crashed.journal_path)
    shutil.copy(run_dir.segment_path(0, 10), crashed.segment_path(0, 10))
    with RoundRecorder.resume(crashed, segment_rows=10) as resumed:
        resumed.append(rows[9])
        assert crashed.read_rounds().to_pylist() == full_rows(rows[:10])
        for row in rows[10:]:
            resumed.append(row)
    assert pq.read_table(crashed.parquet_path).to_pylist() == full_rows(rows)
    recorder.close()


def test_a_run_killed_after_segments_resumes_with_every_row_once(run_dir, tmp_path):
    rows = [make_row(i) for i in range(23)]
    recorder = RoundRecorder(run_dir, segment_rows=10)
    for row in rows[:17]:
        recorder.append(row)
    killed = RunDirectory.create(tmp_path, "killed")  # what SIGKILL leaves: files as they are
    for _, path in run_dir.segments().values():
        shutil.copy(path, killed.path / path.name)
    shutil.copy(run_dir.journal_path, killed.journal_path)
    with RoundRecorder.resume(killed, keep_rounds_below=15, segment_rows=10) as resumed:
        assert resumed.rows_written == 15
        for row in rows[15:]:
            resumed.append(row)
    assert pq.read_table(killed.parquet_path).to_pylist() == full_rows(rows)
    recorder.close()


def test_a_missing_segment_is_named_not_skipped(run_dir):
    recorder = RoundRecorder(run_dir, segment_rows=5)
    for i in range(12):
        recorder.append(make_row(i))
    run_dir.segment_path(5, 10).unlink()
    with pytest.raises(RecorderError, match=r"rounds\.000000005-000000010\.parquet"):
        run_dir.read_rounds()
    run_dir.segment_path(5, 10).write_bytes(b"")  # so that close can fail cleanly
    with pytest.raises(RecorderError):
        recorder.close()
