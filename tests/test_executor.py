"""Where jobs run (hil/executor.py): every executor hands back every result, reruns a job
whose worker died once, reports it failed after a second death or when it raises, and names
a scheduler it cannot reach."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import psutil
import pytest

from hil import executor as executors
from hil.executor import Callbacks, Executor, ExecutorError, parse_executor, run_jobs

EXECUTORS = ["local:2", "dask-local:2"]
TESTS = Path(__file__).parent


def square(job: int, progress) -> int:
    """A job that reports two steps of progress."""
    progress(1)
    progress(1)
    return job * job


def dies_while(marks: Path, deaths: int, job: int, progress) -> int:
    """Kills its own worker mid-job the first `deaths` times it runs job 1 (counted in files
    under `marks`, which every worker of this machine sees)."""
    progress(5)
    if job == 1:
        runs = len(list(marks.glob("run-*")))
        (marks / f"run-{runs}").touch()
        if runs < deaths:
            os.kill(os.getpid(), signal.SIGKILL)
    return job


def raises_on_two(marks: Path, job: int, progress) -> int:
    if job == 2:
        (marks / f"raised-{len(list(marks.glob('raised-*')))}").touch()
        raise ValueError("no policy at index 2")
    return job


def collect(fn, jobs, where: str, wait_s: float = 0.0):
    """Run `jobs` on `where`: results, failures, progress reported and the counts seen. With
    `wait_s`, retry for that long while the scheduler has no workers yet."""
    results, progress, counts = {}, [], []
    deadline = time.monotonic() + wait_s
    while True:
        try:
            failures = run_jobs(fn, jobs, parse_executor(where), Callbacks(
                results.__setitem__, progress.append, lambda c: counts.append(str(c))))
            return results, failures, sum(progress), counts
        except ExecutorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_executor_option_reads_local_dask_local_and_a_scheduler_address():
    assert parse_executor("local:3") == Executor("local", 3)
    assert parse_executor("local") == Executor("local", os.cpu_count() or 1)
    assert parse_executor("dask-local:2") == Executor("dask-local", 2)
    assert parse_executor("dask:10.0.0.5:8786") == Executor("dask", address="tcp://10.0.0.5:8786")
    for wrong, says in (("local:0", "at least 1"), ("dask:10.0.0.5", "dask:HOST:PORT"),
                        ("slurm:4", "expected local")):
        with pytest.raises(ExecutorError, match=says):
            parse_executor(wrong)


@pytest.mark.parametrize("where", ["local:1", *EXECUTORS])
def test_every_executor_hands_back_every_result_and_its_progress(where):
    results, failures, progress, counts = collect(square, list(range(6)), where)
    assert results == {j: j * j for j in range(6)} and failures == []
    assert progress == 12
    assert counts[-1] == "jobs 6/6 done, 0 running"


@pytest.mark.parametrize("where", EXECUTORS)
def test_a_job_whose_worker_dies_once_runs_again_and_its_progress_is_not_counted_twice(
        where, tmp_path):
    results, failures, progress, _ = collect(partial(dies_while, tmp_path, 1), [0, 1, 2],
                                             where)
    assert results == {0: 0, 1: 1, 2: 2} and failures == []
    assert len(list(tmp_path.glob("run-*"))) == 2
    assert progress == 15


@pytest.mark.parametrize("where", EXECUTORS)
def test_a_job_whose_worker_dies_twice_is_reported_failed_and_the_others_finish(
        where, tmp_path):
    results, failures, _, counts = collect(partial(dies_while, tmp_path, 99), [0, 1, 2], where)
    assert results == {0: 0, 2: 2}
    assert [f.job for f in failures] == [1] and "died" in failures[0].error
    assert len(list(tmp_path.glob("run-*"))) == 2  # once, then once more: no third run
    assert counts[-1] == "jobs 2/3 done, 0 running, 1 failed"


@pytest.mark.parametrize("where", ["local:1", *EXECUTORS])
def test_a_job_that_raises_is_reported_failed_with_its_error_and_not_run_again(
        where, tmp_path):
    results, failures, _, _ = collect(partial(raises_on_two, tmp_path), [0, 1, 2, 3], where)
    assert results == {0: 0, 1: 1, 3: 3}
    assert [f.job for f in failures] == [2]
    assert "ValueError: no policy at index 2" in failures[0].error
    assert len(list(tmp_path.glob("raised-*"))) == 1


def test_jobs_run_on_an_existing_scheduler_and_its_workers(tmp_path):
    """`dask:HOST:PORT`: a scheduler and a worker started as a lab starts them."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    started = [subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its nannies and workers: one group
               for module, args in (
                   ("distributed.cli.dask_scheduler", ["--host", "127.0.0.1", "--port",
                                                       str(port), "--dashboard-address", ":0"]),
                   ("distributed.cli.dask_worker", [f"tcp://127.0.0.1:{port}", "--nthreads",
                                                    "1", "--nworkers", "2"]))]
    try:
        results, failures, progress, _ = collect(square, list(range(4)),
                                                 f"dask:127.0.0.1:{port}", wait_s=30)
        assert results == {j: j * j for j in range(4)} and failures == []
        assert progress == 8
        # this scheduler would rerun a task 3 times (Dask's default): the job stops at 2
        results, failures, _, _ = collect(partial(dies_while, tmp_path, 99), [0, 1, 2],
                                          f"dask:127.0.0.1:{port}")
        assert results == {0: 0, 2: 2} and [f.job for f in failures] == [1]
        assert "died under it 2 times" in failures[0].error
        assert len(list(tmp_path.glob("run-*"))) == 2
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a busy machine: Dask's graceful stop is slow
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_an_error_naming_its_address(monkeypatch):
    monkeypatch.setattr(executors, "DASK_CONNECT_S", 1.0)
    with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler at "
                       r"tcp://127\.0\.0\.1:9 .*dask scheduler"):
        run_jobs(square, [1], parse_executor("dask:127.0.0.1:9"), Callbacks(lambda j, r: None))


def test_a_ctrl_c_stops_the_local_workers_and_keeps_what_was_handed_over():
    handed = {}

    def interrupt_after_the_first(job: int, result: int) -> None:
        handed[job] = result
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(square, list(range(6)), Executor("local", 2),
                 Callbacks(interrupt_after_the_first))
    assert len(handed) == 1
    assert _local_workers() == []


def _local_workers() -> list[psutil.Process]:
    """The worker processes alive now: children of this process's fork server."""
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    return [worker for server in servers for worker in server.children()]
