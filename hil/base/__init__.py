"""The base every layer may import: operator-facing errors and validated config loading.

It imports nothing of the project, so drivers and agents (which must not import the
experiment in `hil/`) can use it; `hil/__init__.py` holds only the version, so importing
this package loads nothing else. docs/developer.md ("Architecture: the layers") says why
it lives here.
"""
