"""Waiting for an event in a test: poll a condition, fail naming the event after a limit.

The limit only keeps a broken component from hanging the suite; a test waits on what it
needs (a process gone, a line logged), never for a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0,
               poll_s: float = 0.02) -> None:
    """Return once `condition()` holds; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(poll_s)
