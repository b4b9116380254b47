"""Durable file writes: a file appears whole under its name, or not at all.

Used by the Parquet store, the kernel checkpoints, the spool and the dead letters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc


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


def write_arrow_atomically(target: Path, table: pa.Table) -> None:
    """``table`` as an Arrow IPC file at ``target``, written as ``write_atomically`` does."""

    def write(f: BinaryIO) -> None:
        with ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)

    write_atomically(target, write)
