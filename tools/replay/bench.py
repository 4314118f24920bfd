"""`hil bench` figure of the replay harness: whole replay rounds per second of one agent.

One (agent, seed) job of BSvBS over the paper's 1080 policies in scenario C, as `hil
replay` runs it: the model's rewards of every policy for each block of rounds, the agent's
select and update per round, the benchmark side, and saving the result.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agents.policy_space import PAPER_SPACE
from hil.bench import Figure
from hil.config import RewardConfig
from hil.reward import RewardParams
from hil.testbed import REPO
from tools.replay.environments import ModelSource
from tools.replay.runner import ReplaySpec, run_job

CALIBRATION = REPO / "testbed_configs/calibration/emulated-nuc.yaml"


def bench_replay(quick: bool) -> Iterator[Figure]:
    rounds = 5_000 if quick else 50_000
    defaults = RewardConfig()
    params = RewardParams(defaults.delta, defaults.power_min_w, defaults.power_max_w)
    spec = ReplaySpec(ModelSource("C", PAPER_SPACE, CALIBRATION, params), ("bsvbs",), (0,),
                      rounds)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_job(spec, "bsvbs", 0, Path(tmp), lambda n: None)
        elapsed = time.perf_counter() - t0
    yield "replay_agent_rounds_per_s", rounds / elapsed, "rounds/s"
