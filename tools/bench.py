"""`hil bench`: every figure, from the loop's benchmarks (hil/bench.py) and the commands'
(tools/replay/bench.py, tools/metahrl/bench.py). The runner lives here, above both, so the
benchmarks import down the layers only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hil.bench import (
    Figure,
    bench_bpvran,
    bench_bsvbs,
    bench_control,
    bench_meter,
    bench_paper_horizon,
    bench_realtime_overhead,
    bench_rounds,
)
from tools.metahrl.bench import bench_metahrl
from tools.replay.bench import bench_replay


def run_benchmarks(config: Path, quick: bool = False) -> Iterator[Figure]:
    """Every figure; the testbed ones on `config` (the default job's, whose BBU host is the
    local sshd that `make bench` starts)."""
    yield from bench_bsvbs(quick)
    yield from bench_bpvran(quick)
    yield from bench_replay(quick)
    yield from bench_metahrl(quick)
    yield from bench_control(quick, config)
    yield from bench_rounds(quick, config)
    if not quick:
        yield from bench_paper_horizon()
    yield from bench_realtime_overhead(quick, config)
    yield from bench_meter(quick)
