"""Where independent jobs run: processes on this machine, or a Dask cluster.

`hil replay` and `hil metahrl` fan out jobs (one agent on one seed; one method on one seed
and setup) whose result depends only on the job itself. They hand `run_jobs` a function and
the jobs; it runs them on the executor the operator chose with `--executor`:

    local[:N]          N processes on this machine (default: one per core); local:1 runs
                       the jobs in this process
    dask-local:N       a Dask LocalCluster of N one-thread worker processes
    dask:HOST:PORT     an existing Dask scheduler (its workers run the same vbs-hil)

Results travel back to this process, which saves them: workers need no shared filesystem,
and Ctrl-C or a crash loses only the jobs in flight. A job whose worker dies under it is run
once more elsewhere, then reported failed with the worker's error; a job that raises is
reported failed at once (its result depends only on its inputs, so it would raise again).
Every worker uses one BLAS/torch thread, so N workers use N cores.

The job function takes `(job, progress)` and returns a picklable result; `progress(n)`
reports n units of work done (rounds, iterations) to the driver's progress bar. It must be
importable by name (a module-level function, or a `functools.partial` of one), since
workers import it.
"""

from __future__ import annotations

import os
import queue
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import Any, Generic, Literal, TypeVar

from hil.base.errors import HilError

J = TypeVar("J", bound=Hashable)
R = TypeVar("R")
JobFn = Callable[[J, Callable[[int], None]], R]
ATTEMPTS = 2
"""A job's worker may die under it once; the second death reports the job failed."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DASK_INSTALL = "pip install 'vbs-hil[dask]' (or: pip install distributed)"
DASK_CONNECT_S = 10.0
"""How long to try an existing scheduler before calling it unreachable."""


class ExecutorError(HilError):
    """The --executor option is malformed, or its cluster cannot be reached or used."""


@dataclass(frozen=True)
class Executor:
    """Parsed `--executor`: `kind` with `workers` (local, dask-local) or `address` (dask)."""

    kind: Literal["local", "dask-local", "dask"]
    workers: int = 1
    address: str = ""

    def __str__(self) -> str:
        return f"dask:{self.address}" if self.kind == "dask" else f"{self.kind}:{self.workers}"


IN_THIS_PROCESS = Executor("local", 1)
"""Jobs one after another in the calling process (no workers): the default of the APIs."""


def parse_executor(text: str) -> Executor:
    """`local`, `local:N`, `dask-local:N` or `dask:HOST:PORT` (see the module docstring)."""
    kind, _, rest = text.strip().partition(":")
    if kind == "local":
        return Executor("local", _count(text, rest) if rest else os.cpu_count() or 1)
    if kind == "dask-local":
        return Executor("dask-local", _count(text, rest) if rest else os.cpu_count() or 1)
    if kind == "dask":
        host, _, port = rest.rpartition(":")
        if rest.startswith("tcp://"):
            host, port = rest, "ok"
        if not host or not (port == "ok" or port.isdigit()):
            raise ExecutorError(f"--executor {text!r}: give the scheduler as dask:HOST:PORT, "
                                "e.g. dask:10.0.0.5:8786")
        return Executor("dask", address=rest if rest.startswith("tcp://") else f"tcp://{rest}")
    raise ExecutorError(f"--executor {text!r}: expected local[:N], dask-local:N or "
                        "dask:HOST:PORT")


def _count(text: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ExecutorError(f"--executor {text!r}: the number of workers must be a whole "
                            "number of at least 1")
    return int(value)


@dataclass(frozen=True)
class JobFailure(Generic[J]):
    """A job that did not finish: it raised, or its worker died under it twice."""

    job: J
    error: str


@dataclass
class JobCounts:
    """Jobs finished, running now and failed, across every worker (for the progress line)."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0

    def __str__(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"jobs {self.done}/{self.total} done, {self.running} running{failed}"


@dataclass
class Callbacks(Generic[J, R]):
    """What the driver does as jobs advance; all are called in the driver's thread."""

    on_result: Callable[[J, R], None]
    on_progress: Callable[[int], None] = lambda n: None
    on_counts: Callable[[JobCounts], None] = lambda counts: None


def run_jobs(fn: JobFn, jobs: Sequence[J], executor: Executor,
             callbacks: Callbacks[J, R]) -> list[JobFailure[J]]:
    """Run every job on `executor`; hand each result to `on_result` as it arrives.

    Returns the jobs that failed (the others' results were all handed over). Ctrl-C stops
    the workers and raises KeyboardInterrupt; results handed over before it are kept.
    """
    if not jobs:
        return []
    ledger = _Ledger(JobCounts(len(jobs)), callbacks)
    callbacks.on_counts(ledger.counts)
    if executor.kind == "local" and executor.workers == 1:
        _in_this_process(fn, jobs, ledger)
    elif executor.kind == "local":
        _LocalRun(fn, jobs, executor.workers, ledger).run()
    else:
        _dask_run(fn, jobs, executor, ledger)
    return ledger.failures


def one_thread_per_worker() -> None:
    """Workers share the cores among them: numeric libraries use one thread each."""
    _one_thread_env()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _one_thread_env() -> None:
    """Libraries read these once, when loaded: set them before a worker loads them."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


class _Ledger:
    """The counts, the failures and the callbacks, kept the same way by every executor."""

    def __init__(self, counts: JobCounts, callbacks: Callbacks) -> None:
        self.counts, self.callbacks = counts, callbacks
        self.failures: list[JobFailure] = []

    def started(self) -> None:
        self.counts.running += 1
        self.callbacks.on_counts(self.counts)

    def progress(self, n: int) -> None:
        self.callbacks.on_progress(n)

    def succeeded(self, job: Any, result: Any, *, was_running: bool = True) -> None:
        self._ended(was_running)
        self.counts.done += 1
        self.callbacks.on_result(job, result)
        self.callbacks.on_counts(self.counts)

    def failed(self, job: Any, error: str, *, was_running: bool = True) -> None:
        self._ended(was_running)
        self.counts.failed += 1
        self.failures.append(JobFailure(job, error))
        self.callbacks.on_counts(self.counts)

    def interrupted(self) -> None:
        """A job stopped by its worker's death, to be run again."""
        self._ended(True)
        self.callbacks.on_counts(self.counts)

    def _ended(self, was_running: bool) -> None:
        if was_running:
            self.counts.running -= 1


def _error_text(exc: BaseException) -> str:
    """The exception and where it was raised (the last frame), in one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _in_this_process(fn: JobFn, jobs: Sequence[Any], ledger: _Ledger) -> None:
    """`local:1`: no worker process to start or warm up (and a debugger sees the job); a
    crash here ends the command, like any crash of it, with the saved jobs kept."""
    for job in jobs:
        ledger.started()
        try:
            result = fn(job, ledger.progress)
        except Exception as exc:  # noqa: BLE001 - the job's own error, reported with the job
            ledger.failed(job, _error_text(exc))
        else:
            ledger.succeeded(job, result)


# ------------------------------------------------------------------------------ local
def _local_worker(fn: JobFn, pipe: connection.Connection) -> None:
    """A worker process: jobs come down `pipe` one at a time (None: stop); progress and each
    result (or error) go back up. It lives for many jobs, so libraries warm up once."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops the workers on Ctrl-C
    one_thread_per_worker()
    while (job := pipe.recv()) is not None:
        try:
            result = fn(job, lambda n: pipe.send(("progress", n)))
        except Exception as exc:  # noqa: BLE001 - any failure is the job's, reported to the driver
            pipe.send(("error", _error_text(exc)))
        else:
            pipe.send(("result", result))


@dataclass
class _Worker:
    process: Any
    pipe: connection.Connection
    job: Any = None  # the job it runs now (None: idle)
    progress: int = 0  # the job's progress so far: taken back if the worker dies


class _LocalRun:
    """N worker processes, forked from a clean server that has the job's module loaded (a
    worker starts in milliseconds). Each runs one job at a time, so a worker that dies names
    the job it took down; a fresh worker takes its place."""

    def __init__(self, fn: JobFn, jobs: Sequence[Any], workers: int, ledger: _Ledger) -> None:
        self.fn, self.ledger = fn, ledger
        self.waiting = list(jobs)
        self.size = max(1, min(workers, len(jobs)))
        self.deaths: dict[Any, int] = {}
        self.workers: list[_Worker] = []
        self.context = get_context("forkserver")
        self.context.set_forkserver_preload([getattr(fn, "func", fn).__module__])

    def run(self) -> None:
        saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
        _one_thread_env()  # the fork server starts with them (numpy reads them once)
        try:
            self.workers = [self._start_worker() for _ in range(self.size)]
            while self.waiting or any(w.job is not None for w in self.workers):
                for worker in self.workers:
                    if worker.job is None and self.waiting:
                        self._assign(worker, self.waiting.pop(0))
                busy = [w for w in self.workers if w.job is not None]
                ready = connection.wait([w.pipe for w in busy], timeout=1.0)
                for worker in [w for w in busy if w.pipe in ready]:
                    self._read(worker)
        finally:
            for worker in self.workers:  # done, Ctrl-C, or an error in a callback
                worker.process.kill()
                worker.process.join()
            _restore(saved)

    def _start_worker(self) -> _Worker:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_local_worker, args=(self.fn, theirs),
                                       daemon=True)
        process.start()
        theirs.close()
        return _Worker(process, mine)

    def _assign(self, worker: _Worker, job: Any) -> None:
        worker.job, worker.progress = job, 0
        worker.pipe.send(job)
        self.ledger.started()

    def _read(self, worker: _Worker) -> None:
        job = worker.job
        try:
            kind, value = worker.pipe.recv()
        except (EOFError, OSError):  # the worker died without a word
            self._died(worker)
            return
        if kind == "progress":
            worker.progress += value
            self.ledger.progress(value)
            return
        worker.job = None
        if kind == "result":
            self.ledger.succeeded(job, value)
        else:
            self.ledger.failed(job, value)

    def _died(self, worker: _Worker) -> None:
        """Replace the worker; its job runs once more, first in line, or has failed."""
        worker.process.join()
        worker.pipe.close()
        self.workers[self.workers.index(worker)] = self._start_worker()
        self.ledger.progress(-worker.progress)  # a rerun reports them again
        error = f"its worker process died (exit code {worker.process.exitcode})"
        self.deaths[worker.job] = self.deaths.get(worker.job, 0) + 1
        if self.deaths[worker.job] < ATTEMPTS:
            self.waiting.insert(0, worker.job)
            self.ledger.interrupted()
        else:
            self.ledger.failed(worker.job, f"{error}, {ATTEMPTS} times")


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# ------------------------------------------------------------------------------ Dask
PROGRESS_TOPIC = "vbs-hil-progress"
DASK_WORKER_ENVIRON = {name: 1 for name in THREAD_VARIABLES}
"""What a Dask nanny sets for its worker: one thread each, and not Dask's default
MALLOC_TRIM_THRESHOLD_, which fixes glibc's mmap threshold and, by mapping every large numpy
array afresh, makes a replay job 1.8x slower (0.90 s against 0.50 s, measured)."""


