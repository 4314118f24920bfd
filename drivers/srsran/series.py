"""The project's srsRAN_4G patch series, and the stamp that ties an installed build to it.

`hil srsran build` installs the patched programs into a prefix (``bin/``, ``lib/``) and writes
`STAMP_FILE` there last; `hil check` reads it beside the binaries it finds and compares its
`series_sha256` with this checkout's, so a build of an older series is named as stale
instead of failing later in a way nobody can trace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PATCH_DIR = Path(__file__).resolve().parents[2] / "patches" / "srsRAN_4G"
UPSTREAM_URL = "https://github.com/srsran/srsRAN_4G.git"
UPSTREAM_TAG = "release_23_11"
UPSTREAM_COMMIT = "eea87b1d893ae58e0b08bc381730c502024ae71f"
"""What the series applies to (patches/srsRAN_4G/README.md)."""

DEFAULT_PREFIX = "~/.vbs-hil/srsran"
"""Where `hil srsran build` installs, on the host it runs on (`~`: that user's home)."""
STAMP_FILE = "vbs-hil-srsran.json"
"""In the install prefix, beside ``bin/`` and ``lib/``."""
PROGRAMS = ("srsepc", "srsenb", "srsue")
PATCHED = ("srsenb", "srsue")
"""The programs the series changes: they know ``[rtctl]``; srsEPC is upstream's."""


def patch_files(patch_dir: Path = PATCH_DIR) -> list[Path]:
    """The series in the order it applies (the files are numbered)."""
    return sorted(patch_dir.glob("*.patch"))


def series_sha256(patch_dir: Path = PATCH_DIR) -> str:
    """One hash over every patch's name and bytes, in order: any change to the series
    (an edit, a new patch, a renamed one) changes it."""
    digest = hashlib.sha256()
    for path in patch_files(patch_dir):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Stamp:
    """What an install was built from."""

    series_sha256: str
    upstream_commit: str
    patches: list[str]
    built_at: str
    radios: list[str] = field(default_factory=lambda: ["zmq"])

    @property
    def short(self) -> str:
        return self.series_sha256[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Stamp:
        """ValueError if it is not a stamp (the caller names the file)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a vbs-hil build stamp ({exc})") from None


def stale_reason(stamp: Stamp, patch_dir: Path = PATCH_DIR) -> str | None:
    """Why a build with `stamp` is not this checkout's series, or None if it is."""
    current = series_sha256(patch_dir)
    if stamp.series_sha256 == current:
        return None
    ours = [path.name for path in patch_files(patch_dir)]
    differ = sorted(set(ours) ^ set(stamp.patches))
    what = (f"patches {', '.join(differ)} differ in name" if differ
            else "a patch's content changed")
    return (f"stale build: made from patch series {stamp.short} on {stamp.built_at}, this "
            f"checkout's series is {current[:12]} ({what})")
