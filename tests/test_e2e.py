"""`hil run` end to end: the CLI, a separate emulated-vBS process, real ZMQ sockets.

These are the behaviours an operator relies on: the loop learns, every round lands on disk,
Ctrl-C and SIGTERM stop cleanly with the defaults restored, a SIGKILLed run resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from testbed_yaml import REPO, write_config

from agents.registry import make_agent
from drivers.emulated.sshd import Sshd, free_port
from drivers.emulated.sshd import stop as stop_sshd
from drivers.ssh import SshHost
from hil.base import model
from hil.base.scenarios import make_scenario
from hil.config import load_config
from hil.recorder import RunDirectory, read_rounds
from hil.reward import RewardParams, reward
from tools.cli import main

pytestmark = pytest.mark.e2e
SMALL_SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [5, 27], "dl_prb_ratio": [0.2, 1.0],
               "ul_max_mcs": [5, 23], "ul_prb_ratio": [0.2, 1.0]}


def only_run_dir(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def final_probabilities(run_dir: Path, cfg) -> np.ndarray:
    agent = make_agent(cfg.agent.name, cfg.policy_space.size, seed=cfg.seed, horizon=cfg.rounds)
    agent.load_state_dict(RunDirectory(run_dir).load_checkpoint()["agent"])
    return agent.probabilities()


def test_bsvbs_learns_the_policies_the_model_makes_best_in_scenario_a(tmp_path):
    config = write_config(tmp_path, rounds=1500, **{"clock.speedup": 500.0, "reward.delta": 0.1,
                                                    "policy_space": SMALL_SPACE})
    assert main(["run", str(config)]) == 0
    run_dir = only_run_dir(tmp_path)
    cfg = load_config(config)

    # What the model says each policy is worth in scenario A (not what the agent saw).
    cal = model.load_calibration(cfg.vbs.emulator.calibration)
    arrays = cfg.policy_space.arrays()
    caps = model.make_caps(cal.cell, dl_max_mcs=arrays["dl_max_mcs"],
                           ul_max_mcs=arrays["ul_max_mcs"], dl_prb_ratio=arrays["dl_prb_ratio"],
                           ul_prb_ratio=arrays["ul_prb_ratio"], dl_gain_db=arrays["dl_gain_db"])
    env = make_scenario("A", seed=0).epochs(0, 1)
    env = type(env)(*(np.asarray(getattr(env, f))[:, None] for f in env.__dataclass_fields__))
    out = model.expected_round(caps, env, cal)  # shape (1 environment, 16 policies)
    params = RewardParams(**cfg.reward.model_dump())
    _, _, f = reward(out.dl_rate_mbps, out.dl_demand_mbps, out.ul_rate_mbps, out.ul_demand_mbps,
                     out.power_w, params)
    assert f.shape == (1, cfg.policy_space.size)
    best_two = np.argsort(f[0])[::-1][:2]

    probs = final_probabilities(run_dir, cfg)
    assert probs[best_two].sum() > 0.5, (probs.round(3), f[0].round(3))
    rounds = read_rounds(run_dir)
    assert len(rounds) == 1500 and rounds["valid"].mean() > 0.99
    assert rounds["violations"].sum() == 0


def test_a_run_leaves_its_record_plot_and_exit_status(tmp_path):
    config = write_config(tmp_path, rounds=120, **{"clock.speedup": 200.0})
    assert main(["run", str(config), "--agent", "random", "--seed", "5"]) == 0
    run_dir = only_run_dir(tmp_path)
    assert {"run.json", "rounds.parquet", "summary.png"} <= {p.name for p in run_dir.iterdir()}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["exit"]["status"] == "completed" and meta["exit"]["defaults_restored"] == "yes"
    assert meta["seed"] == 5 and meta["agent"] == "random" and meta["protocol_version"] == 1
    assert meta["vbs"]["name"] == "emulated-srsenb"
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    assert rounds["round"].tolist() == list(range(120))
    assert rounds["power_w"].between(8, 20).all()
    assert rounds["nof_tti"].min() > 0


def test_a_stepped_run_measures_every_round_over_exactly_one_round_of_ttis(tmp_path):
    """clock.mode stepped: no waiting on the wall clock, yet every window is round_s of
    emulated time and its power is the emulated meter's reading of that window alone."""
    config = write_config(tmp_path, rounds=300, **{"clock.mode": "stepped",
                                                   "clock.speedup": 1.0})
    assert main(["run", str(config)]) == 0
    rounds = read_rounds(only_run_dir(tmp_path))
    assert len(rounds) == 300 and rounds["valid"].all()
    assert (rounds["nof_tti"] == 1000).all()
    assert rounds["power_w"].between(8, 20).all()
    assert np.allclose(rounds["energy_j"], rounds["power_w"] * 1.0, rtol=1e-3)
    assert (rounds["overrun_s"] == 0).all()


