"""`hil replay` on the model: regret of BSvBS, MetBS's choice of child, saving and resuming,
and the report a tiny command-line run leaves (small policy spaces, few thousand rounds)."""

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.base import Context
from agents.policy_space import PolicySpace
from agents.registry import BANDITS, make_agent
from hil.executor import parse_executor
from hil.reward import RewardParams
from tools.cli import main
from tools.replay import metrics
from tools.replay.environments import ModelSource, worst_kind_for_leader
from tools.replay.paper import regret_less
from tools.replay.runner import ReplayError, ReplaySpec, result_path, run_replay

CALIBRATION = Path(__file__).parents[1] / "testbed_configs/calibration/emulated-nuc.yaml"
SMALL = PolicySpace(dl_gain_db=(0.0,), dl_max_mcs=(5, 27), dl_prb_ratio=(0.2, 1.0),
                    ul_max_mcs=(5, 23), ul_prb_ratio=(0.2, 1.0))
"""16 policies, as the paper's Sec. VI-C subset."""
DELTA = {"A": 0.1, "B": 1.5, "C": 0.1, "C-adaptive": 0.1}
"""Reward weights that give each scenario a distinct best policy on SMALL (in B the channel
is too poor for the MCS caps to matter, so power must: the paper's delta = 1.5)."""
UTILITY_FIRST = RewardParams(delta=0.1, power_min_w=9.0, power_max_w=16.0)


def params(scenario: str) -> RewardParams:
    return RewardParams(delta=DELTA[scenario], power_min_w=9.0, power_max_w=16.0)


def replay(tmp_path: Path, scenario: str, agents: tuple[str, ...], rounds: int,
           seeds: tuple[int, ...] = (0, 1), **agent_params) -> metrics.Replay:
    spec = ReplaySpec(ModelSource(scenario, SMALL, CALIBRATION, params(scenario)), agents,
                      seeds, rounds, agent_params)
    out = tmp_path / f"{scenario}-{'-'.join(agents)}"
    assert not run_replay(spec, out).interrupted
    return metrics.load_replay(out)


def per_round_regret(result: metrics.Replay, agent: str) -> np.ndarray:
    """Mean over seeds of R_t / t at each checkpoint."""
    return metrics.regret(result, result.agents[agent]).mean(axis=0) / result.benchmark.rounds


