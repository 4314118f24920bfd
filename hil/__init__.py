"""vbs-hil: the experiment: config, round engine, reward, recording (the `hil` command
line is tools/cli.py, above it)."""

__version__ = "0.1.0"
