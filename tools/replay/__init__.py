"""Offline evaluation of agents: `hil replay` (environments, runner, metrics, figures, report)."""
