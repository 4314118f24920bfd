"""BP-vRAN: contextual GP-UCB (Ayala-Romero et al., INFOCOM 2021), the paper's baseline.

Each round the agent sees the context c (DL/UL CQI and demand of the previous round),
models the reward as a GP over (context, policy features) and plays

    x_t = argmax_x  mean(c, x) + sqrt(beta) sd(c, x),   sqrt(beta) = 2.5,

after `n_random` uniformly random actions.

Which context an observation is stored at (`train_on`):

- ``round`` (the paper's, the default): the context the round itself had, which the
  controller learns once the round is over (`update`'s `measured`). The GP learns how a
  policy does in a context; it decides on the last context it observed, which in a volatile
  scenario is no longer the one the policy meets ("the context differs between its
  observation and application", Kalntis et al., Sec. VI-C).
- ``decision`` (registered as `bpvran_lagged`): the context it decided on, the previous
  round's. The GP then learns the lagged mapping from the last context to the next reward,
  which in the strict ping-pong of scenario C predicts the next round exactly.

The kernel is Matern 3/2 with one length scale per dimension (`agents.gp`); its
hyperparameters are fitted on prior data by maximum marginal likelihood (`prior_rounds`),
given directly (`hyperparameters`), or defaulted.

Inputs, all scaled to [0, 1]: CQI / 15, demand / `demand_scale_mbps` (clipped), and each
policy dimension min-max over the policy space (dimensions with a single value, such as
the paper's DL gain, are dropped). A context field that is unknown (None) is the fixed
value UNKNOWN_CONTEXT: without context every round looks alike to the GP and BP-vRAN is
plain GP-UCB over policies (the BSvBS paper's point is that BP-vRAN leans on a context
that, in volatile scenarios, is stale by the time the policy applies). Action indices are
turned into features through a `PolicySpace` (the paper's when `n_actions` is its 1080),
otherwise the single feature index / (K - 1).

Decisions are taken at the context rounded to the same grid as the observations (below):
the posterior is then asked, round after round, at one of a few fixed sets of inputs (a
context bin against every policy), and `agents.gp.CachedPosterior` keeps it for the
`QUERY_CACHE_BYTES` worth of most recently used bins, extended by one row per observation
(O(n K)) instead of recomputing the n x K kernel block and its solve (O(n^2 K)) every round.
The UCB of every policy is then exact and costs O(K). Rounding the decision context moves it
by at most half a bin (0.1 of the scaled range, a fifth of the default length scale); the
decision is the GP's argmax at that point, and the same for every context in the bin.

Data budget. An exact GP over t = 50 000 rounds is out of reach (O(t^2) memory, O(t^3)
refactorisations), so the GP holds at most `max_points` points.
Observations are stored at their context rounded to a grid of `context_bins` steps per
field (with the default 5: CQI steps of 3 and demand steps of 6.4 Mb/s, a fifth of the
scaled range and well inside the default length scale of 0.5), so that the same policy
played in the same context bin is the same input. When the GP is full it is compacted
once: repeated inputs merge into one point with their mean reward and noise / count, which
is exactly the posterior of all their observations, and if more than max_points / 2
distinct inputs remain, those observed least recently are dropped. Each compaction costs
O(n^3) and the rebuild of each cached bin O(n^2 K), at most once every max_points / 2
rounds. In a static or stationary scenario with few distinct (context bin, policy) pairs in
play nothing is lost; in a volatile one the model keeps the most recent inputs, which is
also what a non-stationary world calls for. The default budget of 1000 points keeps a round
at about a millisecond on a 2-core VM (`hil bench`: bpvran_round_ms_*).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from agents.base import Context, Decision, check_bandit, check_feedback, check_state, uniform_index
from agents.gp import CachedPosterior, GpHyperparameters, IncrementalGp, fit_hyperparameters
from agents.policy_space import PAPER_SPACE, PolicySpace

MAX_CQI = 15.0
UNKNOWN_CONTEXT = 0.5
"""Scaled value of a context field that was not observed (the middle of its range)."""
CONTEXT_FIELDS = ("dl_cqi", "ul_cqi", "dl_demand_mbps", "ul_demand_mbps")
DEFAULT_LENGTH_SCALE = 0.5
DEFAULT_SIGNAL_VAR = 0.04  # reward sd ~0.2 across policies, rewards in [0, 1]
DEFAULT_NOISE_VAR = 0.01  # round-to-round sd ~0.1 of one policy's reward
DEFAULT_PRIOR_MEAN = 0.5
QUERY_CACHE_BYTES = 160 * 2**20
"""Memory for the cached posteriors of the most recently queried context bins, each
max_points x K doubles (8.6 MB at the defaults: 19 bins; scenario C visits 12)."""


def policy_features(n_actions: int, space: PolicySpace | None) -> np.ndarray:
    """(K, p) features in [0, 1]: the space's varying dimensions, or index / (K - 1)."""
    if space is None:
        return (np.arange(n_actions) / max(n_actions - 1, 1))[:, None]
    if space.size != n_actions:
        raise ValueError(f"policy_space has {space.size} policies but n_actions is {n_actions}")
    columns = []
    for values in space.arrays().values():
        low, high = float(values.min()), float(values.max())
        if high > low:
            columns.append((values - low) / (high - low))
    if not columns:
        return np.zeros((n_actions, 0))
    return np.stack(columns, axis=1).astype(np.float64)


