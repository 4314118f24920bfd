"""Load YAML into pydantic models, turning every problem into a `ConfigError` that names
the file, the dotted key and what is allowed, so an operator can fix it without a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hil.base.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors (a typo must not be silently ignored),
    and so are `.inf` and `.nan` (YAML reads them as floats, and no setting means them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def dotted(loc: tuple[Any, ...]) -> str:
    """('time', 'speedup') -> 'time.speedup'; list indices become [i]. The tag of a
    union's member (`kind=srsran`) is no key of the file and is left out."""
    out = ""
    for part in loc:
        if isinstance(part, str) and "=" in part:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def config_error_from(path: str, exc: ValidationError) -> ConfigError:
    """The first problem names its key; further ones are listed so one edit fixes them all."""
    problems = [(dotted(e["loc"]), e["msg"]) for e in exc.errors()]
    key, msg = problems[0]
    if len(problems) > 1:
        msg += "; also: " + "; ".join(f"{k}: {m}" for k, m in problems[1:])
    return ConfigError(path, key, msg)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; missing file, bad syntax and non-mapping roots are ConfigErrors."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found; check the path") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), "", f"not valid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "the top level must be a mapping of keys to values")
    return data


def validate(path: Path | str, model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(str(path), exc) from None


def load_yaml(path: Path, model: type[M]) -> M:
    """Read and validate a YAML file into ``model``."""
    return validate(path, model, read_yaml(path))
