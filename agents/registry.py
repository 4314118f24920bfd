"""Agents by name, so that a config file can say `agent.name: bsvbs` and give its parameters.

Configuration mistakes (unknown agent, unknown or invalid parameter) surface as
`hil.errors.ConfigError`; the config loader knows the file and re-raises with its path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from agents.base import Agent
from agents.bsvbs import BSvBS
from agents.random_agent import RandomAgent
from hil.errors import ConfigError

AgentFactory = Callable[..., Agent]
"""Called as factory(n_actions, *, seed, horizon, **params)."""


def _random(n_actions: int, *, seed: int, horizon: int | None) -> RandomAgent:
    """Random does not depend on the horizon."""
    return RandomAgent(n_actions, seed=seed)


AGENTS: dict[str, AgentFactory] = {
    "bsvbs": BSvBS,
    "random": _random,
}

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
        raise ConfigError(path="", key="agent", message=f"{name}: {exc}") from exc