def _dask_job(fn: JobFn, job: Any, key: str) -> Any:
    """On a Dask worker: the job, with its start and progress sent to the driver as events.

    A scheduler reruns a task whose worker died up to its own `allowed-failures` times; the
    job's runs are counted on the scheduler, so whatever its setting, a job whose worker
    died under it twice is not run a third time but reported failed."""
    from distributed import get_client, get_worker

    one_thread_per_worker()
    runs = get_client().get_metadata(["vbs-hil", key], 0) + 1
    get_client().set_metadata(["vbs-hil", key], runs)
    if runs > ATTEMPTS:
        raise WorkerDied(f"its worker died under it {ATTEMPTS} times")
    worker = get_worker()
    worker.log_event(PROGRESS_TOPIC, ("start", key, 0))
    return fn(job, lambda n: worker.log_event(PROGRESS_TOPIC, ("progress", key, n)))


class WorkerDied(ExecutorError):
    """A job's worker died under it on every run it was given."""


def _dask_run(fn: JobFn, jobs: Sequence[Any], executor: Executor, ledger: _Ledger) -> None:
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ExecutorError(f"--executor {executor} needs Dask: {DASK_INSTALL}") from exc
    events: queue.SimpleQueue = queue.SimpleQueue()  # filled on the client's event loop
    with dask.config.set({"distributed.scheduler.allowed-failures": ATTEMPTS - 1,
                          "distributed.nanny.pre-spawn-environ": DASK_WORKER_ENVIRON}):
        cluster = (LocalCluster(n_workers=executor.workers, threads_per_worker=1,
                                processes=True, dashboard_address=None)
                   if executor.kind == "dask-local" else None)
        try:
            client = Client(cluster) if cluster else _connect(Client, executor.address)
            with client:
                _check_versions(client, executor)
                client.subscribe_topic(PROGRESS_TOPIC, lambda event: events.put(event[1]))
                run_id = uuid.uuid4().hex[:8]  # keys unique on a scheduler other runs share
                keys = {f"vbs-hil-{run_id}-{i}": job for i, job in enumerate(jobs)}
                futures = [client.submit(_dask_job, fn, job, key, key=key, pure=False)
                           for key, job in keys.items()]
                tally = _DaskTally(keys, ledger)
                pending = as_completed(futures, with_results=False)
                try:
                    while not pending.is_empty() or not events.empty():
                        finished = _next_batch(pending)
                        while not events.empty():
                            tally.event(*events.get())
                        for future in finished:
                            tally.finished(future)
                finally:
                    for future in futures:  # Ctrl-C: nothing more runs on the cluster
                        future.cancel()
        finally:
            if cluster:
                cluster.close()


