"""The loop's speed figures for `hil bench` (whose runner, tools/bench.py, adds the
commands'), measured on this machine, one `name value unit` line each.

Benchmarks print figures; tests never assert on timing (shared CI machines are noisy).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agents.base import Context, Decision
from agents.bpvran import BPVran, scale_context
from agents.bsvbs import BSvBS
from hil.base.repo import REPO
from hil.base.scenarios import make_scenario
from hil.config import load_config
from hil.testbeds import start_testbed

if TYPE_CHECKING:
    from hil.run import RunResult

Figure = tuple[str, float, str]


def _select_update_us(n_actions: int, rounds: int, seed: int = 0) -> np.ndarray:
    """Per-round select+update time (us) of BSvBS on random rewards."""
    agent = BSvBS(n_actions, seed=seed, horizon=max(rounds, 50_000))
    rewards = np.random.default_rng(seed).random(rounds)
    out = np.empty(rounds)
    clock = time.perf_counter_ns
    for t in range(rounds):
        t0 = clock()
        agent.update(agent.select(), float(rewards[t]))
        out[t] = clock() - t0
    return out / 1e3


def bench_bsvbs(quick: bool) -> Iterator[Figure]:
    rounds = 5_000 if quick else 50_000
    us = _select_update_us(1080, rounds)
    yield "bsvbs_select_update_us", float(np.mean(us)), "us"
    yield "bsvbs_select_update_us_first_1k", float(np.mean(us[:1000])), "us"
    yield "bsvbs_select_update_us_last_1k", float(np.mean(us[-1000:])), "us"
    us = _select_update_us(1_000_000, 2_000 if quick else 20_000)
    yield "bsvbs_select_update_us_1e6", float(np.mean(us)), "us"


def bench_bpvran(quick: bool) -> Iterator[Figure]:
    """BP-vRAN's select + update time per round once it has learned from t = 1k and 5k
    rounds (1080 policies, scenario C's contexts, random rewards, default data budget).

    Scenario C's ping-pong spreads BP-vRAN's data over many context bins. The rounds
    before each timed window only feed observations (`update` with the decision's
    context), which is what the model holds at t; they are not timed. The timed window is
    1000 rounds, two compactions of the default budget (and the rebuilds of the cached
    bins that follow), so the mean includes them.
    """
    timed = 50 if quick else 1000
    env = make_scenario("C", seed=0).epochs(0, 5_000 + 2 * timed)
    contexts = [Context(dl_cqi=float(dl_cqi), ul_cqi=float(ul_cqi), dl_demand_mbps=float(dl),
                        ul_demand_mbps=float(ul))
                for dl_cqi, ul_cqi, dl, ul in zip(env.dl_cqi, env.ul_cqi, env.dl_demand_mbps,
                                                  env.ul_demand_mbps)]
    agent = BPVran(1080, seed=0)
    rng = np.random.default_rng(0)
    t = 0
    for at in (1_000, 5_000):
        while t < at:
            scaled = scale_context(contexts[t], agent.demand_scale_mbps)
            decision = Decision(action=int(rng.integers(1080)), prob=1 / 1080,
                                info={"context": tuple(scaled)})
            agent.update(decision, float(rng.random()))
            t += 1
        ms = np.empty(timed)
        for i in range(timed):
            t0 = time.perf_counter()
            agent.update(agent.select(contexts[t]), float(rng.random()))
            ms[i] = (time.perf_counter() - t0) * 1e3
            t += 1
        yield f"bpvran_round_ms_{at // 1000}k", float(np.mean(ms)), "ms"


def bench_control(quick: bool, config: Path) -> Iterator[Figure]:
    """Round-trip times over loopback ZMQ to the emulated vBS process."""

    cfg = load_config(config)
    n = 500 if quick else 5_000
    with tempfile.TemporaryDirectory() as tmp, start_testbed(cfg, Path(tmp)) as testbed:
        for op, call in (("ping", testbed.ran.ping), ("get", testbed.ran.get)):
            call()
            ms = np.empty(n)
            for i in range(n):
                t0 = time.perf_counter()
                call()
                ms[i] = (time.perf_counter() - t0) * 1e3
            prefix = "control_rtt_ms" if op == "ping" else "control_get_ms"
            yield f"{prefix}_p50", float(np.percentile(ms, 50)), "ms"
            yield f"{prefix}_p99", float(np.percentile(ms, 99)), "ms"


BENCH_SPEEDUP = 500.0


def _run_rounds(config: Path, overrides: dict,
                served: bool = False) -> tuple[RunResult, float, float]:
    """Run the config's job with `overrides` into a scratch folder: (the RunResult, its
    wall time, the mean window in TTIs); `served`: with `hil serve` following it, as
    `hil run --serve` starts it."""
    from drivers.emulated.sshd import free_port
    from hil.recorder import read_rounds
    from hil.run import execute, new_run
    from hil.serve import spawn

    with tempfile.TemporaryDirectory() as tmp:
        cfg, run_dir = new_run(config, {"recording.plot": False, **overrides}, Path(tmp))
        server = spawn([run_dir.path], f"127.0.0.1:{free_port()}")[0] if served else None
        try:
            t0 = time.perf_counter()
            result = execute(cfg, run_dir, resume=False)
            elapsed = time.perf_counter() - t0
        finally:
            if server is not None:
                server.terminate()
                server.wait()
        window_tti = float(read_rounds(run_dir.path)["nof_tti"].mean())
    return result, elapsed, window_tti


STEPPED = {"clock.mode": "stepped", "clock.speedup": 1.0, "meter.kind": "emulated"}
"""The config's testbed on a stepped clock: the floor of a round is its two rtctl round
trips, the emulator simulating its 1000 TTIs and the emulated meter's reading."""
PAPER_HORIZON = REPO / "testbed_configs" / "zmq-emulated-paper.yaml"


