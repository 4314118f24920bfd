"""Runs as an operator makes them: a short BSvBS run whose every round is valid, a Ctrl-C
that stops after the round and restores the defaults, a controller killed mid-run and
resumed with no round lost or repeated, and a vBS killed mid-run and restarted by the run.
Each run is `hil run` in a process of its own, its run directory in a temporary folder."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from hil.config import HilConfig
from hil.recorder import read_rounds
from tools.acceptance.faults import kill_vbs

ROUNDS = 30
"""A short run: long enough to see every stage of a round many times."""
STARTED_S = 300.0
"""How long a run may take to bring its testbed up and record its first rounds."""
BEFORE_FAULT, AFTER_FAULT = 5, 10
"""Rounds a fault test lets run before its fault, and at least after it."""
POLL_S = 0.2
LOOK_S = 3 * POLL_S
"""How long the test may take to see a round recorded and to act on it."""


def rounds_while_looking(cfg: HilConfig) -> int:
    """Rounds the run may record while the test looks (a stepped clock: up to 1000 a
    second)."""
    return math.ceil(LOOK_S / max(cfg.period_s, 1e-3))


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
        time.sleep(POLL_S)
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
        "violations": int(rounds["violations"].fillna(0).sum()),
        "round_start_to_start_s_median": float(rounds["t_start_s"].diff().median())}])
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
    kill_at = testbed_config.recording.checkpoint_every + BEFORE_FAULT
    total = kill_at + rounds_while_looking(testbed_config) + AFTER_FAULT
    proc = hil("run", str(testbed_config_path), "--rounds", str(total), "--out", str(tmp_path))
    run_dir = the_run_dir(tmp_path, run_timeout_s(testbed_config, kill_at), rounds=kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(read_rounds(run_dir))
    assert killed_at < total, "the run ended before the kill: nothing left to resume"

    resumed = hil("run", "--resume", str(run_dir))
    output = finished(resumed, run_timeout_s(testbed_config, total))
    assert resumed.returncode == 0, output[-3000:]
    rounds = read_rounds(run_dir)
    measured.table("killed and resumed", [{"killed_after_rounds": killed_at,
                                           "rounds": len(rounds),
                                           "invalid": int((~rounds["valid"]).sum())}])
    assert rounds["round"].tolist() == list(range(total))
    assert exit_of(run_dir)["status"] == "completed"


def test_a_killed_vbs_is_restarted_and_the_run_goes_on(testbed_config, testbed_config_path,
                                                      tmp_path, measured):
    """The vBS's process (srsENB, the emulated vBS) killed as a crash would: the run's
    watchdog brings it back (on srsRAN, the chain from the eNB on, the UE attaching again),
    the rounds it missed are recorded invalid, and the run completes with valid rounds."""
    total = BEFORE_FAULT + rounds_while_looking(testbed_config) + AFTER_FAULT + 2  # a gap of 2
    proc = hil("run", str(testbed_config_path), "--rounds", str(total), "--out", str(tmp_path))
    run_dir = the_run_dir(tmp_path, rounds=BEFORE_FAULT)
    kill_vbs(testbed_config, proc.pid)
    killed_at = len(read_rounds(run_dir))
    assert killed_at < total, "the run ended before the kill"
    output = finished(proc, run_timeout_s(testbed_config, total))
    assert proc.returncode == 0, output[-3000:]
    rounds = read_rounds(run_dir)
    invalid = set(rounds.index[~rounds["valid"]])
    gap_end = killed_at - 1  # the gap: the round in flight at the kill and those after it,
    while gap_end + 1 in invalid:  # up to the first valid one
        gap_end += 1
    gap = set(range(killed_at, gap_end + 1))
    after = rounds.iloc[gap_end + 1:]
    measured.table("the vBS killed mid-run", [{
        "killed_after_rounds": killed_at, "rounds": len(rounds),
        "invalid_in_gap": gap_end + 1 - killed_at,
        "restarts": int(rounds["testbed_restarts"].iloc[-1]),
        "valid_after_restart": int(after["valid"].sum()), "rounds_after_restart": len(after)}])
    assert rounds["round"].tolist() == list(range(total))
    assert rounds["testbed_restarts"].iloc[-1] == 1
    assert len(after) >= AFTER_FAULT // 2
    assert len(invalid - gap) <= allowed_invalid(testbed_config), sorted(invalid - gap)
    assert exit_of(run_dir)["status"] == "completed"
    assert exit_of(run_dir)["defaults_restored"] == "yes"
