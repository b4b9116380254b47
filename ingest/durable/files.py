"""Private, durable files: what the daemon writes is readable by its own user only, and
a file appears whole under its name, or not at all.

Every file and folder the daemon creates (the state folder, the write-ahead log of raw
payloads, checkpoints, the spool, the Parquet store and the dead letters) goes through
``private_dir`` and ``private_file`` (directly, or through ``write_atomically``):
folders are made ``0700`` and files ``0600`` whatever the process's umask, since the
mode is set again with ``chmod`` after creation. A folder that already existed keeps
the mode its owner gave it (a store shared with a reader group stays shared); files are
always made private, also an existing one the daemon opens again for append.

Used by the Parquet store, the kernel checkpoints, the write-ahead log, the spool and
the dead letters.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = ["DIR_MODE", "FILE_MODE", "fsync_dir", "private_dir", "private_file",
           "write_arrow_atomically", "write_atomically"]

FILE_MODE = 0o600
"""Files the daemon creates: read and write for its own user only."""

DIR_MODE = 0o700
"""Folders the daemon creates: its own user only."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` and any missing parents, each with mode ``DIR_MODE``.

    Folders that already exist are left as they are. Returns ``path`` as a ``Path``.
    """
    folder = Path(path)
    missing: list[Path] = []
    parent = folder
    while not parent.is_dir():
        missing.append(parent)
        if parent.parent == parent:
            break
        parent = parent.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not created.is_dir():
                raise
            continue  # made meanwhile by another thread or process: not ours to change
        os.chmod(created, DIR_MODE)  # mkdir's mode is cut by the umask
    return folder


def private_file(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT | O_CLOEXEC)`` with mode ``FILE_MODE``; the descriptor.

    The mode is also set on a file that existed (one written before files were private);
    a file of another user, which the daemon may not chmod, keeps its mode.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a hidden temporary file beside ``target``, fsync, rename into place.

    The file is private (``FILE_MODE``). A failure removes the temporary file and
    re-raises.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        fd = private_file(tmp, os.O_WRONLY | os.O_TRUNC)
        with open(fd, "wb") as f:
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
