"""Faults the suite injects into a testbed while a run drives it."""

from __future__ import annotations

import psutil

from hil.config import HilConfig
from hil.testbeds import kind_of
from hil.testbeds.common import connect_host


def kill_vbs(cfg: HilConfig, controller_pid: int) -> None:
    """SIGKILL the vBS's own process (srsENB, the emulated vBS) as a crash would end it: on
    its host over SSH, or among the children of the controller `controller_pid`."""
    process = kind_of(cfg).vbs_process(cfg)
    if process.host is not None:
        with connect_host(process.host, cfg.hosts[process.host]) as host:
            host.kill(process.name)
        return
    children = [child for child in psutil.Process(controller_pid).children(recursive=True)
                if process.name in " ".join(child.cmdline())]
    if not children:
        raise AssertionError(f"no child of the controller (PID {controller_pid}) runs "
                             f"{process.name}")
    for child in children:
        child.kill()