def bench_rounds(quick: bool, config: Path) -> Iterator[Figure]:
    """End-to-end rounds per second of the config's job: engine + agent + ZMQ + emulator +
    meter + recorder; and where a round's time goes.

    `emulated_rounds_per_s` runs it stepped (every window exactly one round of TTIs, no
    waiting), `_served` the same with `hil serve` following the run in its own process;
    `accelerated_rounds_per_s` as configured at BENCH_SPEEDUP, through the GPM-8213 driver
    and the emulator's SCPI twin, where the loop and not the schedule is the limit: rounds
    that overrun their deadline get longer windows, so the mean window length is printed
    beside the rate.
    """
    rounds = 200 if quick else 3_000
    result, elapsed, _ = _run_rounds(config, {"rounds": rounds, **STEPPED})
    yield "emulated_rounds_per_s", result.outcome.next_round / elapsed, "rounds/s"
    for stage, ms in result.times.breakdown_ms().items():
        yield f"round_ms_{stage}", ms, "ms"
    result, elapsed, _ = _run_rounds(config, {"rounds": rounds, **STEPPED}, served=True)
    yield "emulated_rounds_per_s_served", result.outcome.next_round / elapsed, "rounds/s"
    result, elapsed, window_tti = _run_rounds(config, {"rounds": rounds,
                                                       "clock.speedup": BENCH_SPEEDUP})
    yield "accelerated_rounds_per_s", result.outcome.next_round / elapsed, "rounds/s"
    yield "accelerated_round_window_tti_mean", window_tti, "TTI"


def bench_paper_horizon() -> Iterator[Figure]:
    """`hil run testbed_configs/zmq-emulated-paper.yaml` as a user runs it: BSvBS over the
    paper's 1080 policies for its 50 000 rounds, stepped, start to finish (the full bench
    only: minutes)."""
    result, elapsed, _ = _run_rounds(PAPER_HORIZON, {"recording.plot": True})
    yield "paper_horizon_run_s", elapsed, "s"
    yield "paper_horizon_rounds", float(result.outcome.next_round), "rounds"


def bench_realtime_overhead(quick: bool, config: Path) -> Iterator[Figure]:
    """The controller's own time in 1 s realtime rounds against the emulated vBS: the wall
    time of a round not spent waiting for its deadline (agent, control, meter, recording)."""
    rounds = 3 if quick else 60
    result, _, _ = _run_rounds(config, {"rounds": rounds, "clock.mode": "realtime",
                                        "clock.speedup": 1.0})
    overhead_ms = np.asarray(result.times.overhead_ms)
    yield "controller_overhead_ms_p50", float(np.percentile(overhead_ms, 50)), "ms"
    yield "controller_overhead_ms_p99", float(np.percentile(overhead_ms, 99)), "ms"


def bench_meter(quick: bool) -> Iterator[Figure]:
    """The GPM-8213 driver over pyvisa-py against its twin, 1 s windows at a new power each
    (drivers/power/window_check.py): healthy, polled once per window as on the lab's first
    config, and under FAULTY (NaN every 3rd reply, 200 ms late every 5th, a hang-up every
    7th) at the default poll; polled means and the integrator's."""
    from drivers.power.window_check import FAULTY, HEALTHY, check_windows

    windows = 2 if quick else 60
    for name, plan, poll_s in (("healthy_poll1s", HEALTHY, 1.0), ("faulty", FAULTY, 0.1)):
        for path, integrator in (("", False), ("_integrator", True)):
            check = check_windows(windows=windows, window_s=1.0, poll_s=poll_s, plan=plan,
                                  use_integrator=integrator)
            yield f"meter_{name}{path}_valid_share", check.valid_share, "1"
            yield f"meter_{name}{path}_max_error_w", check.max_error_w, "W"
            yield f"meter_{name}{path}_coverage_mean", check.mean_coverage, "1"
