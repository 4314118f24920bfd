"""`hil bench --soak`: many accelerated rounds of a testbed with the controller's resident
memory and open file descriptors sampled, so that a leak shows as growth, and the size of
the live journal, which segment compaction (hil/journal.py) keeps bounded.

The first sample is taken after WARM_UP_ROUNDS (imports, buffers and the recorder's first
batches settle); then one every `sample_every` rounds. A soak passes when the end is within
RSS_GROWTH_BOUND_MB and FD_GROWTH_BOUND of that start and every round reached the recording.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from hil.bench import BENCH_SPEEDUP, Figure

WARM_UP_ROUNDS = 1_000
RSS_GROWTH_BOUND_MB = 50.0
FD_GROWTH_BOUND = 5


def soak(config: Path, rounds: int, sample_every: int = 1_000) -> Iterator[Figure]:
    from hil.recorder import read_rounds
    from hil.run import execute, new_run

    process = psutil.Process()
    samples: list[tuple[int, float, int]] = []
    journal_mb: list[float] = []

    def sample(row: dict) -> None:
        k = row["round"] + 1
        if k == min(WARM_UP_ROUNDS, rounds // 2) or k % sample_every == 0 or k == rounds:
            samples.append((k, process.memory_info().rss / 2**20, process.num_fds()))
            journal_mb.append(run_dir.journal_path.stat().st_size / 2**20)

    with tempfile.TemporaryDirectory() as tmp:
        cfg, run_dir = new_run(config, {"rounds": rounds, "clock.speedup": BENCH_SPEEDUP,
                                        "recording.plot": False}, Path(tmp))
        t0 = time.perf_counter()
        result = execute(cfg, run_dir, resume=False, on_round=sample)
        elapsed = time.perf_counter() - t0
        recorded = len(read_rounds(run_dir.path))
        recording_mb = sum(f.stat().st_size for f in run_dir.path.iterdir() if f.is_file())
    (_, rss_start, fds_start), (_, rss_end, fds_end) = samples[0], samples[-1]
    yield "soak_rounds", float(result.outcome.next_round), "rounds"
    yield "soak_recorded_rounds", float(recorded), "rounds"
    yield "soak_rounds_per_s", result.outcome.next_round / elapsed, "rounds/s"
    yield "soak_rss_mb_start", rss_start, "MB"
    yield "soak_rss_mb_end", rss_end, "MB"
    yield "soak_rss_mb_max", max(s[1] for s in samples), "MB"
    yield "soak_fds_start", float(fds_start), "fds"
    yield "soak_fds_end", float(fds_end), "fds"
    yield "soak_journal_mb_max", max(journal_mb), "MB"
    yield "soak_recording_mb_end", recording_mb / 2**20, "MB"
