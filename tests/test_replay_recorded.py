"""A recorded run directory as a replay source: its measured trace through the model, and the
off-policy estimates its logged probabilities allow. The run is written here by a uniform
logger on a testbed that *is* the model, so the model gap is zero and IPS has a known target."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hil.base import lte
from hil.config import config_from_dict
from hil.journal import RoundRecorder
from hil.recorder import RunDirectory
from hil.reward import RewardParams
from tools.replay.environments import ModelSource
from tools.replay.recorded import RecordedRun, RecordedSource, off_policy
from tools.replay.runner import ReplayError, ReplaySpec, run_replay

CALIBRATION = Path(__file__).parents[1] / "testbed_configs/calibration/emulated-nuc.yaml"
SPACE = {"dl_gain_db": [0.0], "dl_max_mcs": [5, 27], "dl_prb_ratio": [0.2, 1.0],
         "ul_max_mcs": [5, 23], "ul_prb_ratio": [0.2, 1.0]}
PARAMS = RewardParams(delta=1.5, power_min_w=9.0, power_max_w=16.0)
ROUNDS = 1600


def record_uniform_run(root: Path) -> tuple[Path, np.ndarray]:
    """A run of ROUNDS valid rounds (plus two invalid ones) in scenario B; returns its path
    and the model's reward of every policy in every valid round."""
    config = config_from_dict({
        "name": "logged", "policy_space": SPACE,
        "reward": {"delta": PARAMS.delta, "power_min_w": 9.0, "power_max_w": 16.0},
        "vbs": {"emulator": {"calibration": str(CALIBRATION)}}})
    env = ModelSource("B", config.policy_space, CALIBRATION, PARAMS).build(7)
    truth = env.block(0, ROUNDS)
    scenario = env.scenario.epochs(0, ROUNDS)
    run_dir = RunDirectory.create(root, "logged")
    run_dir.write_meta({"config": config.model_dump(mode="json")})
    rng = np.random.default_rng(1)
    k = config.policy_space.size
    with RoundRecorder(run_dir) as recorder:
        for t in range(ROUNDS + 2):
            row = {"round": t, "time_utc": datetime.now(UTC), "t_start_s": float(t),
                   "t_end_s": t + 1.0, "overrun_s": 0.0, "policy_prob": 1.0 / k}
            if t in (100, 900):  # invalid rounds: no measurements, nothing learned
                recorder.append(row | {"policy_index": 0, "valid": False,
                                       "invalid_reason": "meter: timeout"})
                continue
            i = t - (t > 100) - (t > 900)
            action = int(rng.integers(k))
            recorder.append(row | {
                "policy_index": action, "valid": True, "reward": float(truth.reward[i, action]),
                "dl_demand_mbps": float(scenario.dl_demand_mbps[i]),
                "ul_demand_mbps": float(scenario.ul_demand_mbps[i]),
                "dl_cqi": float(scenario.dl_cqi[i]),
                "ul_snr_db": float(lte.cqi_to_snr_db(scenario.ul_cqi[i]))})
    return run_dir.path, truth.reward


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, np.ndarray]:
    return record_uniform_run(tmp_path_factory.mktemp("runs"))


def test_the_recorded_trace_through_the_model_gives_back_the_logged_rewards(logged):
    path, truth = logged
    run = RecordedRun.load(path)
    assert len(run.rounds) == ROUNDS  # invalid rounds are not part of the trace
    replayed = RecordedSource(path).build(seed=0).block(0, ROUNDS)
    np.testing.assert_allclose(replayed.reward, truth, atol=1e-9)
    estimates = off_policy(run)
    assert estimates.model_gap < 1e-9
    assert estimates.plays.sum() == ROUNDS


def test_ips_estimates_each_fixed_policy_from_uniform_logging(logged):
    path, truth = logged
    estimates = off_policy(RecordedRun.load(path))
    true_means = truth.mean(axis=0)
    # ~100 plays per policy: IPS is unbiased, its error here is a few hundredths
    np.testing.assert_allclose(estimates.ips, true_means, atol=0.1)
    assert estimates.ips[estimates.best] >= np.max(true_means) - 0.1
    np.testing.assert_allclose(estimates.snips, true_means, atol=0.05)


def test_agents_replay_on_a_run_but_not_past_its_recorded_rounds(logged, tmp_path):
    path, _ = logged
    spec = ReplaySpec(RecordedSource(path), ("bsvbs",), (0, 1), ROUNDS)
    assert not run_replay(spec, tmp_path / "out").interrupted
    too_long = ReplaySpec(RecordedSource(path), ("bsvbs",), (0,), ROUNDS + 1)
    with pytest.raises(ReplayError, match=f"the source has {ROUNDS} rounds"):
        run_replay(too_long, tmp_path / "out2")