def scale_context(context: Context | None, demand_scale_mbps: float) -> np.ndarray:
    """The four context fields scaled to [0, 1]; unknown ones are UNKNOWN_CONTEXT."""
    context = context or Context()
    scales = (MAX_CQI, MAX_CQI, demand_scale_mbps, demand_scale_mbps)
    out = np.full(len(CONTEXT_FIELDS), UNKNOWN_CONTEXT)
    for i, (name, scale) in enumerate(zip(CONTEXT_FIELDS, scales)):
        value = getattr(context, name)
        if value is not None and math.isfinite(value):
            out[i] = min(max(value / scale, 0.0), 1.0)
    return out


TRAIN_ON = ("round", "decision")


class BPVran:
    """Contextual GP-UCB over `n_actions` policies with a bounded, incremental posterior."""

    def __init__(
        self,
        n_actions: int,
        *,
        seed: int,
        policy_space: PolicySpace | Mapping[str, Sequence[float]] | None = None,
        hyperparameters: GpHyperparameters | Mapping[str, Any] | None = None,
        prior_rounds: Mapping[str, Sequence[Any]] | None = None,
        n_random: int = 3,
        sqrt_beta: float = 2.5,
        max_points: int = 1000,
        demand_scale_mbps: float = 32.0,
        context_bins: int = 5,
        train_on: str = "round",
    ) -> None:
        check_bandit(n_actions)
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
        self.train_on = train_on
        self.name = "bpvran" if train_on == "round" else "bpvran_lagged"
        bin_bytes = 8 * max(max_points, 1) * n_actions
        if bin_bytes > QUERY_CACHE_BYTES:
            raise ValueError(
                f"max_points x n_actions = {max_points} x {n_actions} needs "
                f"{bin_bytes / 2**20:.0f} MiB per context bin, over the "
                f"{QUERY_CACHE_BYTES / 2**20:.0f} MiB BP-vRAN keeps; lower max_points")
        if (n_random < 0 or max_points < 2 or sqrt_beta < 0 or demand_scale_mbps <= 0
                or context_bins < 1):
            raise ValueError(
                "need n_random >= 0, max_points >= 2, sqrt_beta >= 0, demand_scale_mbps > 0 "
                f"and context_bins >= 1; got {n_random}, {max_points}, {sqrt_beta}, "
                f"{demand_scale_mbps}, {context_bins}"
            )
        if isinstance(policy_space, Mapping):
            policy_space = PolicySpace(**policy_space)
        if policy_space is None and n_actions == PAPER_SPACE.size:
            policy_space = PAPER_SPACE
        self.n_actions = n_actions
        self.n_random, self.sqrt_beta = n_random, float(sqrt_beta)
        self.max_points, self.demand_scale_mbps = max_points, float(demand_scale_mbps)
        self.context_bins = context_bins
        self._space = policy_space
        self._features = policy_features(n_actions, policy_space)
        dim = len(CONTEXT_FIELDS) + self._features.shape[1]
        if hyperparameters is not None and prior_rounds is not None:
            raise ValueError("give hyperparameters or prior_rounds to fit them on, not both")
        if prior_rounds is not None:
            hyperparameters = self._fit_prior(prior_rounds)
        elif isinstance(hyperparameters, Mapping):
            hyperparameters = GpHyperparameters(**hyperparameters)
        elif hyperparameters is None:
            hyperparameters = GpHyperparameters(
                (DEFAULT_LENGTH_SCALE,) * dim,
                DEFAULT_SIGNAL_VAR,
                DEFAULT_NOISE_VAR,
                DEFAULT_PRIOR_MEAN,
            )
        self.hyper = hyperparameters
        self._gp = IncrementalGp(dim, hyperparameters, capacity=max_points)
        self._bins: OrderedDict[tuple[int, ...], CachedPosterior] = OrderedDict()
        self._max_bins = QUERY_CACHE_BYTES // bin_bytes
        self._rng = np.random.default_rng(seed)
        self._observations = 0
        self._context = scale_context(None, self.demand_scale_mbps)
        self._cached_choice: int | None = None  # UCB argmax for self._context, until an update

    def context_bin(self, context: np.ndarray) -> tuple[int, ...]:
        """The grid cell of a scaled context: each field in steps of 1 / context_bins."""
        return tuple(int(v) for v in np.round(np.asarray(context) * self.context_bins))

    def observation_input(self, context: np.ndarray, action: int) -> np.ndarray:
        """Where an observation is stored: its scaled context rounded to the bin grid."""
        binned = np.array(self.context_bin(context)) / self.context_bins
        return self.inputs(binned, np.array([action]))[0]

    def inputs(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """GP inputs for scaled contexts (one, or one per action) and action indices."""
        actions = np.asarray(actions, dtype=np.intp)
        context = np.broadcast_to(context, (len(actions), len(CONTEXT_FIELDS)))
        return np.concatenate([context, self._features[actions]], axis=1)

    def select(self, context: Context | None = None) -> Decision:
        """Random for the first `n_random` observations, then the UCB argmax (prob 1)."""
        self._context = scale_context(context, self.demand_scale_mbps)
        self._cached_choice = None
        info = {"context": tuple(float(v) for v in self._context)}
        if self._observations < self.n_random:
            action = uniform_index(self._rng.random(), self.n_actions)
            return Decision(action=action, prob=1.0 / self.n_actions, info=info)
        return Decision(action=self._ucb_choice(), prob=1.0, info=info)

    def update(self, decision: Decision, reward: float,
               measured: Context | None = None) -> None:
        """Add (context bin, action) -> reward to the GP, compacting it first when the
        budget is full. The context is the round's own (`measured`) or, for
        `train_on="decision"` or when the round's is not given, the one decided on."""
        check_feedback(decision, reward, self.n_actions)
        if self.train_on == "round" and measured is not None:
            context = scale_context(measured, self.demand_scale_mbps)
        else:
            context = np.asarray(decision.info.get("context", self._context), dtype=np.float64)
        if self._gp.n == self.max_points:
            self._gp.compact(keep=self.max_points // 2)
        self._gp.add(self.observation_input(context, decision.action), reward,
                     label=decision.action)
        self._observations += 1
        self._cached_choice = None

    def probabilities(self) -> np.ndarray:
        """What `select` plays for the context it last saw: uniform while still random,
        else all mass on the UCB argmax."""
        if self._observations < self.n_random:
            return np.full(self.n_actions, 1.0 / self.n_actions)
        out = np.zeros(self.n_actions)
        out[self._ucb_choice()] = 1.0
        return out

    def state_dict(self) -> dict[str, Any]:
        gp = self._gp
        return {
            "agent": self.name,
            "config": self._config(),
            "observations": self._observations,
            "context": self._context.copy(),
            "gp_inputs": gp.inputs.copy(),
            "gp_targets": gp.targets.copy(),
            "gp_counts": gp.counts.copy(),
            "gp_actions": gp.labels.copy(),
            "gp_cholesky": gp.cholesky.copy(),
            "gp_cholesky_inverse": gp.cholesky_inverse.copy(),
            "gp_z": gp.whitened_targets.copy(),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name, self._config())
        self._gp.load(
            np.asarray(state["gp_inputs"], dtype=np.float64),
            np.asarray(state["gp_targets"], dtype=np.float64),
            np.asarray(state["gp_counts"], dtype=np.float64),
            np.asarray(state["gp_actions"], dtype=np.intp),
            np.asarray(state["gp_cholesky"], dtype=np.float64),
            np.asarray(state["gp_cholesky_inverse"], dtype=np.float64),
            np.asarray(state["gp_z"], dtype=np.float64),
        )
        self._observations = int(state["observations"])
        self._context = np.asarray(state["context"], dtype=np.float64).copy()
        self._cached_choice = None
        self._rng.bit_generator.state = state["rng"]

    def _config(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "policy_space": None if self._space is None else {
                f.name: list(getattr(self._space, f.name)) for f in fields(self._space)
            },
            "hyperparameters": {
                "length_scales": list(self.hyper.length_scales),
                "signal_var": self.hyper.signal_var,
                "noise_var": self.hyper.noise_var,
                "prior_mean": self.hyper.prior_mean,
            },
            "n_random": self.n_random,
            "sqrt_beta": self.sqrt_beta,
            "max_points": self.max_points,
            "demand_scale_mbps": self.demand_scale_mbps,
            "context_bins": self.context_bins,
            "train_on": self.train_on,
        }

    def _fit_prior(self, prior: Mapping[str, Sequence[Any]]) -> GpHyperparameters:
        """Fit on recorded rounds: `contexts` rows of (dl_cqi, ul_cqi, dl_demand_mbps,
        ul_demand_mbps) with NaN for unknown, `actions` and `rewards`."""
        missing = {"contexts", "actions", "rewards"} - set(prior)
        if missing:
            raise ValueError(f"prior_rounds lacks {sorted(missing)}")
        contexts = np.asarray(prior["contexts"], dtype=np.float64).reshape(-1, 4)
        actions = np.asarray(prior["actions"], dtype=np.intp)
        if np.any((actions < 0) | (actions >= self.n_actions)):
            raise ValueError(f"prior_rounds has actions outside 0..{self.n_actions - 1}")
        scaled = np.stack([
            scale_context(Context(*(None if math.isnan(v) else float(v) for v in row)),
                          self.demand_scale_mbps)
            for row in contexts
        ])
        x = np.concatenate([scaled, self._features[actions]], axis=1)
        return fit_hyperparameters(x, np.asarray(prior["rewards"], dtype=np.float64))

    def _ucb_choice(self) -> int:
        """argmax of mean + sqrt_beta * sd over all actions at the current context's bin,
        exact; ties go to the lowest index."""
        if self._cached_choice is not None:
            return self._cached_choice
        if self._gp.n == 0:
            self._cached_choice = 0  # the prior is the same everywhere
            return 0
        mean, var = self._posterior_here().mean_and_variance()
        self._cached_choice = int(np.argmax(mean + self.sqrt_beta * np.sqrt(var)))
        return self._cached_choice

    def _posterior_here(self) -> CachedPosterior:
        """The cached posterior at the current context's bin against every policy; the
        least recently used bin is dropped when there are more than fit the budget."""
        key = self.context_bin(self._context)
        cached = self._bins.get(key)
        if cached is None:
            binned = np.array(key) / self.context_bins
            cached = CachedPosterior(self._gp, self.inputs(binned, np.arange(self.n_actions)))
            self._bins[key] = cached
            if len(self._bins) > self._max_bins:
                self._bins.popitem(last=False)
        else:
            self._bins.move_to_end(key)
        return cached
