"""The docs site's pages that come from elsewhere, made before each build so they cannot
drift: the CLI reference from `tools.cli.build_parser()`, every config key from the pydantic
models of `hil.config` with its type, default and limits, and the documents that live beside
what they describe (the protocol spec in patches/, RELIABILITY.md, ...), rendered as they
are. MkDocs runs `on_pre_build` (a hook named in mkdocs.yml) before each build; `python -m
tools.docs_site DIR` writes the same pages. Git ignores them.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agents.policy_space import NAMED_SPACES
from hil.config import HilConfig, VbsCommon, VbsConfig
from tools.cli import build_parser

REFERENCE = Path("reference")
"""Where the generated pages go, under the docs folder."""
PROJECT = Path("project")
"""Where the repo's own documents go, under the docs folder."""
REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = {"protocol.md": "patches/PROTOCOL.md",
             "srsran-patches.md": "patches/srsRAN_4G/README.md",
             "reliability.md": "RELIABILITY.md", "tools.md": "tools/README.md"}
"""The repo's documents published as pages: page -> file (one copy of each fact: the file)."""
API = ("hil", "drivers", "agents")
"""The packages whose Python API the site documents (tools/ is the command line's)."""
_LIMITS = {annotated_types.Ge: (">=", "ge"), annotated_types.Gt: (">", "gt"),
           annotated_types.Le: ("<=", "le"), annotated_types.Lt: ("<", "lt"),
           annotated_types.MinLen: ("length >=", "min_length"),
           annotated_types.MaxLen: ("length <=", "max_length")}
"""Each pydantic constraint's sign and the attribute that holds its bound."""


def cli_page(parser: argparse.ArgumentParser) -> str:
    """Every `hil` command with its arguments and their help, from the argparse definitions."""
    lines = ["# Command line: `hil`", "",
             "Generated from `tools/cli.py` (`build_parser`). `hil COMMAND --help` prints the "
             "same.", ""]
    return "\n".join(lines + _commands(parser, "hil"))


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """A section per subcommand of `parser` (and of theirs: `hil srsran build`)."""
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in commands._choices_actions}
    lines = []
    for name, sub in commands.choices.items():
        lines += [f"## `{prefix} {name}`", "", helps.get(name) or "", "", "```text",
                  sub.format_usage().strip(), "```", "", "| argument | help |", "|---|---|"]
        nested = False
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                nested = True
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            names = ", ".join(action.option_strings) or action.dest
            expanded = sub._get_formatter()._expand_help(action) if action.help else ""
            text = expanded.replace("|", "\\|").replace("\n", " ")
            if action.default not in (None, argparse.SUPPRESS, False) and action.option_strings:
                text += f" (default: `{action.default}`)"
            lines.append(f"| `{names}` | {text} |")
        lines.append("")
        if nested:
            lines += _commands(sub, f"{prefix} {name}")
    return lines


def config_page() -> str:
    """Every config key, dotted, with its type, default, limits and description."""
    lines = ["# Config keys", "",
             "Generated from the pydantic models in `hil/config.py`; a config is validated "
             "against them on load, and an error names the file and the key. `vbs` has one "
             "section per kind of vBS (`vbs.kind`).", "",
             "| key | type | default | limits | what it is |", "|---|---|---|---|---|"]
    lines += _rows(HilConfig, "")
    lines += _rows(VbsCommon, "vbs.")  # every kind has these
    for member in typing.get_args(typing.get_args(VbsConfig)[0]):
        model = typing.get_args(member)[0]
        kind = typing.get_args(model.model_fields["kind"].annotation)[0]
        lines.append(f"| `vbs.kind` | `{kind}` | | | {_doc(model)} |")
        lines += _rows(model, "vbs.", skip={*VbsCommon.model_fields, "kind"})
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str, skip: set[str] | frozenset[str] = frozenset()
          ) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key = f"{prefix}{name}"
        if typing.get_origin(field.annotation) is dict:  # named entries: hosts.<name>.*
            value = _model_of(typing.get_args(field.annotation)[1])
            if value is not None:
                rows += _rows(value, f"{key}.<name>.")
                continue
        nested = _model_of(field.annotation)
        if nested is not None and key != "vbs":
            rows += _rows(nested, f"{key}.")
            continue
        if key == "vbs":
            continue  # its kinds follow, each with its own keys
        rows.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | "
                    f"{_limits(field)} | {_describe(field)} |")
    return rows


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " \\| ".join(_type(a) for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "").replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else ""
    if isinstance(field.default, BaseModel) or field.default in ({}, []):
        return ""
    named = [name for name, space in NAMED_SPACES.items() if field.default is space]
    if named:  # a policy space by its name, as a config gives it
        return f"`{named[0]}`"
    return f"`{field.default}`"


def _limits(field: FieldInfo) -> str:
    return ", ".join(f"{_LIMITS[type(m)][0]} {getattr(m, _LIMITS[type(m)][1])}"
                     for m in field.metadata if type(m) in _LIMITS)


def _describe(field: FieldInfo) -> str:
    return (field.description or "").replace("|", "\\|").replace("\n", " ")


def _doc(model: type) -> str:
    return " ".join((model.__doc__ or "").split()).replace("|", "\\|")


def api_page(package: str) -> str:
    """The Python API of one package, module by module, from the docstrings (mkdocstrings
    reads the source; nothing is imported)."""
    root = REPO / package
    modules = sorted(".".join(path.relative_to(REPO).with_suffix("").parts)
                     for path in root.rglob("*.py")
                     if path.name not in ("__init__.py", "__main__.py"))
    lines = [f"# `{package}`", "", f"Generated from the docstrings of `{package}/`.", ""]
    for module in modules:
        lines += [f"::: {module}", ""]
    return "\n".join(lines)


def write_pages(docs_dir: Path) -> list[Path]:
    """The generated pages and the repo's documents, written under `docs_dir`."""
    pages = {REFERENCE / "cli.md": cli_page(build_parser()),
             REFERENCE / "config.md": config_page(),
             **{REFERENCE / "api" / f"{package}.md": api_page(package) for package in API},
             **{PROJECT / page: (REPO / source).read_text()
                for page, source in DOCUMENTS.items()}}
    for path, text in pages.items():
        (docs_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (docs_dir / path).write_text(text)
    return [docs_dir / path for path in pages]


def on_pre_build(config: Any, **_: Any) -> None:
    """MkDocs hook: the pages exist before MkDocs collects the docs folder's files."""
    write_pages(Path(config["docs_dir"]))


if __name__ == "__main__":
    for path in write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(path)
