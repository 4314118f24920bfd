"""The protocol every Meta-HRL comparison follows, learned or fixed schedulers alike.

- **Fixed DU pools.** The training DUs and the held-out DUs are the same for every method
  and every seed (drawn from the task distribution with `TRAIN_POOL_SEED` and
  `HELDOUT_POOL_SEED`); a seed changes only a learner's initial weights and its noise, so
  seeds do not mix DU difficulty into the spread.
- **Per-DU scores.** A scheduler's reward on a held-out DU (the mean over the fixed
  evaluation episode) is mapped to a score: 0 is the equal split at full power, 1 the best
  constant slice split searched on that DU itself (an oracle a deployed scheduler does not
  have). Above 1 a scheduler beats every constant split of that DU.
- **Fixed schedulers** (`agents.meta_hrl.fixed`), scored on the same DUs: equal split; the
  best constant split searched on the *training* pool (what an operator could deploy),
  also with users weighted by queue; load-proportional; proportional fair.
- **Paired differences.** Meta-HRL against another method: per (seed, held-out DU) pair the
  difference of scores (against a fixed scheduler, which has no seed, the same DU's score),
  with a bootstrap 95 % interval over the pairs.

The anchors and the fixed schedulers' scores are computed once per pool and saved beside
the jobs (`baselines-<tag>.json`), so a resumed sweep does not search again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from agents.meta_hrl.env import DuSlicingEnv, Family, make_tasks
from agents.meta_hrl.fixed import (
    LoadProportional,
    ProportionalFair,
    Scheduler,
    SliceSplit,
    run_scheduler,
    search_split,
)
from agents.meta_hrl.training import AdaptConfig
from hil.base.errors import HilError
from hil.executor import IN_THIS_PROCESS, Callbacks, Executor, run_jobs

TRAIN_POOL_SEED = 0
HELDOUT_POOL_SEED = 10_000
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Pools:
    n_train: int
    n_heldout: int
    n_ues: int
    family: Family = "visible"   # agents.meta_hrl.env.make_tasks
    power_control: bool = True   # False: every user at full power (as online)

    @property
    def tag(self) -> str:
        return f"{self.n_train}du-{self.n_heldout}held-{self.n_ues}ue{self.suffix}"

    @property
    def suffix(self) -> str:
        """What sets the pools apart from the default ones, for file names."""
        return ("-hidden" if self.family == "hidden" else "") + \
            ("" if self.power_control else "-nopower")

    def training(self) -> list[DuSlicingEnv]:
        return make_tasks(self.n_train, self.n_ues, TRAIN_POOL_SEED, self.family,
                          power_control=self.power_control)

    def heldout(self) -> list[DuSlicingEnv]:
        return make_tasks(self.n_heldout, self.n_ues, HELDOUT_POOL_SEED, self.family,
                          power_control=self.power_control)


@dataclass(frozen=True)
class Baselines:
    """Per held-out DU: the anchors of its score and each fixed scheduler's reward."""

    equal: list[float]
    """The equal split's reward (score 0)."""
    best: list[float]
    """The best constant split's reward, searched on the DU itself (score 1)."""
    fixed: dict[str, list[float]]
    """Rewards of the deployable fixed schedulers, by name."""

    def score(self, reward: float, du: int) -> float:
        """0: the equal split; 1: the DU's best constant split."""
        span = self.best[du] - self.equal[du]
        return (reward - self.equal[du]) / span if span > 1e-9 else 0.0

    def scores(self, rewards: list[float]) -> np.ndarray:
        return np.array([self.score(r, du) for du, r in enumerate(rewards)])


def evaluate_fixed(scheduler: Scheduler, env: DuSlicingEnv, config: AdaptConfig) -> float:
    """A fixed scheduler's reward on a DU, on the episode every learner is evaluated on."""
    return run_scheduler(scheduler, env, steps=config.eval_steps, seed=config.eval_seed)


Search = tuple[str, int | str]
"""One search of constant splits: ("own", i) on held-out DU i; ("training", users) on the
training pool with that user rule."""


def compute_baselines(pools: Pools, config: AdaptConfig | None = None,
                      executor: Executor = IN_THIS_PROCESS) -> Baselines:
    """The anchors and the fixed schedulers' rewards; the split searches (one per held-out
    DU, two on the training pool: the slow part) run as jobs on `executor`."""
    config = config or AdaptConfig()
    heldout = pools.heldout()
    searches: list[Search] = [("own", i) for i in range(len(heldout))]
    searches += [("training", "equal"), ("training", "queue")]
    found: dict[Search, tuple[SliceSplit, float]] = {}
    failed = run_jobs(partial(_search, pools, config), searches, executor,
                      Callbacks(found.__setitem__))
    if failed:
        raise HilError(f"the baselines' split search {failed[0].job} failed: {failed[0].error}")
    equal = [evaluate_fixed(SliceSplit(), env, config) for env in heldout]
    deployable: list[Scheduler] = [
        SliceSplit(), found[("training", "equal")][0], found[("training", "queue")][0],
        LoadProportional(), ProportionalFair()]
    fixed = {_label(s): [evaluate_fixed(s, env, config) for env in heldout] for s in deployable}
    return Baselines(equal, [found[("own", i)][1] for i in range(len(heldout))], fixed)


def _search(pools: Pools, config: AdaptConfig, search: Search,
            progress: Callable[[int], None]) -> tuple[SliceSplit, float]:
    kind, which = search
    envs = [pools.heldout()[int(which)]] if kind == "own" else pools.training()
    return search_split(envs, users="queue" if which == "queue" else "equal",
                        steps=config.eval_steps, seed=config.eval_seed)


def _label(scheduler: Scheduler) -> str:
    if isinstance(scheduler, SliceSplit) and scheduler.shares is not None:
        return f"best constant {scheduler.name} (searched on the training DUs)"
    return scheduler.name


def load_or_compute(out: Path, pools: Pools, executor: Executor = IN_THIS_PROCESS,
                    config: AdaptConfig | None = None) -> Baselines:
    """The baselines of `pools` saved in `out`, computed (with `config`) and saved if none are."""
    path = out / f"baselines-{pools.tag}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Baselines(data["equal"], data["best"], data["fixed"])
    baselines = compute_baselines(pools, config, executor=executor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(baselines)))
    tmp.replace(path)
    return baselines


def bootstrap_interval(differences: np.ndarray, *, seed: int = 0,
                       samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float, float]:
    """Mean of the paired differences and a percentile bootstrap 95 % interval over them."""
    d = np.asarray(differences, dtype=float).ravel()
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (samples, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)
