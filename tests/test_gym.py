"""The testbed as a gymnasium environment (hil/gym.py): one round of the real engine per step,
with everything a run gives (recording, invalid rounds reported, defaults restored)."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import numpy as np
import pandas as pd
import psutil
import pytest
from gymnasium.utils.env_checker import check_env
from test_e2e import wait_for_rounds
from testbed_yaml import REPO, write_config

import hil.gym
from drivers.rtctl.client import RtctlClient
from hil.base.errors import HilError, VbsUnreachableError
from hil.config import load_config
from hil.gym import ENV_ID, OBSERVATION, make_vector
from hil.gym import TestbedEnv as GymEnv  # not `Test*`: pytest would try to collect it
from hil.run import execute, new_run
from tools.collect.sweep import ScheduleAgent

pytestmark = pytest.mark.e2e
STEPPED = {"clock.mode": "stepped", "clock.speedup": 1.0, "vbs.timeout_s": 0.2,
           "vbs.retries": 1}
MEASURED = ["round", "policy_index", "applied_dl_max_mcs", "applied_ul_prb_ratio", "nof_tti",
            "dl_rate_mbps", "ul_rate_mbps", "dl_cqi", "ul_snr_db", "dl_mcs", "ul_prb",
            "power_w", "energy_j", "reward", "valid", "invalid_reason"]
"""A round's columns that depend on the testbed and the policy, not on the wall clock."""


def stepped_config(tmp_path: Path, **changes: object) -> Path:
    """The emulated testbed, its emulator a local child process, its clock stepped."""
    return write_config(tmp_path, **{**STEPPED, **changes})


def the_emulator() -> psutil.Process:
    """This test's emulated vBS: the child process running drivers.emulated."""
    (emulator,) = [p for p in psutil.Process().children()
                   if "drivers.emulated" in " ".join(p.cmdline())]
    return emulator


def rounds_of(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "rounds.parquet")


def exit_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())["exit"]


@pytest.mark.parametrize("action_type", ["discrete", "box"])
def test_the_environment_passes_gymnasiums_checker(tmp_path, action_type):
    env = gymnasium.make(ENV_ID, config=stepped_config(tmp_path), action_type=action_type,
                         episode_rounds=5)
    assert env.spec.nondeterministic  # a live testbed is not deterministic
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_the_same_actions_through_the_environment_and_hil_run_record_the_same_rounds(tmp_path):
    """Twelve policies played by `step` and by a scripted agent in `execute` (as `hil run`
    plays its agent), on the same seed: every measured column of every round agrees."""
    config = stepped_config(tmp_path, rounds=12, seed=7)
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 1080, 12)]
    with GymEnv(config) as env:
        env.reset()
        for action in actions:
            env.step(action)
        through_gym = env.run_dir
    cfg, run_dir = new_run(config, {})
    result = execute(cfg, run_dir, resume=False,
                     agent=ScheduleAgent(cfg.policy_space.size, actions, rounds_per_cell=1))
    assert result.outcome.status == "completed"
    gym_rows, run_rows = rounds_of(through_gym)[MEASURED], rounds_of(run_dir.path)[MEASURED]
    assert gym_rows["policy_index"].tolist() == actions and gym_rows["valid"].all()
    pd.testing.assert_frame_equal(gym_rows, run_rows)


def test_a_step_is_the_engines_round_its_reward_its_row_its_observation_the_last_context(
        tmp_path):
    with GymEnv(stepped_config(tmp_path), action_type="box") as env:
        obs, info = env.reset(seed=3)
        assert obs[OBSERVATION.index("known")] == 0 and info["round"] == 0
        loosest = [0.0, 28, 1.0, 23, 1.0]
        obs, reward, terminated, truncated, row = env.step(np.array(loosest, np.float32))
        assert (terminated, truncated) == (False, False)
        assert row["policy_index"] == env.cfg.policy_space.size - 1  # every cap at its loosest
        assert reward == pytest.approx(row["reward"]) and row["valid"]
        assert obs[OBSERVATION.index("power_w")] == pytest.approx(row["power_w"], rel=1e-6)
        assert obs[OBSERVATION.index("known")] == 1
        assert json.loads((env.run_dir / "run.json").read_text())["seed"] == 3


def test_an_invalid_round_is_reported_in_info_and_not_rewarded(tmp_path, monkeypatch):
    """The vBS's reply closing a round is lost (every resend too): that round is invalid,
    `info` says why, its reward is `invalid_reward` and the observation stays the last
    valid round's; the next round is valid again."""
    get = RtctlClient.get
    lost = {"left": 1}

    def get_or_lose(client: RtctlClient) -> object:
        if lost["left"]:
            lost["left"] -= 1
            raise VbsUnreachableError("no reply to get (injected)")
        return get(client)

    with GymEnv(stepped_config(tmp_path), invalid_reward=-1.0) as env:
        env.reset()
        before, *_ = env.step(5)
        monkeypatch.setattr(RtctlClient, "get", get_or_lose)
        obs, reward, _, _, row = env.step(5)
        assert not row["valid"] and "injected" in row["invalid_reason"] and reward == -1.0
        np.testing.assert_array_equal(obs, before)
        assert env.step(5)[4]["valid"]


