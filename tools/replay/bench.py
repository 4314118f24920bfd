"""`hil bench` figures of the replay harness.

    replay_agent_rounds_per_s       one (agent, seed) job of BSvBS over the paper's 1080
                                    policies in scenario C, as `hil replay` runs it: the
                                    model's rewards of every policy for each block of rounds,
                                    the agent's select and update per round, the benchmark
                                    side, and saving the result
    replay_jobs_per_s_local_2       a replay of BSvBS on 16 seeds of Fig. 6's size (50k
    replay_jobs_per_s_dask_local_2  rounds each) on `--executor local:2` and `dask-local:2`:
                                    jobs per second of the whole call (the Dask cluster's
                                    start included)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agents.policy_space import PAPER_SPACE
from hil.base.repo import REPO
from hil.bench import Figure
from hil.config import RewardConfig
from hil.executor import parse_executor
from hil.reward import RewardParams
from tools.replay.environments import ModelSource
from tools.replay.runner import ReplaySpec, run_job, run_replay, save_job

CALIBRATION = REPO / "testbed_configs/calibration/emulated-nuc.yaml"


def bench_replay(quick: bool) -> Iterator[Figure]:
    rounds = 1_000 if quick else 50_000
    defaults = RewardConfig()
    params = RewardParams(defaults.delta, defaults.power_min_w, defaults.power_max_w)
    spec = ReplaySpec(ModelSource("C", PAPER_SPACE, CALIBRATION, params), ("bsvbs",), (0,),
                      rounds)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_job(Path(tmp), ("bsvbs", 0), run_job(spec, ("bsvbs", 0), lambda n: None))
        elapsed = time.perf_counter() - t0
    yield "replay_agent_rounds_per_s", rounds / elapsed, "rounds/s"
    jobs = 2 if quick else 16
    spec = ReplaySpec(spec.source, ("bsvbs",), tuple(range(jobs)), rounds)
    for where in ("local:2", "dask-local:2"):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_replay(spec, Path(tmp), executor=parse_executor(where))
            elapsed = time.perf_counter() - t0
        yield f"replay_jobs_per_s_{where.replace('-', '_').replace(':', '_')}", jobs / elapsed, \
            "jobs/s"