def _connect(client_class: Any, address: str) -> Any:
    try:
        return client_class(address, timeout=DASK_CONNECT_S)
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {address} within {DASK_CONNECT_S:.0f} s "
            f"({exc}); start it there (dask scheduler) and its workers (dask worker "
            f"{address}), or check the address and the firewall") from exc


def _check_versions(client: Any, executor: Executor) -> None:
    """Workers must run the same vbs-hil: a job's result depends on the code that ran it."""
    from hil import __version__

    versions = client.run(_worker_version)
    if not versions:
        raise ExecutorError(f"the Dask cluster at {executor} has no workers; start some "
                            f"(dask worker {executor.address or 'SCHEDULER'})")
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        worker, version = next(iter(other.items()))
        raise ExecutorError(f"Dask worker {worker} runs vbs-hil {version}, this driver "
                            f"{__version__}: install the same version on every worker")


def _worker_version() -> str:
    from hil import __version__

    return __version__


def _next_batch(pending: Any) -> list[Any]:
    """The futures finished by now (none: after a short wait, so events keep flowing)."""
    if pending.is_empty():
        return []
    batch = pending.next_batch(block=False)
    if not batch:
        time.sleep(0.2)
    return batch


class _DaskTally:
    """The ledger fed from the workers' events and the finished futures. Events may arrive
    after their job's result; a job rerun after its worker died starts again."""

    def __init__(self, keys: dict[str, Any], ledger: _Ledger) -> None:
        self.keys, self.ledger = keys, ledger
        self.progress: dict[str, int] = {}  # per started job: reported so far
        self.ended: set[str] = set()

    def event(self, kind: str, key: str, n: int) -> None:
        if key in self.ended or key not in self.keys:  # late, or another run's
            return
        if kind == "progress":
            self.progress[key] = self.progress.get(key, 0) + n
            self.ledger.progress(n)
        elif key in self.progress:  # started again: its worker died
            self.ledger.progress(-self.progress[key])
            self.progress[key] = 0
        else:
            self.progress[key] = 0
            self.ledger.started()

    def finished(self, future: Any) -> None:
        from distributed.scheduler import KilledWorker

        self.ended.add(future.key)
        was_running = self.progress.pop(future.key, None) is not None
        job = self.keys[future.key]
        try:
            result = future.result()
        except KilledWorker as exc:
            self.ledger.failed(job, f"its worker died under it {ATTEMPTS} times ({exc})",
                               was_running=was_running)
        except WorkerDied as exc:
            self.ledger.failed(job, str(exc), was_running=was_running)
        except Exception as exc:  # noqa: BLE001 - the job's own error, reported with the job
            self.ledger.failed(job, _error_text(exc), was_running=was_running)
        else:
            self.ledger.succeeded(job, result, was_running=was_running)
