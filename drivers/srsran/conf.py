"""Render srsRAN's configuration files from the project's templates.

The templates (`testbed_configs/srsran/*.conf`, `user_db.csv`) are srsRAN's own formats
with `${name}` placeholders (`string.Template`: srsRAN's libconfig files use braces, so
`str.format` would not do). Everything a testbed varies (radio, serials, gains, cell width,
channel emulator, where each file lives on its host) is a value computed here from the
validated config, so a template never holds a decision and a missing or misspelled
placeholder is an error naming the file and the placeholder.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from hil.base.errors import ConfigError

TEMPLATES = {
    "epc": ("epc.conf", "user_db.csv"),
    "enb": ("enb.conf", "rr.conf", "sib.conf", "rb.conf"),
    "ue": ("ue.conf",),
}
"""The files each program reads, by program."""

ZMQ_BASE_SRATE = "23.04e6"
"""Sample rate both ZMQ ends must agree on (50 PRB needs 15.36e6; 23.04e6 covers 100)."""


@dataclass(frozen=True)
class TestUe:
    """The test SIM srsUE emulates and srsEPC's HSS knows (3GPP test PLMN 001/01, Milenage
    test keys); a lab with real SIMs edits user_db.csv and ue.conf."""

    imsi: str = "001010123456789"
    key: str = "00112233445566778899aabbccddeeff"
    opc: str = "63bfa50ee6523365ff14c1f45f88737d"
    imei: str = "353490069873319"


def render(template_dir: Path, name: str, values: dict[str, object]) -> str:
    """One template with `values` filled in; ConfigError names the file and the gap."""
    path = template_dir / name
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read the srsRAN template: {exc.strerror}; "
                          "vbs.srsran.templates must name the folder holding "
                          f"{', '.join(n for names in TEMPLATES.values() for n in names)}"
                          ) from exc
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ConfigError(path, None, f"placeholder ${{{exc.args[0]}}} has no value; the "
                          f"values are: {', '.join(sorted(values))}") from exc
    except ValueError as exc:
        raise ConfigError(path, None, f"bad placeholder: {exc}") from exc


def render_program(template_dir: Path, program: str, values: dict[str, object]) -> dict[str, str]:
    """All files of one program (`epc`, `enb` or `ue`), by file name."""
    return {name: render(template_dir, name, values) for name in TEMPLATES[program]}
