"""The docs site (mkdocs.yml): it builds with warnings as errors (a broken link fails it), its
reference pages are generated from the code, so every command and every config key is in
them, and every `hil` command the README and the guides show parses and names configs that
load."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys

import pytest
from testbed_yaml import REPO

from hil.base.model import load_calibration
from hil.config import load_config
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
    api = {package: (tmp_path / "site" / "reference" / "api" / package / "index.html").read_text()
           for package in ("hil", "drivers", "agents")}
    assert 'id="hil.engine.RoundEngine"' in api["hil"]  # the Python API, from the docstrings
    assert 'id="drivers.power.gpm8213.Gpm8213Meter"' in api["drivers"]
    assert 'id="agents.bsvbs.BSvBS"' in api["agents"]


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


def test_every_config_key_says_what_it_is():
    rows = [row for row in config_page().splitlines() if row.startswith("| `")]
    assert len(rows) > 100
    undescribed = [row.split(" |")[0] for row in rows
                   if not row.rstrip().removesuffix("|").rsplit("|", 1)[1].strip()]
    assert not undescribed, f"keys without a description (Field(description=...)): {undescribed}"


PLACEHOLDERS = {"<run-dir>": "runs/a-run", "[--rounds N]": "", "[CONFIG]": "", " DIR": " keys",
                "$s": "A", "$A": "bsvbs,random", "$GRID": "dl_max_mcs=5,27", "$CONDS": "",
                "$seed": "10"}
"""What the docs' commands leave to the reader, filled in with something that parses."""


def documented_commands() -> list[tuple[str, str]]:
    """Every `hil ...` line of a ```sh block in the README and the guides: (file, command),
    backslash continuations joined, comments dropped, placeholders filled in."""
    found = []
    for path in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).split("\n"):
                command = re.split(r"\s#", line)[0].strip()
                if re.match(r"(\.venv/bin/)?hil ", command):
                    for placeholder in sorted(PLACEHOLDERS, key=len, reverse=True):  # $seed
                        command = command.replace(placeholder, PLACEHOLDERS[placeholder])
                    found.append((path.name, command))
    return found


def test_every_hil_command_in_the_docs_parses_and_names_configs_that_load():
    """The docs cannot drift from the command line: a renamed option or a moved config fails
    here, naming the page and the command."""
    commands = documented_commands()
    assert len(commands) >= 30
    for page, command in commands:
        argv = shlex.split(command)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page}: `{command}` does not parse")
        for arg in argv:
            if arg.startswith("testbed_configs/calibration/"):
                assert load_calibration(REPO / arg), f"{page}: `{command}`: {arg}"
            elif arg.startswith("testbed_configs/") and arg.endswith(".yaml"):
                assert load_config(REPO / arg), f"{page}: `{command}`: {arg}"


def test_the_readme_s_links_reach_files_and_headings_that_exist():
    """The README is not part of the site (whose build checks its own links): a moved file or
    a renamed heading it links to fails here."""
    from markdown.extensions.toc import slugify

    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) >= 10
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), f"README.md links to {path}, which is not there"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (REPO / path).read_text(), re.M)
            assert anchor in {slugify(h, "-") for h in headings}, (
                f"README.md links to {link}: no such heading in {path}")
