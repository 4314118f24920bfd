"""Files that readers see whole or not at all: the run directory's and the journal's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hil.base.errors import RecorderError


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` puts in a file, so readers see old or new, never half.

    The data goes to `<name>.tmp` and is fsynced before the rename; the directory is fsynced
    after it so the rename itself survives a power cut.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # only left if the write failed (a full disk, say)
        fsync_dir(path.parent)
    except OSError as exc:
        raise RecorderError(
            f"cannot write {path}: {exc.strerror or exc}; check free space and permissions"
        ) from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
