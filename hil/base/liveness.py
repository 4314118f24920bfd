"""Whether a testbed's processes still run, asked off the round's critical path.

Asking a host over SSH whether a process runs takes an SSH exchange: ~25 ms on an idle
machine, 50-70 ms on a BBU host busy with srsRAN (measured; three processes made 217 ms a
round). A watchdog that asked before every round spent that in every round; an
`AliveChecker` asks in a thread of its own, and the round reads its last answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hil.base.errors import HilError

log = logging.getLogger(__name__)

ALIVE_CHECK_S = 1.0
"""How often a checker asks: a process that died is noticed within about a round."""


class AliveChecker:
    """`check()` asked every `every_s` in a daemon thread; calling the checker returns the
    last answer (True until the first one).

    A check that raises HilError (the host could not be asked) answers False, so the caller
    looks for itself and meets the error where it can report it. `reset()` says the
    processes were just (re)started: it answers True again, and the answer of a check that
    began before it is dropped, never taken for the new processes.
    """

    def __init__(self, check: Callable[[], bool], every_s: float = ALIVE_CHECK_S, *,
                 name: str = "alive-check") -> None:
        self._check, self._every_s = check, every_s
        self._lock = threading.Lock()
        self._alive = True
        self._generation = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self) -> bool:
        return self._alive

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._alive = True

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            generation = self._generation
            try:
                alive = self._check()
            except HilError as exc:
                log.debug("alive check failed: %s", exc)
                alive = False
            with self._lock:
                if generation == self._generation:
                    self._alive = alive
