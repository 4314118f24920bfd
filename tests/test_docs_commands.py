"""Every ```sh block of the README and the guides runs, so the docs cannot drift from the
code: each block goes to bash as written (loops, variables and all), page by page in one
working folder with a copy of testbed_configs/, so a later block finds what an earlier one
made (`hil collect --out datasets/try`, then `hil fit-power datasets/try`). The programs
it calls are the stand-ins of tests/docs_shim.py: `hil` runs for real against the emulated
testbed with small sizes; a command that needs real srsRAN, a lab or a long-running server
is not run, with its reason, and the list of those is printed here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docs_shim
import pytest
from testbed_yaml import REPO

from drivers.emulated.sshd import free_port, stop

PAGES = ["README.md", "docs/index.md", "docs/operator.md", "docs/researcher.md",
         "docs/developer.md"]
SHIMS = {"bin": ["hil", "make", "pip", "dask"], ".venv/bin": ["hil", "python", "pip"]}
"""The stand-ins, by folder of the working copy (bin/ goes first on PATH)."""
PLACEHOLDERS = {"runs/<run-dir>": '"$(ls -dt runs/*/ | head -n1)"', "[--rounds N]": "",
                "[CONFIG]": "", "hil keys DIR": "hil keys keys"}
"""What the docs leave to the reader, as bash fills it in here: the newest run, a folder."""


def sh_blocks(page: str) -> list[str]:
    """The page's ```sh blocks, placeholders filled in."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / page).read_text(), re.S)
    for placeholder, value in PLACEHOLDERS.items():
        blocks = [block.replace(placeholder, value) for block in blocks]
    return blocks


def workspace(root: Path) -> dict[str, str]:
    """A folder to run a page's blocks in, and its environment: testbed_configs/ copied (the
    emulated BBU host's local sshd on a free port of its own, started by `hil` as after
    `pip install`, its state and testbed lock in this folder, so pages run side by side),
    the measured datasets linked, the stand-ins first on PATH."""
    shutil.copytree(REPO / "testbed_configs", root / "testbed_configs")
    port = free_port()
    for config in (root / "testbed_configs").glob("*.yaml"):  # the host's files here, too:
        config.write_text(config.read_text().replace("port: 2222", f"port: {port}").replace(
            "local_sshd: ../.hil/sshd", f"local_sshd: ../.hil/sshd\n    state_dir: {root}/bbu"))
    (root / "datasets").mkdir()
    (root / "datasets" / "measured").symlink_to(REPO / "datasets" / "measured")
    for folder, names in SHIMS.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shim = root / folder / name
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{docs_shim.__file__}" '
                            f'--client {name} "$@"\n')
            shim.chmod(0o755)
    return {**os.environ, "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "DOCS_SHIM_LOG": str(root / "commands.jsonl"), "COLUMNS": "120",
            "DOCS_SHIM_SOCKET": str(root / "shim.sock")}


@contextmanager
def shim_server(env: dict[str, str]) -> Iterator[None]:
    """The warm process the stand-ins hand their commands to (tests/docs_shim.py)."""
    server = subprocess.Popen([sys.executable, docs_shim.__file__, "--serve",
                               env["DOCS_SHIM_SOCKET"]], env=env)
    try:
        deadline = time.monotonic() + 120
        while not Path(env["DOCS_SHIM_SOCKET"]).exists():
            assert server.poll() is None and time.monotonic() < deadline, "no shim server"
            time.sleep(0.05)
        yield
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("page", PAGES)
def test_every_shell_block_of_the_page_runs_or_says_why_not(page, tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    env = workspace(root)
    try:
        with shim_server(env):
            for block in sh_blocks(page):
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=root, env=env,
                                      capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, (f"{page}: this block failed (exit "
                                              f"{done.returncode}):\n{block}\n{done.stdout[-3000:]}"
                                              f"\n{done.stderr[-3000:]}")
    finally:
        stop(root / ".hil" / "sshd")
    log = root / "commands.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert not [e for e in entries if e.get("unknown")]
    for entry in entries:
        print(f"ran in {entry['s']} s: {entry['ran']}" if "ran" in entry
              else f"not run: {entry['command']}  ({entry['not_run']})")
    expected = sum(len(re.findall(r"^\s*(\.venv/bin/)?hil ", block, re.M))
                   for block in sh_blocks(page))
    assert sum(e["command"].startswith("hil ") for e in entries) >= expected


def test_every_reason_not_to_run_a_command_is_used_by_a_page():
    """No stale rule: each NOT_RUN pattern matches a command the docs show."""
    commands = [re.sub(r"^(\.venv/bin/)?", "", re.split(r"\s#", line)[0].strip())
                for page in PAGES for block in sh_blocks(page)
                for line in re.sub(r"\\\n\s*", " ", block).splitlines()]
    for pattern, reason in docs_shim.NOT_RUN:
        assert any(re.search(pattern, command) for command in commands), (pattern, reason)


def test_small_sizes_replace_the_docs_sizes_and_fill_in_missing_ones():
    assert docs_shim.smaller("replay", ["replay", "--seeds", "10", "--out", "r"]) == [
        "replay", "--seeds", "1", "--out", "r", "--rounds", "150", "--executor", "local:1"]
    assert docs_shim.smaller("run", ["run", "--resume", "runs/x"])[-2:] == ["--rounds", "45"]
    assert docs_shim.not_run_reason("hil run testbed_configs/b210-lab.yaml")
    assert docs_shim.not_run_reason("hil run testbed_configs/zmq-emulated-paper.yaml") is None