def test_resume_continues_a_finished_run_to_a_new_total(tmp_path):
    config = write_config(tmp_path, rounds=100, **{"clock.speedup": 500.0})
    assert main(["run", str(config)]) == 0
    run_dir = only_run_dir(tmp_path)
    assert main(["run", "--resume", str(run_dir), "--rounds", "180"]) == 0
    rounds = read_rounds(run_dir)
    assert rounds["round"].tolist() == list(range(180))


def hil_subprocess(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_rounds(run_root: Path, n: int, timeout_s: float = 60) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dirs = list(run_root.glob("*")) if run_root.exists() else []
        if dirs and (dirs[0] / "rounds.arrow").exists() and len(read_rounds(dirs[0])) >= n:
            return dirs[0]
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} rounds recorded within {timeout_s} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_round_restores_defaults_and_flushes(tmp_path, sig):
    config = write_config(tmp_path, rounds=100_000, **{"clock.speedup": 100.0})
    proc = hil_subprocess(config)
    run_dir = wait_for_rounds(tmp_path / "runs", 30)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["exit"]["status"] == "interrupted" and meta["exit"]["defaults_restored"] == "yes"
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    assert rounds["round"].tolist() == list(range(len(rounds))) and len(rounds) >= 30
    assert meta["rounds_done"] == len(rounds)
    assert "--resume" in output


