"""Runs as an operator makes them: a short BSvBS run whose every round is valid, a Ctrl-C
that stops after the round and restores the defaults, a controller killed mid-run and
resumed with no round lost or repeated, and CURVE refusing controllers it does not know.
Each run is `hil run` in a process of its own, its run directory in a temporary folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq.auth

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.curve import ClientCurve
from hil.base.errors import VbsUnreachableError
from hil.config import HilConfig
from hil.recorder import read_rounds
from hil.testbeds import start_testbed

ROUNDS = 30
"""A short run: long enough to see every stage of a round many times."""
STARTED_S = 300.0
"""How long a run may take to bring its testbed up and record its first rounds."""


def hil(*args: str) -> subprocess.Popen[str]:
    """`hil ARGS` in a process of its own, as an operator starts it."""
    return subprocess.Popen([sys.executable, "-c", "from tools.cli import main; "
                             "raise SystemExit(main())", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen[str], timeout_s: float) -> str:
    output, _ = proc.communicate(timeout=timeout_s)
    return output


def the_run_dir(out: Path, timeout_s: float = STARTED_S, rounds: int = 1) -> Path:
    """The run directory under `out` once it holds `rounds` recorded rounds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dirs = [d for d in out.glob("*") if (d / "run.json").exists()] if out.exists() else []
        if dirs and len(read_rounds(dirs[0])) >= rounds:
            return dirs[0]
        time.sleep(0.2)
    raise AssertionError(f"no run with {rounds} rounds under {out} within {timeout_s} s")


def exit_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())["exit"]


def allowed_invalid(cfg: HilConfig) -> int:
    """Every round of a real-time run must be valid. An accelerated clock squeezes a round
    into 1/speedup of a second, where a busy host's meter poller can miss a window (the
    round is then recorded invalid, never given made-up watts): a tenth may be."""
    return 0 if cfg.clock.mode == "realtime" else ROUNDS // 10


def run_timeout_s(cfg: HilConfig, rounds: int) -> float:
    return STARTED_S + rounds * cfg.round_s / cfg.clock.speedup * 3


def test_a_short_bsvbs_run_has_every_round_valid(testbed_config, testbed_config_path, tmp_path,
                                                 measured):
    proc = hil("run", str(testbed_config_path), "--agent", "bsvbs", "--rounds", str(ROUNDS),
               "--out", str(tmp_path))
    output = finished(proc, run_timeout_s(testbed_config, ROUNDS))
    assert proc.returncode == 0, output[-3000:]
    run_dir = the_run_dir(tmp_path)
    rounds = read_rounds(run_dir)
    measured.table("the run", [{
        "rounds": len(rounds), "valid": int(rounds["valid"].sum()),
        "power_w_mean": float(rounds["power_w"].mean()),
        "dl_rate_mbps_mean": float(rounds["dl_rate_mbps"].mean()),
        "ul_rate_mbps_mean": float(rounds["ul_rate_mbps"].mean()),
        "violations": int(rounds["violations"].fillna(0).sum())}])
    assert len(rounds) == ROUNDS
    invalid = rounds["invalid_reason"].dropna().value_counts().to_dict()
    assert (~rounds["valid"]).sum() <= allowed_invalid(testbed_config), invalid
    assert (rounds["violations"].dropna() == 0).all()
    assert exit_of(run_dir)["defaults_restored"] == "yes"


def test_ctrl_c_stops_after_the_round_and_restores_the_defaults(testbed_config,
                                                                testbed_config_path, tmp_path):
    proc = hil("run", str(testbed_config_path), "--rounds", "100000", "--out", str(tmp_path))
    run_dir = the_run_dir(tmp_path, rounds=5)
    proc.send_signal(signal.SIGINT)
    output = finished(proc, STARTED_S)
    assert proc.returncode == 130, output[-3000:]  # interrupted, after its cleanup
    exit = exit_of(run_dir)
    assert exit["status"] == "interrupted" and exit["defaults_restored"] == "yes", exit
    rounds = read_rounds(run_dir)
    assert rounds["round"].tolist() == list(range(len(rounds)))


def test_a_killed_controller_resumes_with_no_round_lost_or_repeated(testbed_config,
                                                                    testbed_config_path,
                                                                    tmp_path, measured):
    """SIGKILL after the run's first checkpoint (`recording.checkpoint_every` rounds), then
    `hil run --resume`: the rounds recorded after the checkpoint are kept, the rest run."""
    first_checkpoint = testbed_config.recording.checkpoint_every
    total = first_checkpoint + ROUNDS
    proc = hil("run", str(testbed_config_path), "--rounds", str(total), "--out", str(tmp_path))
    run_dir = the_run_dir(tmp_path, run_timeout_s(testbed_config, first_checkpoint),
                          rounds=first_checkpoint + ROUNDS // 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(read_rounds(run_dir))

    resumed = hil("run", "--resume", str(run_dir))
    output = finished(resumed, run_timeout_s(testbed_config, total))
    assert resumed.returncode == 0, output[-3000:]
    rounds = read_rounds(run_dir)
    measured.table("killed and resumed", [{"killed_after_rounds": killed_at,
                                           "rounds": len(rounds),
                                           "invalid": int((~rounds["valid"]).sum())}])
    assert rounds["round"].tolist() == list(range(total))
    assert exit_of(run_dir)["status"] == "completed"


@pytest.mark.needs("curve")
def test_curve_serves_only_the_authorized_controller(testbed_config, tmp_path):
    """The vBS's control socket answers the controller whose key it holds, and nobody else:
    not a plaintext client, not a client with a key of its own."""
    with start_testbed(testbed_config, tmp_path) as bed:  # its client holds the keys
        assert bed.ran.ping().ok
        assert isinstance(bed.ran, RtctlClient)
        server_public = ClientCurve.from_dir(testbed_config.vbs.curve_dir).server_public
        _, secret = zmq.auth.create_certificates(str(tmp_path), "intruder")
        intruder = ClientCurve(*zmq.auth.load_certificate(secret), server_public=server_public)
        for curve in (None, intruder):
            with RtctlClient(bed.ran.endpoint, timeout_s=0.5, retries=0, curve=curve) as ran, \
                    pytest.raises(VbsUnreachableError):
                ran.ping()
        assert bed.ran.set({"dl_max_mcs": 10}).applied.dl_max_mcs == 10  # still served
