"""vbs-hil: the experiment: config, round engine, reward, recording, CLI."""

__version__ = "0.1.0"
