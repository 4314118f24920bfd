"""A library's learner on the testbed through the gymnasium environment (hil/gym.py):
Stable-Baselines3's DQN beside BSvBS and a policy that needs no learning, on the same rounds.

    pip install stable-baselines3          # the `rl` extra: pip install -e '.[rl]'
    python -m tools.gym_sb3 --rounds 3000 --seeds 3 --out runs/gym-sb3

Protocol: for every seed, the same testbed config and seed (so the same emulated channel and
demand) run three learners for `--rounds` rounds each: DQN stepping `vbs-hil/Testbed-v0`,
BSvBS through `hil.run.execute` (as `hil run` plays it), and the fixed policy with every cap
at its loosest (no learning). The clock is stepped (the emulated vBS simulates each round
at once), so the rounds are those of the config, only faster. Each learner's mean reward over
the last `--tail` rounds is reported per seed, with the mean over seeds and a 95 % t
interval, and DQN's paired difference to BSvBS. `learning.png` shows each learner's reward
over rounds (a rolling mean, the band the spread over seeds).

DQN is run as a contextual bandit (gamma 0): a round's reward is that round's policy's, as
BSvBS assumes too; its observation is the environment's (the last round's context and KPIs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats

from hil.config import load_config
from hil.gym import TestbedEnv
from hil.run import execute, new_run
from tools.collect.sweep import ScheduleAgent

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

STEPPED = {"clock.mode": "stepped", "clock.speedup": 1.0, "meter.kind": "emulated"}
LEARNERS = ("dqn", "bsvbs", "loosest")
ROLLING = 100


def _dqn_rewards(config: Path, seed: int, rounds: int, out: Path) -> list[float]:
    from stable_baselines3 import DQN

    with TestbedEnv(config, overrides={**STEPPED, "seed": seed, "rounds": rounds},
                    out=out, episode_rounds=rounds) as env:
        model = DQN("MlpPolicy", env, gamma=0.0, learning_starts=100, train_freq=1,
                    target_update_interval=250, exploration_fraction=0.3,
                    exploration_final_eps=0.02, seed=seed, verbose=0)
        model.learn(total_timesteps=rounds)
        run_dir = env.run_dir
    assert run_dir is not None  # learn() reset the environment, which started the testbed
    return pd.read_parquet(run_dir / "rounds.parquet")["reward"].tolist()  # written at close


def _engine_rewards(config: Path, seed: int, rounds: int, out: Path, learner: str) -> list[float]:
    overrides = {**STEPPED, "seed": seed, "rounds": rounds}
    if learner == "bsvbs":
        overrides["agent.name"] = "bsvbs"
    cfg, run_dir = new_run(config, overrides, out, agent=learner)
    agent = (None if learner == "bsvbs"
             else ScheduleAgent(cfg.policy_space.size, [cfg.policy_space.size - 1], 1))
    result = execute(cfg, run_dir, resume=False, agent=agent)
    if result.outcome.status != "completed":
        raise SystemExit(f"{learner}, seed {seed}: {result.outcome.reason}")
    return pd.read_parquet(run_dir.path / "rounds.parquet")["reward"].tolist()


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("testbed_configs/zmq-emulated-16.yaml"))
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--tail", type=int, default=1000, help="rounds at the end to compare")
    p.add_argument("--out", type=Path, default=Path("runs/gym-sb3"))
    args = p.parse_args(argv)
    load_config(args.config)  # a bad config is named before anything runs
    curves: dict[str, list[list[float]]] = {name: [] for name in LEARNERS}
    for seed in range(args.seeds):
        curves["dqn"].append(_dqn_rewards(args.config, seed, args.rounds, args.out))
        for learner in ("bsvbs", "loosest"):
            curves[learner].append(_engine_rewards(args.config, seed, args.rounds, args.out,
                                                   learner))
        print(f"seed {seed}: " + ", ".join(
            f"{name} {np.mean(curves[name][-1][-args.tail:]):.4f}" for name in LEARNERS),
            flush=True)
    tails = {name: np.array([np.mean(c[-args.tail:]) for c in curves[name]])
             for name in LEARNERS}
    report = {name: dict(zip(("mean", "low", "high"), _interval(tails[name])))
              for name in LEARNERS}
    report["dqn_minus_bsvbs"] = dict(zip(("mean", "low", "high"),
                                         _interval(tails["dqn"] - tails["bsvbs"])))
    report["protocol"] = {"config": str(args.config), "rounds": args.rounds,
                          "seeds": args.seeds, "tail": args.tail, "clock": "stepped"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    for name in (*LEARNERS, "dqn_minus_bsvbs"):
        r = report[name]
        print(f"{name}: mean reward over the last {args.tail} rounds {r['mean']:.4f} "
              f"(95 % interval {r['low']:.4f} .. {r['high']:.4f}, {args.seeds} seeds)")
    _plot(curves, args.out / "learning.png", args.config)
    print(f"figure: {args.out / 'learning.png'}; report: {args.out / 'report.json'}")
    return 0


def _plot(curves: dict[str, list[list[float]]], path: Path, config: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = {"dqn": "DQN (Stable-Baselines3, via hil.gym)", "bsvbs": "BSvBS (hil run)",
              "loosest": "every cap loosest (no learning)"}
    for name in LEARNERS:
        rolled = np.array([pd.Series(c).rolling(ROLLING, min_periods=1).mean() for c in
                           curves[name]])
        mean = rolled.mean(axis=0)
        rounds = np.arange(len(mean))
        ax.plot(rounds, mean, label=labels[name])
        if len(rolled) > 1:
            ax.fill_between(rounds, rolled.min(axis=0), rolled.max(axis=0), alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel(f"reward (rolling mean of {ROLLING})")
    ax.set_title(f"{config.name}: {len(curves['dqn'])} seeds, band: min..max over seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