def test_after_sigkill_the_run_resumes_with_no_recorded_round_lost(tmp_path):
    config = write_config(tmp_path, rounds=400, **{"clock.speedup": 100.0,
                                                   "recording.checkpoint_every": 50})
    proc = hil_subprocess(config)
    run_dir = wait_for_rounds(tmp_path / "runs", 120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    recorded = len(read_rounds(run_dir))
    assert recorded >= 120

    assert main(["run", "--resume", str(run_dir)]) == 0
    rounds = read_rounds(run_dir)
    assert rounds["round"].tolist() == list(range(400))
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["exit"]["status"] == "completed" and len(meta["resumed_utc"]) == 1


def test_the_emulator_does_not_outlive_a_killed_controller(tmp_path):
    config = write_config(tmp_path, rounds=100_000, **{"clock.speedup": 100.0})
    proc = hil_subprocess(config)
    wait_for_rounds(tmp_path / "runs", 5)
    (emulator,) = psutil.Process(proc.pid).children()
    emulator_pid = emulator.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(emulator_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("the emulated vBS is still running after its controller was killed")


def test_a_broken_config_is_one_line_naming_file_and_key(tmp_path, capsys):
    config = write_config(tmp_path, **{"clock.speedup": -3})
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: clock.speedup" in err.replace("\n", "")


def test_a_run_whose_testbed_never_came_up_offers_no_resume(tmp_path, capsys):
    config = write_config(tmp_path, rounds=10, **{
        "vbs.host": "bbu", "hosts": {"bbu": {"hostname": "127.0.0.1", "port": free_port(),
                                             "use_agent": False,
                                             "key_path": str(tmp_path / "no-key")}}})
    assert main(["run", str(config)]) == 1
    captured = capsys.readouterr()
    output = (captured.out + captured.err).replace("\n", " ")
    assert "before its first round" in output and "nothing to resume" in output
    assert "--resume" not in output


def test_hil_run_starts_the_local_twin_sshd_its_config_names(tmp_path):
    """`hil run` straight after `pip install`: no `make` has started the BBU host's sshd."""
    folder, port = tmp_path / "sshd", free_port()
    config = write_config(tmp_path, rounds=20, **{
        "vbs.host": "bbu", "hosts": {"bbu": {"hostname": "127.0.0.1", "port": port,
                                             "local_sshd": str(folder), "use_agent": False}}})
    try:
        assert main(["run", str(config)]) == 0
        assert Sshd(folder, port=port).running_pid() is not None  # left running, as make does
    finally:
        stop_sshd(folder)
    assert len(read_rounds(only_run_dir(tmp_path))) == 20


def test_a_killed_vbs_is_restarted_and_the_run_goes_on_with_the_gap_recorded_invalid(tmp_path):
    config = write_config(tmp_path, rounds=150, **{
        "clock.speedup": 100.0, "vbs.timeout_s": 0.1, "vbs.retries": 1, "meter.timeout_s": 0.1})
    proc = hil_subprocess(config)
    run_dir = wait_for_rounds(tmp_path / "runs", 30)
    (emulator,) = psutil.Process(proc.pid).children()
    emulator.kill()
    killed_at = len(read_rounds(run_dir))
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    assert rounds["round"].tolist() == list(range(150))
    invalid = rounds.index[~rounds["valid"]].tolist()
    # the round in flight when it died, perhaps the next; restarted before the one after
    assert 1 <= len(invalid) <= 2 and all(killed_at - 1 <= k <= killed_at + 2 for k in invalid)
    assert rounds["testbed_restarts"].iloc[-1] == 1 and rounds["valid"].iloc[-50:].all()
    assert rounds["testbed_stage"].iloc[-1] == "vBS up"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["exit"]["status"] == "completed" and meta["exit"]["defaults_restored"] == "yes"


def test_a_dropped_ssh_connection_to_the_bbu_host_does_not_stop_the_run(tmp_path, sshd):
    """Every SSH session to the BBU host drops and sshd is down for a while: the emulated vBS
    (not a child of any session) goes on serving over ZMQ, the watchdog reconnects once
    sshd is back, and the run completes and stops the emulator over SSH as usual."""
    # the emulator's own meter: what makes a round invalid here is then the drop alone (the
    # GPM-8213 twin polled in 10 ms rounds loses windows on a busy machine: the next test's)
    config = write_config(tmp_path, sshd=sshd, rounds=400, meter={"kind": "emulated"},
                          **{"clock.speedup": 100.0})
    proc = hil_subprocess(config)
    run_dir = wait_for_rounds(tmp_path / "runs", 30)
    sshd.kill()
    time.sleep(0.5)
    dropped_for = len(read_rounds(run_dir))
    sshd.start()  # same port, same host key
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert dropped_for >= 30 + 10  # the run went on while sshd was down
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    assert rounds["round"].tolist() == list(range(400))
    assert rounds["valid"].mean() >= 0.95 and rounds["testbed_restarts"].iloc[-1] == 0
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["exit"]["status"] == "completed" and meta["exit"]["defaults_restored"] == "yes"
    with SshHost("check", **sshd.host_params()) as host:
        assert not host.is_running("emulated-vbs")


def test_the_shipped_testbed_runs_through_sshd_zmq_and_the_meter_twin_over_pyvisa(tmp_path,
                                                                             sshd):
    """`make run`'s config as shipped: the emulator started, tracked and stopped over SSH by
    SshHost; power read by the pyvisa-py GPM-8213 driver from the emulator's SCPI twin."""
    config = write_config(tmp_path, sshd=sshd, rounds=60)
    assert main(["run", str(config)]) == 0
    rounds = read_rounds(only_run_dir(tmp_path))
    assert len(rounds) == 60
    # On a loaded machine the meter's poller may miss a 10 ms window: that round is recorded
    # as invalid (and not learned from), never given a made-up power.
    assert rounds["valid"].mean() >= 0.9
    assert rounds["invalid_reason"].dropna().str.contains("valid readings cover").all()
    rounds = rounds[rounds["valid"]]
    assert rounds["power_w"].between(9.0, 16.5).all()
    # energy is in the testbed's (accelerated, here 100x) time, like the vBS's window of TTIs
    # (1 ms each): in wall time the ratio would be 1/100. The meter's window and the vBS's are
    # timed by two processes, so on a loaded machine a single round's may differ by 2x.
    ratio = rounds["energy_j"] / rounds["power_w"] / (rounds["nof_tti"] / 1000)
    assert 0.8 <= ratio.median() <= 1.25 and ratio.between(0.2, 5.0).all(), ratio.describe()
    with SshHost("check", **sshd.host_params()) as host:
        assert '"scpi_meter"' in host.tail("emulated-vbs", 50)
        assert not host.is_running("emulated-vbs")  # stopped at the end of the run


def test_an_emulator_left_on_the_ssh_host_is_replaced_at_the_next_start(tmp_path, sshd):
    """A controller killed with SIGKILL cannot stop its emulator; the next run does.

    Rounds of 100 ms (speedup 10): the GPM-8213 twin's readings then cover every window
    even on a loaded machine, where 10 ms windows have come up short (one invalid round)."""
    config = write_config(tmp_path, sshd=sshd, rounds=5, **{"clock.speedup": 10.0})
    with SshHost("bbu", **sshd.host_params()) as host:
        host.start("emulated-vbs", "sleep 600")
        assert main(["run", str(config)]) == 0
        assert not host.is_running("emulated-vbs")
    assert read_rounds(only_run_dir(tmp_path))["valid"].all()


def test_an_emulator_with_no_controller_requests_exits_by_itself(tmp_path):
    cal = REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "drivers.emulated", "--calibration",
                           str(cal), "--exit-when-idle-s", "0.5"], cwd=REPO, timeout=20,
                          capture_output=True, text=True)
    assert done.returncode == 0 and '"ready": true' in done.stdout
    assert "no control request for 0 s: exiting" in done.stderr
    assert time.monotonic() - started < 15


def test_a_vbs_host_missing_from_hosts_is_a_config_error_naming_it(tmp_path, capsys):
    config = write_config(tmp_path, **{"vbs.host": "bbu"})
    assert main(["run", str(config)]) == 2
    assert "vbs.host 'bbu' is not in `hosts`" in capsys.readouterr().err
