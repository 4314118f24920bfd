"""The acceptance tests, run by `hil acceptance CONFIG` (tools/acceptance/plugin.py)."""
