"""The docs site (mkdocs.yml): it builds with warnings as errors, and its reference pages are
generated from the code, so every command and every config key is in them."""

from __future__ import annotations

import argparse
import subprocess
import sys

from testbed_yaml import REPO

from tools.cli import build_parser
from tools.docs_site import cli_page, config_page


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for page in ("index.html", "reference/cli/index.html", "reference/config/index.html",
                 "project/protocol/index.html", "project/reliability/index.html",
                 "operator/index.html", "researcher/index.html", "developer/index.html"):
        assert (tmp_path / "site" / page).exists(), page


def test_the_cli_reference_has_every_command_and_argument():
    page = cli_page(build_parser())

    def check(parser: argparse.ArgumentParser, prefix: str) -> None:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for name, sub in commands.choices.items():
            assert f"## `{prefix} {name}`" in page
            for action in sub._actions:
                if isinstance(action, argparse._SubParsersAction):
                    check(sub, f"{prefix} {name}")
                elif not isinstance(action, argparse._HelpAction):
                    assert all(f"`{o}" in page for o in action.option_strings), action.dest

    check(build_parser(), "hil")
    assert "## `hil srsran build`" in page


def test_the_config_reference_lists_keys_with_their_limits_and_each_kind_of_vbs():
    page = config_page()
    for row in ("| `clock.speedup` | float | `1.0` | > 0, <= 10000 |",
                "| `hosts.<name>.port` | int | `22` | >= 1, <= 65535 |",
                "| `vbs.allow_plaintext_control` | bool | `False` |",
                "| `vbs.kind` | `emulated` |", "| `vbs.kind` | `srsran` |",
                "| `vbs.srsran.rtctl_bind` |", "| `vbs.emulator.scenario.switch_epoch` |",
                "| `meter.min_coverage` | float | `0.5` | >= 0, <= 1 |"):
        assert row in page, row
    assert page.count("| `vbs.curve_dir` |") == 1  # the keys every kind has, once
