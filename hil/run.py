"""A run from start to exit: run directory, testbed, agent, engine, safe shutdown.

Whatever happens (normal end, Ctrl-C, SIGTERM, a driver error, a bug) the `finally` path
restores the vBS's default thresholds, closes the recording into ``rounds.parquet``, writes
a last checkpoint and the exit status to ``run.json``, and stops the testbed.
"""

from __future__ import annotations

import platform
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from agents.base import Agent
from agents.registry import agent_params, make_agent
from drivers.rtctl.messages import PROTOCOL_VERSION
from hil import reward as rw
from hil.base.errors import HilError, ResumeError
from hil.config import HilConfig, config_from_dict, load_config
from hil.engine import EngineParams, RoundCallback, RoundEngine, RoundTimes, RunOutcome
from hil.journal import RoundRecorder
from hil.lock import TestbedLock, testbed_lock
from hil.recorder import RunDirectory
from hil.testbeds import Testbed, start_testbed


@dataclass(frozen=True)
class RunResult:
    run_dir: RunDirectory
    outcome: RunOutcome
    agent: Agent
    config: HilConfig
    times: RoundTimes | None = None  # where the rounds' time went (None: no round ran)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    names = ("vbs-hil", "numpy", "pyzmq", "pyarrow", "pydantic")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


