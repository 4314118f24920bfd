"""Following a run directory while the recorder writes it: every row exactly once, in
order, across journal compactions, a resume, a rewound resume, a torn last message and
the final close."""

from __future__ import annotations

import pyarrow as pa
import pytest
from round_rows import make_row

from hil.base.errors import RecorderError
from hil.follow import RunFollower
from hil.journal import RoundRecorder
from hil.recorder import RunDirectory


def rounds_of(tables: list[pa.Table]) -> list[int]:
    return [r for t in tables for r in t.column("round").to_pylist()]


@pytest.fixture
def run_dir(tmp_path) -> RunDirectory:
    return RunDirectory.create(tmp_path, "run")


def test_rows_arrive_once_each_across_compactions_and_the_close(run_dir):
    follower = RunFollower(run_dir.path)
    recorder = RoundRecorder(run_dir, segment_rows=7)  # a segment every 7 rows
    seen = [follower.poll()]
    for i in range(40):
        recorder.append(make_row(i))
        if i % 3 == 0:  # polls between some rows, several rows between others
            seen.append(follower.poll())
    seen.append(follower.poll())
    recorder.close()
    seen.append(follower.poll())
    assert rounds_of(seen) == list(range(40))
    assert follower.poll().num_rows == 0
    # the values too, not only the round numbers
    assert pa.concat_tables(seen).column("power_w").to_pylist() == \
        run_dir.read_rounds().column("power_w").to_pylist()


def test_a_follower_far_behind_takes_the_compacted_rows_from_the_segments(run_dir):
    recorder = RoundRecorder(run_dir, segment_rows=5)
    follower = RunFollower(run_dir.path)
    recorder.append(make_row(0))
    assert rounds_of([follower.poll()]) == [0]
    for i in range(1, 23):  # four compactions while the follower sleeps
        recorder.append(make_row(i))
    assert rounds_of([follower.poll()]) == list(range(1, 23))


def test_a_resumed_run_repeats_no_row(run_dir):
    recorder = RoundRecorder(run_dir, segment_rows=4)
    follower = RunFollower(run_dir.path)
    for i in range(10):
        recorder.append(make_row(i))
    recorder.close()
    seen = [follower.poll()]
    recorder = RoundRecorder.resume(run_dir, segment_rows=4)  # all rows into a new journal
    seen.append(follower.poll())
    for i in range(10, 15):
        recorder.append(make_row(i))
    seen.append(follower.poll())
    assert rounds_of(seen) == list(range(15))
    assert follower.rewinds == 0


def test_a_resume_from_an_older_checkpoint_is_a_rewind_and_its_rows_come_again(run_dir):
    recorder = RoundRecorder(run_dir)
    follower = RunFollower(run_dir.path)
    for i in range(10):
        recorder.append(make_row(i))
    assert rounds_of([follower.poll()]) == list(range(10))
    # SIGKILLed after round 9, checkpoint at round 6: rounds 6.. are dropped and run again
    recorder = RoundRecorder.resume(run_dir, keep_rounds_below=6)
    for i in range(6, 8):
        recorder.append(make_row(i))
    assert rounds_of([follower.poll()]) == [6, 7]
    assert follower.rewinds == 1 and follower.delivered == 8


def test_a_message_cut_short_waits_until_it_is_whole(run_dir):
    recorder = RoundRecorder(run_dir)
    follower = RunFollower(run_dir.path)
    recorder.append(make_row(0))
    message = RoundRecorder(RunDirectory.create(run_dir.path.parent, "other"))._encoder \
        .batch(make_row(1)).serialize().to_pybytes()
    with open(run_dir.journal_path, "ab") as journal:
        journal.write(message[:100])  # a write caught halfway
        journal.flush()
        assert rounds_of([follower.poll()]) == [0]
        journal.write(message[100:])
    assert rounds_of([follower.poll()]) == [1]


def test_a_directory_that_holds_no_run_yet_gives_no_rows_and_a_removed_one_an_error(run_dir):
    follower = RunFollower(run_dir.path)
    assert follower.poll().num_rows == 0
    run_dir.path.rmdir()
    with pytest.raises(RecorderError, match="not a directory"):
        follower.poll()
