"""Agents by name, so that a config file can say `agent.name: bsvbs` and give its parameters.

Configuration mistakes (unknown agent, unknown or invalid parameter) surface as
`hil.base.errors.ConfigError`; the config loader knows the file and re-raises with its path.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents.base import Agent
from agents.bpvran import BPVran
from agents.bsvbs import BSvBS
from agents.exp3ix import Exp3IX
from agents.metbs import MetBS, child_seeds, resolve_eta
from agents.random_agent import RandomAgent
from agents.tsallis_inf import TsallisInf
from agents.ucb_greedy import UCB1, Greedy
from hil.base.errors import ConfigError

AgentFactory = Callable[..., Agent]
"""Called as factory(n_actions, *, seed, horizon, **params)."""


def _without_horizon(agent_class: type) -> AgentFactory:
    """A factory for an agent whose parameters do not depend on the horizon."""

    def factory(n_actions: int, *, seed: int, horizon: int | None, **params: Any) -> Agent:
        return agent_class(n_actions, seed=seed, **params)

    factory.__signature__ = _signature_with_horizon(agent_class)  # type: ignore[attr-defined]
    return factory


def _signature_with_horizon(agent_class: type) -> inspect.Signature:
    """The agent's own signature plus `horizon`, so that `agent_params` lists its options."""
    params = [p for name, p in inspect.signature(agent_class).parameters.items()
              if name != "self"]
    horizon = inspect.Parameter("horizon", inspect.Parameter.KEYWORD_ONLY)
    return inspect.Signature([*params[:2], horizon, *params[2:]])


class _Lazy:
    """A horizon-free agent whose module is imported only when used: torch-based agents
    would otherwise add torch's import time to every `hil` command."""

    def __init__(self, module: str, class_name: str) -> None:
        self.module, self.class_name = module, class_name

    def _class(self) -> type:
        return getattr(importlib.import_module(self.module), self.class_name)

    @property
    def __signature__(self) -> inspect.Signature:
        return _signature_with_horizon(self._class())

    def __call__(self, n_actions: int, *, seed: int, horizon: int | None, **params: Any) -> Agent:
        return self._class()(n_actions, seed=seed, **params)


def _metbs(
    n_actions: int,
    *,
    seed: int,
    horizon: int | None,
    children: Sequence[str | Mapping[str, Any]] = ("bsvbs", "bpvran"),
    eta: float | None = None,
) -> MetBS:
    """MetBS over registered agents: `children` lists names, or mappings with a `name` and
    that child's parameters (e.g. `{name: bpvran, n_random: 5}`). Every child gets the run's
    horizon (as in the paper's evaluation, where the BSvBS child keeps gamma = 0.29) and
    its own seed derived from `seed`; eta comes from Lemma 2 unless given."""
    if not children:
        raise ValueError("children: give at least one agent name")
    specs = [{"name": c} if isinstance(c, str) else dict(c) for c in children]
    built = []
    for spec, child_seed in zip(specs, child_seeds(seed, len(specs))):
        name = spec.pop("name", None)
        if name == "metbs" or name not in BANDITS:
            raise ValueError(f"children: {name!r} is not an agent MetBS can use; "
                             f"known agents: {', '.join(sorted(set(BANDITS) - {'metbs'}))}")
        built.append(make_agent(name, n_actions, seed=child_seed, horizon=horizon, **spec))
    return MetBS(built, seed=seed, eta=resolve_eta(eta, len(built), horizon))


class BPVranLagged(BPVran):
    """BP-vRAN storing each observation at the context it decided on (the previous
    round's), not the round's own: the variant this project ran before issue 10."""

    def __init__(self, n_actions: int, *, seed: int, **params: Any) -> None:
        super().__init__(n_actions, seed=seed, train_on="decision", **params)


BPVranLagged.__signature__ = inspect.signature(BPVran).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(BPVran).parameters.values()
                if p.name != "train_on"])  # its options: BP-vRAN's, train_on fixed


BANDITS: dict[str, AgentFactory] = {
    "bsvbs": BSvBS,
    "random": _without_horizon(RandomAgent),
    "metbs": _metbs,
    "bpvran": _without_horizon(BPVran),
    "bpvran_lagged": _without_horizon(BPVranLagged),
    "ucb": _without_horizon(UCB1),
    "greedy": _without_horizon(Greedy),
    "tsallis_inf": _without_horizon(TsallisInf),
    "exp3ix": Exp3IX,
}
"""Learners over the policy index alone: what MetBS can combine and replays can evaluate."""

AGENTS: dict[str, AgentFactory] = {
    **BANDITS,
    "metahrl": _Lazy("agents.meta_hrl.agent", "MetaHrlAgent"),
    "fixed-slicing": _Lazy("agents.meta_hrl.fixed_agent", "FixedSlicingAgent"),
}
"""Everything `hil run --agent` can drive; `metahrl` and `fixed-slicing` (its floor: a slice
scheduler that does not learn) also cap users (per-user PRBs)."""

_COMMON = ("n_actions", "seed", "horizon")


def agent_params(name: str) -> tuple[str, ...]:
    """The optional parameters an agent accepts beyond n_actions, seed and horizon."""
    return tuple(p for p in inspect.signature(AGENTS[name]).parameters if p not in _COMMON)


def make_agent(
    name: str, n_actions: int, *, seed: int, horizon: int | None, **params: object
) -> Agent:
    """Build the agent called `name` over `n_actions` policies, seeded with `seed`."""
    if name not in AGENTS:
        raise ConfigError(
            path="",
            key="agent",
            message=f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}",
        )
    known = agent_params(name)
    for param in params:
        if param not in known:
            raise ConfigError(
                path="",
                key=f"agent.{param}",
                message=f"agent {name!r} has no parameter {param!r}; "
                f"its parameters are: {', '.join(known) or '(none)'}",
            )
    try:
        return AGENTS[name](n_actions, seed=seed, horizon=horizon, **params)
    except ValueError as exc:
        raise ConfigError(path="", key="agent.params", message=f"{name}: {exc}") from exc