def build_agent(cfg: HilConfig) -> Agent:
    params: dict[str, Any] = dict(cfg.agent.params)
    if cfg.agent.gamma is not None:
        params["gamma"] = cfg.agent.gamma
    known = agent_params(cfg.agent.name)
    if "policy_space" in known:  # BP-vRAN models the policies' values; Meta-HRL picks one
        params.setdefault("policy_space", cfg.policy_space)
    if "du" in known and cfg.vbs.du is not None:
        params.setdefault("du", cfg.vbs.du.model_dump())  # the users it schedules
    horizon = cfg.agent.horizon or cfg.rounds
    return make_agent(cfg.agent.name, cfg.policy_space.size, seed=cfg.seed, horizon=horizon,
                      **params)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """First SIGINT/SIGTERM: finish the round in flight, then stop. Second: stop now
    (KeyboardInterrupt), still through the cleanup path."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def new_run(config_path: Path, overrides: dict[str, object], out: Path | None = None,
            agent: str | None = None) -> tuple[HilConfig, RunDirectory]:
    """A new run directory for the config; `agent` names a learner other than the
    configured one (the gymnasium environment's: `gym`)."""
    cfg = load_config(config_path, overrides)
    agent = agent or cfg.agent.name
    root = out if out is not None else cfg.recording.out_dir
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = RunDirectory.create(Path(root), f"{stamp}-{cfg.name}-{agent}")
    run_dir.write_meta({
        "config_path": str(config_path), "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed, "agent": agent, "policy_space_size": cfg.policy_space.size,
        "protocol_version": PROTOCOL_VERSION, "versions": _versions(),
        "start_utc": _now(), "stop_utc": None, "exit": {"status": "running", "reason": ""},
    })
    return cfg, run_dir


def resume_run(run_path: Path, rounds: int | None) -> tuple[HilConfig, RunDirectory]:
    """The stored config of a run, to continue it; `rounds` is a new total.

    With a new total the agent keeps the horizon it was built for (`agent.horizon` is set
    to the old total when the run left it to `rounds`): every parameter tuned for the
    horizon (BSvBS's gamma, MetBS's eta, its children's, ...) stays as saved, so the saved
    state loads and the run goes on as it would have. The new total is stored, so a later
    resume without `--rounds` keeps it.
    """
    run_dir = RunDirectory(run_path)
    if not run_dir.meta_path.exists():
        raise ResumeError(f"{run_dir.meta_path} not found: is {run_path} a run directory?")
    meta = run_dir.read_meta()
    data = dict(meta["config"])
    if rounds is not None:
        agent = dict(data.get("agent", {}))
        if agent.get("horizon") is None:
            agent["horizon"] = data.get("rounds")
        data.update(agent=agent, rounds=rounds)
    cfg = config_from_dict(data, str(run_dir.meta_path))
    run_dir.update_meta(config=cfg.model_dump(mode="json"),
                        resumed_utc=[*meta.get("resumed_utc", []), _now()],
                        exit={"status": "running", "reason": ""}, stop_utc=None)
    return cfg, run_dir


def execute(cfg: HilConfig, run_dir: RunDirectory, *, resume: bool,
            on_start: Callable[[int, int], None] | None = None,
            on_round: RoundCallback | None = None, agent: Agent | None = None,
            take_lock: bool = True) -> RunResult:
    """Run (or continue) the rounds of ``cfg`` into ``run_dir``; always cleans up.

    The run holds its testbed's lock (hil/lock.py) while it lasts; a caller that holds it
    already, for several runs (a dataset sweep's blocks), passes `take_lock=False`.
    `agent` replaces the configured one (a dataset sweep plays its plan through it).
    """
    live = LiveRun(cfg, run_dir, resume=resume, agent=agent, on_round=on_round,
                   take_lock=take_lock)
    outcome = RunOutcome("failed", "did not start", live.first_round)
    # From here on the first SIGINT/SIGTERM asks for a clean stop, during start-up too.
    with stop_on_signals() as stop:
        try:
            engine = live.start()
            if on_start:
                on_start(live.first_round, cfg.rounds)
            outcome = engine.run(live.first_round, cfg.rounds, stop)
        except KeyboardInterrupt:
            outcome = RunOutcome("interrupted", "second interrupt: stopped at once",
                                 outcome.next_round)
        except HilError as exc:
            outcome = RunOutcome("failed", str(exc), outcome.next_round)
        except BaseException as exc:
            outcome = RunOutcome("failed", f"internal error: {exc!r}", outcome.next_round)
            raise
        finally:
            live.close(outcome)
    return RunResult(run_dir, outcome, live.agent, cfg,
                     None if live.engine is None else live.engine.times)


class LiveRun:
    """A run's pieces from its agent to its testbed: built, started (the lock taken, the
    testbed up, the engine ready to play rounds), and closed (`_shutdown`: the vBS's
    defaults restored, everything persisted, the testbed stopped, the lock released).

    `execute` plays it to the end; the gymnasium environment (hil/gym.py) plays it one
    round per `step`. An agent's optional `prepare()` (work it does once before its first
    decision, such as Meta-HRL's pretraining) is called for a fresh run here, before the
    testbed starts: done inside the first round it would leave the vBS idle, and an emulated
    one exits after a minute without requests. A resumed run does not call it: the
    checkpoint holds its result.
    """

    def __init__(self, cfg: HilConfig, run_dir: RunDirectory, *, resume: bool,
                 agent: Agent | None = None, on_round: RoundCallback | None = None,
                 take_lock: bool = True) -> None:
        self.cfg, self.run_dir, self.on_round, self.take_lock = cfg, run_dir, on_round, take_lock
        self.testbed: Testbed | None = None
        self.engine: RoundEngine | None = None
        self.lock: TestbedLock | None = None
        self.first_round, self._replay_rows = 0, []
        self._checkpoint: dict[str, Any] | None = None
        try:
            self.agent = agent if agent is not None else build_agent(cfg)
            if resume:
                self._checkpoint = checkpoint = run_dir.load_checkpoint()
                if checkpoint is None:
                    raise ResumeError(f"{run_dir.checkpoint_path} not found: nothing to resume "
                                      "from")
                try:
                    self.agent.load_state_dict(checkpoint["agent"])
                except ValueError as exc:
                    raise ResumeError(f"{run_dir.path}: the saved agent does not fit this one: "
                                      f"{exc}") from None
                rows = run_dir.read_rounds().to_pylist()
                self._replay_rows = [r for r in rows if r["round"] >= checkpoint["round"]]
                self.first_round = checkpoint["round"] + len(self._replay_rows)
                self.recorder = RoundRecorder.resume(run_dir, keep_rounds_below=self.first_round,
                                                     segment_rows=cfg.recording.segment_rows)
            else:
                prepare = getattr(self.agent, "prepare", None)
                if prepare is not None:
                    prepare()
                self.recorder = RoundRecorder(run_dir, segment_rows=cfg.recording.segment_rows)
        except BaseException as exc:  # run.json must not stay at `running`
            run_dir.update_meta(stop_utc=_now(), exit={
                "status": "failed", "reason": str(exc) if isinstance(exc, HilError)
                else f"internal error: {exc!r}", "defaults_restored": "no testbed"})
            raise

    def start(self) -> RoundEngine:
        """The lock taken, the testbed up, the engine built and brought to the last recorded
        round; on failure, what came up stays for `close` to take down."""
        cfg = self.cfg
        self.lock = testbed_lock(cfg, str(self.run_dir.path)) if self.take_lock else None
        if self.lock is not None:
            self.lock.acquire()
        self.testbed = start_testbed(cfg, self.run_dir.path)
        identity = self.testbed.ran.ping()
        self.run_dir.update_meta(vbs=identity.vbs.model_dump(mode="json"))
        self.engine = RoundEngine(
            space=cfg.policy_space, agent=self.agent, ran=self.testbed.ran,
            meter=self.testbed.meter, run_dir=self.run_dir, recorder=self.recorder,
            on_round=self.on_round, probes=self.testbed.probes,
            params=EngineParams(period_s=cfg.period_s,
                                checkpoint_every=cfg.recording.checkpoint_every,
                                give_up_after_invalid=cfg.vbs.give_up_after_invalid_rounds,
                                reward=rw.RewardParams(**cfg.reward.model_dump())))
        if self._checkpoint is not None:
            self.engine.context = self._checkpoint.get("context", self.engine.context)
        self.engine.replay(self._replay_rows)
        self.engine.next_round = self.first_round  # also when no row was replayed
        return self.engine

    def close(self, outcome: RunOutcome) -> None:
        """Defaults restored first, then everything persisted and the testbed stopped; the
        lock released last. Safe to call once only."""
        try:
            _shutdown(self.run_dir, self.recorder, self.testbed, self.engine, outcome)
        finally:
            if self.lock is not None:
                self.lock.release()


def _shutdown(run_dir: RunDirectory, recorder: RoundRecorder, testbed: Any,
              engine: RoundEngine | None, outcome: RunOutcome) -> None:
    """Restore defaults first (the lab must not stay capped), then persist everything."""
    restored = "no testbed"
    if testbed is not None:
        try:
            testbed.ran.reset()
            restored = "yes"
        except HilError as exc:
            restored = f"FAILED: {exc}"
    next_round = outcome.next_round
    if engine is not None:
        next_round = engine.next_round
        engine.checkpoint(next_round)
    recorder.close()
    if testbed is not None:
        testbed.close()
    run_dir.update_meta(stop_utc=_now(), rounds_done=next_round,
                        exit={"status": outcome.status, "reason": outcome.reason,
                              "defaults_restored": restored})
