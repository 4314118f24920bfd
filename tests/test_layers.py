"""The packages' layers and the imports between them (issue 21): imports go one way.

    tools      the commands: the `hil` command line, replay, collect, metahrl, ...
    hil        the experiment: config, round engine, reward, recording
    agents     learners (pure)          drivers   the testbed's I/O
    hil.base   what every layer may use: errors, validated config loading, the LTE
               tables, the radio/power, scenario and slice models (and `hil`'s own
               __init__, which holds only the version)

A module may import its own package and the layers below it. Agents and drivers are
siblings: neither imports the other. `python -m pytest tests/test_layers.py -s` prints
the layers, and any import that goes the wrong way or round a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).parents[1]
LAYERS = {"tools": 3, "hil": 2, "agents": 1, "drivers": 1}
"""Higher imports lower; equal numbers are siblings that must not import each other."""
BASE = ("hil.base", "hil")
"""Modules of the base layer (0): `hil.base` and its modules, and the `hil` package itself."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (at any depth of its code;
    `from package import module` counts as importing that module)."""
    paths = {module_name(p): p for package in LAYERS
             for p in sorted((REPO / package).rglob("*.py"))}
    found: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                            else node.module for a in node.names}
        found[name] = {t for t in targets if t.split(".")[0] in LAYERS and t != name}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                groups.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def layer(module: str) -> tuple[str, int]:
    """The layer a module belongs to: its name and number."""
    if module in BASE or module.startswith("hil.base."):
        return "base", 0
    package = module.split(".")[0]
    return package, LAYERS[package]


def goes_the_wrong_way(source: str, target: str) -> bool:
    (mine, my_level), (theirs, their_level) = layer(source), layer(target)
    return mine != theirs and their_level >= my_level


def test_imports_go_down_the_layers_only():
    graph = imports()
    wrong = {(s, t) for s, targets in graph.items() for t in targets if goes_the_wrong_way(s, t)}
    for package, level in [*sorted(LAYERS.items(), key=lambda item: -item[1]), ("hil.base", 0)]:
        print(f"layer {level}: {package}")
    for source, target in sorted(wrong):
        print(f"  wrong: {source} -> {target}")
    assert wrong == set(), "imports that go up or sideways: move the shared code down"


def test_no_modules_import_each_other_round_a_loop():
    found = cycles(imports())
    for group in found:
        print("  loop: " + " <-> ".join(group))
    assert found == [], "modules that import each other"


def test_the_checker_flags_an_import_that_goes_up_or_sideways():
    assert goes_the_wrong_way("drivers.ssh.host", "hil.config")
    assert goes_the_wrong_way("hil.base.errors", "hil.config")
    assert not goes_the_wrong_way("drivers.ssh.host", "hil.base.errors")
    assert goes_the_wrong_way("agents.bsvbs", "drivers.emulated.vbs")
    assert not goes_the_wrong_way("tools.replay.runner", "hil.executor")
    assert not goes_the_wrong_way("hil.engine", "agents.base")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


KIND_MODULES = ("hil.config", "hil.testbeds")
"""Where a kind of vBS is known: its config class and its modules (hil/testbeds/)."""


def kind_specific_reads() -> list[str]:
    """Code outside the kinds' modules that reads which kind runs or a kind's own section
    (`cfg.vbs.kind`, `cfg.vbs.emulator`, `cfg.vbs.srsran`)."""
    found = []
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            module = module_name(path)
            if module.startswith(KIND_MODULES):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Attribute) and node.attr in ("kind", "emulator", "srsran")
                        and isinstance(node.value, ast.Attribute) and node.value.attr == "vbs"):
                    found.append(f"{module}:{node.lineno} .vbs.{node.attr}")
    return found


def test_only_the_testbed_kinds_know_which_kind_of_vbs_runs():
    """The engine, `hil check`, `hil collect` and the replays ask the kind
    (hil.testbeds.kind_of) or the config's common methods, so a new kind of vBS is
    its config class and one new module."""
    found = kind_specific_reads()
    for read in found:
        print("  reads the kind: " + read)
    assert found == []
