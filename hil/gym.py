"""The testbed as a gymnasium environment, so any RL library can learn on it:

    import gymnasium, hil.gym
    env = gymnasium.make("vbs-hil/Testbed-v0", config="testbed_configs/zmq-emulated.yaml")

`step(action)` is one round of the real engine (`hil.engine.RoundEngine.play_round`) on the
configured testbed (emulated, sliced, srsRAN, B210s), so everything a run gives holds:

- every step is recorded in a run directory (`run_dir`), as `hil run` records its rounds;
- an invalid round is reported in `info` (`valid` False, `invalid_reason`) and rewarded
  `invalid_reward` (default 0), never the reward of a measurement that failed; the
  observation stays that of the last valid round; after `vbs.give_up_after_invalid_rounds`
  invalid rounds in a row `step` raises `TestbedGaveUp`;
- `close()` (also at garbage collection, at interpreter exit after Ctrl-C, and at the end of
  a ``with env:`` block) restores the vBS's default thresholds and takes the testbed down;
- `reset()` starts the testbed the first time and never restarts a live one unless asked
  (``options={"restart": True}``: a new run directory). Its `seed`, given before the
  testbed starts, is the testbed's seed (the emulated vBS's channel and demand).

The action is a policy: `Discrete(|X|)` over the config's policy space (the flat index of
`agents.policy_space`), or with ``action_type="box"`` a `Box` over the five thresholds
(dl_gain_db, dl_max_mcs, dl_prb_ratio, ul_max_mcs, ul_prb_ratio), each mapped to the
nearest value the policy space has on that axis. The observation is what a contextual
agent may know before deciding: `OBSERVATION`, from the last valid round (its context and
KPIs), `known` 0 until there is one. The reward is the engine's (`hil.reward`). An episode
is `episode_rounds` steps (default: the config's `rounds`), then `truncated`; the task never
terminates. A live testbed is not deterministic: the environment is registered
`nondeterministic`.

Vectorised: `make_vector(config, n)` runs n emulated testbeds, one emulator process each
(`gymnasium.vector.AsyncVectorEnv`); it refuses a real testbed, which n environments would
drive at once (two runs on one real testbed are refused by its lock anyway, hil/lock.py).
"""

from __future__ import annotations

import functools
import time
import weakref
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
from gymnasium import spaces

from agents.base import Context, Decision
from agents.policy_space import Policy
from hil.base.errors import HilError
from hil.config import HilConfig, load_config
from hil.engine import RoundEngine, RunOutcome
from hil.run import LiveRun, new_run
from hil.testbeds import kind_of

ENV_ID = "vbs-hil/Testbed-v0"
OBSERVATION = ("known", "dl_cqi", "ul_cqi", "dl_demand_mbps", "ul_demand_mbps", "power_w",
               "dl_rate_mbps", "ul_rate_mbps")
"""The observation's elements, in order."""
_OBSERVATION_HIGH = np.array([1, 15, 15, 1e4, 1e4, 1e4, 1e4, 1e4], dtype=np.float32)


class TestbedGaveUp(HilError):
    """Too many invalid rounds in a row: the testbed is not working."""


class _StepAgent:
    """The engine's agent inside the environment: plays the action `step` was given and
    learns nothing (the learner is outside)."""

    def __init__(self, n_actions: int) -> None:
        self.n_actions, self.action = n_actions, 0

    def select(self, context: Context | None = None) -> Decision:
        return Decision(self.action, 1.0)

    def update(self, decision: Decision, reward: float, measured: Context | None = None) -> None:
        """The learner outside the environment learns from `step`'s reward."""

    def probabilities(self) -> np.ndarray:
        p = np.zeros(self.n_actions)
        p[self.action] = 1.0
        return p

    def state_dict(self) -> dict[str, Any]:
        return {"action": self.action}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.action = state["action"]


class _Session:
    """A started `LiveRun` and where its rounds stand; closed once, by whoever comes first
    (`close`, garbage collection, interpreter exit)."""

    def __init__(self, live: LiveRun, engine: RoundEngine) -> None:
        self.live, self.engine = live, engine
        self.next_start = time.monotonic()  # the first round's nominal start
        self.closed = False

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.live.close(RunOutcome("completed", reason, self.engine.next_round))


