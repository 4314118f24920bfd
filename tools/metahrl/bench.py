"""`hil bench` figures of Meta-HRL on this CPU.

    metahrl_meta_iteration_s        one meta-iteration as `hil metahrl` runs it (7 DUs x 30
                                    UEs, second-order MAML: 10 steps of collection per DU,
                                    then 10 updates, each inner and outer steps)
    metahrl_low_decision_ms         one near-RT decision of the low level for a DU of 30
                                    users (the per-user actor and the PRB mapping); p50
    metahrl_low_decision_ms_p99     the same, 99th percentile
    metahrl_low_decision_ms_200ue   the same for 200 users, p50

The near-RT level must decide well within 10 ms; the aim is 1 ms.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from agents.meta_hrl.env import allocate_prbs, make_tasks
from agents.meta_hrl.hrl import HrlLearner
from agents.meta_hrl.training import TrainConfig, Trainer
from hil.bench import Figure
from tools.metahrl.experiments import Setup


def _low_decision_ms(n_ues: int, repeats: int) -> np.ndarray:
    """Wall time of deciding one step's per-user allocation (high action given)."""
    learner = HrlLearner(seed=0)
    (env,) = make_tasks(1, n_ues, seed=0)
    rollout = learner.rollout(env, seed=0)
    params = learner.params()
    obs, _ = env.reset(seed=0)
    rollout.act(params, obs, None)  # the high level's decision, then only the low level's
    ms = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        action = rollout.act_low(params, obs, None)
        allocate_prbs(action.high, action.low[:, 0], rollout.user_slice, env.cal.cell.nof_prb)
        ms[i] = (time.perf_counter() - t0) * 1e3
    return ms


def bench_metahrl(quick: bool) -> Iterator[Figure]:
    torch.set_num_threads(1)
    setup = Setup(n_dus=2, n_ues=6, n_heldout=2) if quick else Setup()
    trainer = Trainer(HrlLearner(seed=0), setup.pools.training(),
                      TrainConfig(updates_per_iteration=setup.updates_per_iteration), seed=0)
    if not quick:  # --quick only checks that the figure prints: its one iteration is the first
        trainer.step()  # first iteration: allocations and lazy initialisation
    iterations = 1 if quick else 20
    t0 = time.perf_counter()
    for _ in range(iterations):
        trainer.step()
    yield "metahrl_meta_iteration_s", (time.perf_counter() - t0) / iterations, "s"
    ms = _low_decision_ms(30, 200 if quick else 2000)
    yield "metahrl_low_decision_ms", float(np.percentile(ms, 50)), "ms"
    yield "metahrl_low_decision_ms_p99", float(np.percentile(ms, 99)), "ms"
    ms = _low_decision_ms(200, 100 if quick else 1000)
    yield "metahrl_low_decision_ms_200ue", float(np.percentile(ms, 50)), "ms"
