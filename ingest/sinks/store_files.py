"""The Parquet store's files and folders: names a folder can hold, file names, atomic writes.

Shared by every kind of row the store keeps (``store_tables``); see
``wattline.ingest.sinks.parquet_store`` for the layout they make.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wattline.ingest.durable.files import fsync_dir, private_dir, write_atomically

__all__ = ["DAY_MS", "TRASH_PREFIX", "file_name", "last_of_runs", "make_partition",
           "segment", "utc_date", "write_parquet", "written_ns"]

DAY_MS = 86_400_000
TRASH_PREFIX = ".trash-"
_MAX_NAME_BYTES = 255  # a folder name's limit on common file systems
_ESCAPED = frozenset('%/\\=:*?"<>|') | {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}
_FILE_NAME = re.compile(r"part-(\d+)-(\d+)-[0-9a-f]+\.parquet")


def _escape(value: str) -> str:
    """``value`` with the characters a folder name must not hold percent-escaped."""
    text = "".join(quote(c, safe="") if c in _ESCAPED else c for c in value)
    if text.startswith("~"):  # kept for digests
        text = "%7E" + text[1:]
    return text[:-1] + "%2E" if text.endswith(".") else text


def segment(key: str, value: str) -> str:
    """One folder name, ``key=<escaped value>``, or ``key=~<digest>`` when too long."""
    name = f"{key}={_escape(value)}"
    if len(name.encode("utf-8", "surrogatepass")) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{key}=~{digest.hexdigest()}"


def utc_date(day: int) -> str:
    """``YYYY-MM-DD`` of a day number since the epoch (UTC)."""
    return datetime.fromtimestamp(day * (DAY_MS // 1000), UTC).strftime("%Y-%m-%d")


def file_name(part: pa.Table) -> str:
    """``part-<first time_ms, 15 digits>-<now in ns, 19 digits>-<8 random hex>.parquet``."""
    first_ms = int(pc.min(part["time_ms"]).as_py())
    return f"part-{first_ms:015d}-{time.time_ns():019d}-{secrets.token_hex(4)}.parquet"


def written_ns(path: Path) -> int:
    """When a file of the store was written (its name's second number); 0 for a name of
    another form, which then counts as the oldest."""
    match = _FILE_NAME.fullmatch(path.name)
    return int(match.group(2)) if match else 0


def write_parquet(table: pa.Table, target: Path) -> None:
    """``table`` as one zstd Parquet file, whole or not at all (atomic rename, fsynced)."""
    write_atomically(target, lambda f: pq.write_table(table, f, compression="zstd"))


def make_partition(folder: Path) -> Path:
    """A partition's folder, created if new (and its parents fsynced)."""
    if not folder.is_dir():
        created = []
        parent = folder
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        private_dir(folder)
        for path in created:
            fsync_dir(path.parent)
    return folder


def last_of_runs(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The last row of each run of equal ``key`` values in a sorted table."""
    if table.num_rows < 2:
        return table
    same_as_next = None
    for name in key:
        column = table[name].combine_chunks()
        equal = pc.equal(column.slice(0, len(column) - 1), column.slice(1))
        same_as_next = equal if same_as_next is None else pc.and_(same_as_next, equal)
    keep = pa.concat_arrays([pc.invert(same_as_next), pa.array([True])])
    return table.filter(keep)
