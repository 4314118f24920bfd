"""What a test does when something it needs is not on this machine.

On a developer's machine the test is skipped, saying what to install. Under CI (`CI=true`,
set by .ci/run) it fails: a CI that skipped would pass without having tested anything, and
CI installs every prerequisite itself (`make test`).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, *, module: bool = False) -> NoReturn:
    """Skip (or, under CI, fail) the test, or every test of the module with `module`."""
    if under_ci():
        pytest.fail(f"a prerequisite is missing under CI: {what}", pytrace=False)
    pytest.skip(what, allow_module_level=module)
