"""What the tests against real patched srsRAN binaries share: where the binaries are, when
the tests run at all, and the environment each program needs.

`HIL_SRSRAN_BIN` is a directory holding srsepc, srsenb and srsue built with
patches/srsRAN_4G (and, if srsRAN was built with shared RF plugins, their .so files, found
through LD_LIBRARY_PATH). `HIL_SRSRAN_PRELOAD`, if set, is an LD_PRELOAD for srsepc and
srsenb (a kernel without SCTP needs an SCTP-over-TCP shim). Without the binaries, root or
iperf3 the tests are skipped (CI has no srsRAN).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BIN = os.environ.get("HIL_SRSRAN_BIN")
MARKS = [
    pytest.mark.srsran,
    pytest.mark.skipif(not BIN, reason="needs patched srsRAN binaries: set HIL_SRSRAN_BIN"),
    pytest.mark.skipif(os.geteuid() != 0, reason="srsEPC and srsUE need root"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3"),
]
"""`pytestmark` of a module of such tests."""


def binary(program: str) -> str:
    """Path of `srs<program>` (epc, enb, ue) in HIL_SRSRAN_BIN."""
    assert BIN is not None  # the MARKS skip the tests otherwise
    return str(Path(BIN) / f"srs{program}")


def program_env(program: str) -> dict[str, str]:
    """Extra environment of `srs<program>`: the RF plugins' folder, the SCTP shim (core
    and eNB only: srsUE speaks no S1)."""
    assert BIN is not None
    env = {"LD_LIBRARY_PATH": BIN}
    preload = os.environ.get("HIL_SRSRAN_PRELOAD")
    if preload and program != "ue":
        env["LD_PRELOAD"] = preload
    return env