class TestbedEnv(gymnasium.Env):
    """One testbed, one round per step (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, config: str | Path, *, overrides: dict[str, Any] | None = None,
                 out: str | Path | None = None,
                 action_type: Literal["discrete", "box"] = "discrete",
                 episode_rounds: int | None = None, invalid_reward: float = 0.0) -> None:
        self.config_path = Path(config)
        self.overrides = dict(overrides or {})
        self.out = None if out is None else Path(out)
        self.cfg: HilConfig = load_config(self.config_path, self.overrides)
        self.space = self.cfg.policy_space
        self._axes = [getattr(self.space, name) for name in Policy._fields]
        self.action_type = action_type
        self.episode_rounds = episode_rounds or self.cfg.rounds
        self.invalid_reward = invalid_reward
        if action_type == "discrete":
            self.action_space: spaces.Space = spaces.Discrete(self.space.size)
        elif action_type == "box":
            self.action_space = spaces.Box(
                np.array([min(axis) for axis in self._axes], dtype=np.float32),
                np.array([max(axis) for axis in self._axes], dtype=np.float32), dtype=np.float32)
        else:
            raise ValueError(f"action_type {action_type!r}: give 'discrete' or 'box'")
        self.observation_space = spaces.Box(np.zeros_like(_OBSERVATION_HIGH), _OBSERVATION_HIGH,
                                            dtype=np.float32)
        self._agent = _StepAgent(self.space.size)
        self._session: _Session | None = None
        self._finalizer: weakref.finalize | None = None
        self._observation = np.zeros(len(OBSERVATION), dtype=np.float32)
        self._episode_step = 0

    @property
    def run_dir(self) -> Path | None:
        """Where the steps are recorded (None before the first `reset`)."""
        return None if self._session is None else self._session.live.run_dir.path

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        restart = bool((options or {}).get("restart", False))
        if self._session is not None and restart:
            self._close_session("restarted by reset(options={'restart': True})")
        if self._session is None:
            self._start(seed)
        self._episode_step = 0
        assert self._session is not None
        return self._observation.copy(), {"run_dir": str(self.run_dir),
                                          "round": self._session.engine.next_round}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._session is None:
            raise gymnasium.error.ResetNeeded("call reset() before step(): it starts the testbed")
        session = self._session
        self._agent.action = self.policy_index(action)
        row, session.next_start = session.engine.play_round(session.next_start)
        if (reason := session.engine.giving_up()) is not None:
            raise TestbedGaveUp(f"{reason}; close() the environment and check the testbed "
                                f"(hil check {self.config_path})")
        if row["valid"]:
            self._observation = _observation_of(session.engine.context, row)
        self._episode_step += 1
        reward = float(row["reward"]) if row["valid"] else self.invalid_reward
        truncated = self._episode_step >= self.episode_rounds
        return self._observation.copy(), reward, False, truncated, dict(row)

    def close(self) -> None:
        self._close_session("closed")

    # ------------------------------------------------------------------ the policy
    def policy_index(self, action: Any) -> int:
        """The flat policy index of an action (a Box action: the nearest value per axis)."""
        if self.action_type == "discrete":
            index = int(np.asarray(action).item())
            if not 0 <= index < self.space.size:
                raise ValueError(f"action {index} is not a policy index 0..{self.space.size - 1}")
            return index
        values = np.asarray(action, dtype=float).reshape(-1)
        if values.shape != (len(self._axes),):
            raise ValueError(f"a box action has {len(self._axes)} thresholds (Policy's "
                             f"order), got shape {values.shape}")
        nearest = [axis[int(np.argmin(np.abs(np.asarray(axis, float) - v)))]
                   for axis, v in zip(self._axes, values)]
        return self.space.index(Policy(*nearest))

    # ------------------------------------------------------------------ the testbed
    def _start(self, seed: int | None) -> None:
        overrides = self.overrides if seed is None else {**self.overrides, "seed": seed}
        self.cfg, run_dir = new_run(self.config_path, overrides, self.out, agent="gym")
        live = LiveRun(self.cfg, run_dir, resume=False, agent=self._agent)
        try:
            engine = live.start()
        except BaseException as exc:
            live.close(RunOutcome("failed", str(exc), 0))
            raise
        self._session = _Session(live, engine)
        self._observation = np.zeros(len(OBSERVATION), dtype=np.float32)
        self._finalizer = weakref.finalize(self, self._session.close, "garbage collected")

    def _close_session(self, reason: str) -> None:
        if self._session is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            self._session.close(reason)
            self._session = None


def _observation_of(context: Context, row: dict[str, Any]) -> np.ndarray:
    """The last valid round (its context, as the engine keeps it, and its row) as the
    observation, in `OBSERVATION`'s order, clipped to its box."""
    values = [1.0, context.dl_cqi, context.ul_cqi, context.dl_demand_mbps,
              context.ul_demand_mbps, row["power_w"], row["dl_rate_mbps"], row["ul_rate_mbps"]]
    observed = np.array([0.0 if v is None else v for v in values], dtype=np.float32)
    return np.clip(observed, 0.0, _OBSERVATION_HIGH)


def make_vector(config: str | Path, n: int, **kwargs: Any) -> gymnasium.vector.AsyncVectorEnv:
    """`n` environments of an emulated testbed, each with its own emulator process, stepped
    in parallel. A real testbed is refused: n controllers would drive one eNB."""
    cfg = load_config(Path(config), kwargs.get("overrides"))
    if kind_of(cfg).model_calibration(cfg) is None:
        raise HilError(f"{config}: its vBS is a real testbed; a vector of environments "
                       "needs an emulated one (each runs its own emulator)")
    return gymnasium.vector.AsyncVectorEnv(
        [functools.partial(TestbedEnv, config, **kwargs) for _ in range(n)])


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point="hil.gym:TestbedEnv", nondeterministic=True)
