"""Durable file writes: a file appears whole under its name, or not at all.

Used by the Parquet store and the kernel checkpoints. (``wattline.kernels.save_state``
keeps its own copy of the pattern: the kernels package imports nothing from ingest.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a hidden temporary file beside ``target``, fsync, rename into place.

    A failure removes the temporary file and re-raises.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