def test_close_after_an_exception_restores_the_defaults_and_stops_the_testbed(tmp_path):
    env = GymEnv(stepped_config(tmp_path))
    with pytest.raises(RuntimeError), env:
        env.reset()
        env.step(0)  # every cap at its tightest
        emulator = the_emulator()
        raise RuntimeError("the learner crashed")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert exit_of(run_dir)["defaults_restored"] == "yes"
    assert not emulator.is_running() or emulator.status() == psutil.STATUS_ZOMBIE
    assert len(rounds_of(run_dir)) == 1


def test_an_environment_dropped_without_close_restores_the_defaults_when_collected(tmp_path):
    env = GymEnv(stepped_config(tmp_path))
    env.reset()
    env.step(0)
    run_dir = env.run_dir
    del env
    gc.collect()
    assert exit_of(run_dir) == {"status": "completed", "reason": "garbage collected",
                                "defaults_restored": "yes"}


def test_ctrl_c_in_a_training_loop_restores_the_defaults_at_exit(tmp_path):
    """A learner's script stepping the environment gets SIGINT (Ctrl-C) and never calls
    close(): the KeyboardInterrupt ends the script, and at exit the defaults are restored."""
    script = textwrap.dedent(f"""
        import gymnasium, hil.gym
        env = gymnasium.make("vbs-hil/Testbed-v0", config={str(stepped_config(tmp_path))!r})
        env.reset()
        while True:
            env.step(env.action_space.sample())
    """)
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = wait_for_rounds(tmp_path / "runs", 20)
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread is
        pytest.fail(f"still running 60 s after Ctrl-C:\n{proc.communicate()[0][-6000:]}")
    assert "KeyboardInterrupt" in output
    assert exit_of(run_dir)["defaults_restored"] == "yes"
    assert len(rounds_of(run_dir)) >= 20


def test_reset_keeps_a_live_testbed_and_restarts_it_only_when_asked(tmp_path):
    with GymEnv(stepped_config(tmp_path), episode_rounds=2) as env:
        env.reset()
        first = env.run_dir
        emulator = the_emulator()
        assert env.step(1)[3] is False and env.step(1)[3] is True  # truncated after 2
        _, info = env.reset()
        assert env.run_dir == first and info["round"] == 2 and emulator.is_running()
        env.reset(options={"restart": True})
        assert env.run_dir != first
        assert exit_of(first)["defaults_restored"] == "yes"


def test_two_emulated_testbeds_step_in_parallel_as_a_vector_environment(tmp_path):
    envs = make_vector(stepped_config(tmp_path), 2)
    try:
        obs, _ = envs.reset(seed=10)
        for _ in range(5):
            obs, rewards, _, _, _ = envs.step(np.array([1079, 1079]))
        assert obs.shape == (2, len(OBSERVATION)) and rewards.shape == (2,)
    finally:
        envs.close()
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert [json.loads((d / "run.json").read_text())["seed"] for d in run_dirs] in (
        [10, 11], [11, 10])  # one emulator each, each its own seed
    assert all(len(rounds_of(d)) == 5 and exit_of(d)["defaults_restored"] == "yes"
               for d in run_dirs)


def test_a_real_testbed_is_never_vectorised():
    with pytest.raises(HilError, match="real testbed"):
        make_vector(REPO / "testbed_configs" / "zmq-srsran.yaml", 2)


def test_the_environment_is_registered_on_import():
    assert hil.gym.ENV_ID in gymnasium.registry
    assert load_config(REPO / "testbed_configs" / "zmq-emulated.yaml")  # the README's config


def test_the_stable_baselines3_example_compares_three_learners_on_the_same_rounds(tmp_path,
                                                                                 capsys):
    """tools/gym_sb3.py, small: DQN through the environment, BSvBS through `hil run`'s
    engine and the loosest fixed policy, each on the same seeds, reported with intervals."""
    from tools.gym_sb3 import main as sb3_example

    assert sb3_example(["--config", str(stepped_config(tmp_path)), "--rounds", "150",
                        "--seeds", "2", "--tail", "50", "--out", str(tmp_path / "sb3")]) == 0
    report = json.loads((tmp_path / "sb3" / "report.json").read_text())
    assert set(report) == {"dqn", "bsvbs", "loosest", "dqn_minus_bsvbs", "protocol"}
    assert all(r["low"] <= r["mean"] <= r["high"] for k, r in report.items() if k != "protocol")
    assert (tmp_path / "sb3" / "learning.png").stat().st_size > 10_000
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sb3").glob("*/run.json")]
    assert sorted((r["agent"], r["seed"]) for r in runs) == sorted(
        (agent, seed) for agent in ("gym", "bsvbs", "loosest") for seed in (0, 1))
    assert "dqn_minus_bsvbs" in capsys.readouterr().out