@pytest.mark.parametrize("scenario", ["A", "B", "C"])
def test_bsvbs_regret_per_round_falls_over_time_and_stays_below_lemma_1(tmp_path, scenario):
    # B's best policy leads the average by ~0.05 only (A: 0.53, C: 0.35): Exp3 needs longer
    result = replay(tmp_path, scenario, ("bsvbs", "random"), rounds=8000 if scenario == "B"
                    else 3000)
    at = result.benchmark.rounds
    bsvbs = per_round_regret(result, "bsvbs")
    quarter = np.searchsorted(at, at[-1] // 4)
    assert bsvbs[-1] < 0.8 * bsvbs[quarter]  # sublinear: R_T/T keeps falling
    assert np.all(bsvbs * at <= metrics.regret_bound(result.n_actions, at))
    # ...which a learner that does not learn fails: Random's R_t/t does not fall
    random = per_round_regret(result, "random")
    assert random[-1] > 0.9 * random[quarter] and random[-1] > 1.25 * bsvbs[-1]
    # ...and the report's verdict on it, paired over the seeds, says so both ways round
    heads = {name: metrics.headline(result, runs) for name, runs in result.agents.items()}
    assert regret_less("bsvbs", "random")(result, heads).holds is True
    assert regret_less("random", "bsvbs")(result, heads).holds is False


def test_benchmark_side_is_the_cumulative_reward_of_every_fixed_policy(tmp_path):
    result = replay(tmp_path, "B", ("random",), rounds=1500, seeds=(3,))
    env = ModelSource("B", SMALL, CALIBRATION, params("B")).build(3)
    block = env.block(0, 1500)
    at = result.benchmark.rounds
    np.testing.assert_allclose(result.benchmark.policy_reward[0],
                               np.cumsum(block.reward, axis=0)[at - 1], rtol=1e-9)
    runs = result.agents["random"]
    played = block.reward[np.arange(1500), runs.action[0]]
    np.testing.assert_allclose(runs.reward[0], played, rtol=1e-6)
    # the oracle side: each round's best policy, against the best fixed one
    np.testing.assert_allclose(result.benchmark.max_reward[0],
                               np.cumsum(block.reward.max(axis=1))[at - 1], rtol=1e-9)
    gain = metrics.oracle_gain_per_round(result)[0]
    assert gain == pytest.approx(block.reward.max(axis=1).mean()
                                 - block.reward.mean(axis=0).max())


def test_an_oracle_gains_over_the_best_fixed_policy_only_where_the_best_policy_moves(
        tmp_path):
    static = replay(tmp_path, "A", ("random",), rounds=500, seeds=(0,))
    assert metrics.oracle_gain_per_round(static)[0] == pytest.approx(0.0, abs=1e-9)
    # C with the paper's delta: the lowest-power policy is best in poor rounds, not in good
    spec = ReplaySpec(ModelSource("C", SMALL, CALIBRATION, RewardParams(1.5, 9.0, 16.0)),
                      ("random",), (0,), 500, {})
    assert not run_replay(spec, tmp_path / "c").interrupted
    assert metrics.oracle_gain_per_round(metrics.load_replay(tmp_path / "c"))[0] > 0.001


def test_blocks_give_the_same_rounds_whatever_range_they_are_asked_in():
    env = ModelSource("C", SMALL, CALIBRATION, UTILITY_FIRST).build(0)
    whole, tail = env.block(0, 300), env.block(100, 300)
    np.testing.assert_array_equal(whole.reward[100:], tail.reward)
    np.testing.assert_array_equal(whole.context[100:], tail.context)
    assert whole.context_at(0) == Context()  # round 0 saw nothing
    # each round sees the previous round's demand: C alternates high and low demand
    assert whole.context[1, 2] > 20 and whole.context[2, 2] < 1
    # and learns, once over, its own: the context the next round sees
    np.testing.assert_array_equal(whole.measured[:-1], whole.context[1:])
    assert whole.measured_at(0).dl_demand_mbps > 20


def test_the_adaptive_adversary_picks_the_kind_in_which_the_leader_falls_furthest_behind():
    rewards = np.array([[0.9, 0.5, 0.8],    # good round: leader 1 is 0.4 behind the best
                        [0.2, 0.1, 0.15]])  # poor round: 0.1 behind
    assert worst_kind_for_leader(np.array([0.1, 0.8, 0.1]), rewards) == 0
    assert worst_kind_for_leader(np.array([0.8, 0.1, 0.1]), rewards) == 0  # never behind: tie
    poor_hurts = np.array([[0.9, 0.5, 0.8], [0.1, 0.3, 0.15]])
    assert worst_kind_for_leader(np.array([0.8, 0.1, 0.1]), poor_hurts) == 1


def test_c_adaptive_rounds_answer_the_learner_s_leader_and_each_learner_has_its_benchmark(tmp_path):
    result = replay(tmp_path, "C-adaptive", ("ucb", "random"), rounds=400, seeds=(2,))
    kinds = np.load(result_path(tmp_path / "C-adaptive-ucb-random", "ucb", 2))["kind"]
    block = ModelSource("C-adaptive", SMALL, CALIBRATION, params("C")).build(2).block(0, 400)
    agent, expected = make_agent("ucb", SMALL.size, seed=2, horizon=400), []
    previous = np.full(4, np.nan)
    for t in range(400):  # the learner as the runner steps it, the adversary before each round
        kind = worst_kind_for_leader(agent.probabilities(), block.by_kind_reward[t])
        block.realize(t, kind, previous)
        decision = agent.select(block.context_at(t))
        agent.update(decision, float(block.reward[t, decision.action]), block.measured_at(t))
        expected.append(kind)
        previous = block.measured[t]
    assert kinds.tolist() == expected
    ucb = result.benchmark_of(result.agents["ucb"])
    np.testing.assert_allclose(ucb.policy_reward[0],
                               np.cumsum(block.reward, axis=0)[ucb.rounds - 1], rtol=1e-6)
    other = result.benchmark_of(result.agents["random"])  # the adversary met another learner
    assert not np.allclose(other.policy_reward, ucb.policy_reward)
    best_in_hindsight = ucb.policy_reward[0, -1].max()
    assert metrics.regret(result, result.agents["ucb"])[0, -1] == pytest.approx(
        best_in_hindsight - result.agents["ucb"].reward[0].sum(dtype=np.float64), rel=1e-6)


def test_energy_is_measured_against_the_ideal_minimum_above_idle(tmp_path):
    result = replay(tmp_path, "C", ("random", "greedy"), rounds=600, seeds=(0, 1))
    idle = result.benchmark.idle_power_w
    env = ModelSource("C", SMALL, CALIBRATION, params("C")).build(0)
    cal_idle = env.cal.power.idle_w + env.cal.power.radio_fixed_w
    assert np.allclose(idle, cal_idle)
    ideal = env.block(0, 600).power_w.min(axis=1).sum()
    assert result.benchmark.min_power_w[0, -1] == pytest.approx(ideal)
    rand, greedy = result.agents["random"], result.agents["greedy"]
    mine = rand.power_w[0].sum(dtype=np.float64)
    assert metrics.energy_over_ideal_pct(result, rand)[0] == pytest.approx(
        100 * (mine - ideal) / (ideal - 600 * cal_idle), rel=1e-6)
    e_rand = rand.power_w.sum(axis=1, dtype=np.float64) - 600 * cal_idle
    e_greedy = greedy.power_w.sum(axis=1, dtype=np.float64) - 600 * cal_idle
    saving, half = metrics.power_saving_pct(result, rand, greedy)
    assert saving == pytest.approx(np.mean(100 * (e_greedy - e_rand) / e_greedy), rel=1e-6)
    assert half > 0


@pytest.mark.parametrize("scenario", ["B", "C"])
def test_metbs_gives_most_rounds_to_the_child_that_earns_more_alone(tmp_path, scenario):
    children = ["greedy", "random"]  # a child that learns from the few rounds MetBS lets it
    result = replay(tmp_path, scenario, ("metbs", *children), rounds=3000,
                    metbs={"children": children})
    alone = {c: result.agents[c].reward.mean() for c in children}
    better = max(alone, key=alone.get)
    runs = result.agents["metbs"]
    assert set(runs.child_names) <= set(children)
    late = runs.child[:, runs.child.shape[1] // 2:]
    share = np.mean(late == runs.child_names.index(better))
    assert share > 0.6, f"MetBS gave {better} {share:.0%} of the late rounds in {scenario}"


def test_a_finished_job_is_kept_and_only_missing_ones_run_again(tmp_path):
    spec = ReplaySpec(ModelSource("A", SMALL, CALIBRATION, UTILITY_FIRST), ("bsvbs", "random"),
                      (0, 1), 200)
    out = tmp_path / "out"
    run_replay(spec, out)
    kept = result_path(out, "bsvbs", 0)
    before = kept.stat().st_mtime_ns
    result_path(out, "random", 1).unlink()  # as if Ctrl-C had stopped this job
    advanced = []
    run_replay(spec, out, on_rounds=advanced.append)
    assert kept.stat().st_mtime_ns == before
    assert result_path(out, "random", 1).exists()
    assert sum(advanced) == 4 * 200  # 3 jobs counted as done, 1 run
    other = ReplaySpec(spec.source, spec.agents, spec.seeds, 300)
    with pytest.raises(ReplayError, match="another replay .*rounds"):
        run_replay(other, out)


def test_ctrl_c_keeps_the_jobs_that_finished(tmp_path):
    spec = ReplaySpec(ModelSource("A", SMALL, CALIBRATION, UTILITY_FIRST), ("bsvbs", "random"),
                      (0,), 200)
    seen = []

    def interrupt_in_the_second_job(n: int) -> None:
        seen.append(n)
        if len(seen) == 3:  # 1: jobs already done (none); 2: bsvbs's block; 3: random's
            raise KeyboardInterrupt

    outcome = run_replay(spec, tmp_path, on_rounds=interrupt_in_the_second_job)
    assert (outcome.interrupted, outcome.jobs_done, outcome.jobs_total) == (True, 1, 2)
    assert result_path(tmp_path, "bsvbs", 0).exists()
    assert not result_path(tmp_path, "random", 0).exists()


def test_a_replay_gives_the_same_numbers_in_one_process_in_local_workers_and_on_dask(tmp_path):
    """A job's numbers depend only on the spec and its seed (not on where it ran); only the
    measured decision times differ."""
    spec = ReplaySpec(ModelSource("C", SMALL, CALIBRATION, params("C")),
                      ("bsvbs", "metbs", "bpvran"), (0, 1), 300)
    saved = {}
    for where in ("local:1", "local:2", "dask-local:2"):
        out = tmp_path / where.replace(":", "-")
        outcome = run_replay(spec, out, executor=parse_executor(where))
        assert (outcome.jobs_done, outcome.failed) == (6, ())
        saved[where] = {str(f.relative_to(out)): dict(np.load(f)) for f in out.rglob("*.npz")}
    assert len(saved["local:1"]) == 6 + 2  # a result per (agent, seed), a benchmark per seed
    for where in ("local:2", "dask-local:2"):
        assert saved[where].keys() == saved["local:1"].keys()
        for name, arrays in saved["local:1"].items():
            for key, values in arrays.items():
                if key not in ("select_us", "update_us"):
                    assert np.array_equal(saved[where][name][key], values), (where, name, key)


def tiny_config(tmp_path: Path) -> Path:
    """A testbed config that only sets what a replay reads: policy space, reward, calibration."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "reward": {"delta": 0.1},
        "policy_space": {f.name: list(getattr(SMALL, f.name)) for f in fields(SMALL)},
        "vbs": {"emulator": {"calibration": str(CALIBRATION)}}}))
    return path


def test_cli_writes_report_and_figures_and_can_redraw_them(tmp_path, capsys):
    out = tmp_path / "replay"
    args = ["replay", str(tiny_config(tmp_path)), "--scenario", "A", "--agents", "bsvbs,random",
            "--seeds", "2", "--rounds", "300", "--out", str(out), "--executor", "local:1"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for agent in ("bsvbs", "random"):
        assert f"| {agent} | 2 |" in report
    assert "| BSvBS regret below the bound (8) | A | 62.2 % |" in report
    for figure in ("regret", "power", "decision-time", "reward", "policies"):
        assert (out / f"{figure}.png").stat().st_size > 5_000
        assert f"]({figure}.png)" in report
    (out / "report.md").unlink()
    assert main(["replay", "--report-only", "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == report


@pytest.mark.parametrize(("flag", "value", "named"), [
    ("--agents", "bsvbs,nosuch", "unknown agent 'nosuch'; known agents: "),
    ("--scenario", "Z", "unknown scenario 'Z'; known scenarios: A, B, C, C-iid, C-adaptive, mixed"),
])
def test_cli_names_an_unknown_agent_or_scenario_and_the_known_ones(tmp_path, capsys, flag,
                                                                   value, named):
    assert main(["replay", flag, value, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    if flag == "--agents":
        assert all(name in err for name in BANDITS)
