"""Where the repository is, found from the package: the shipped configs, calibrations and
templates live beside it (`testbed_configs/`, `patches/`)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
