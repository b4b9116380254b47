"""``ParquetStore``: the local, embedded results store (the demo's default sink).

Layout, readable with any Parquet tool (hive partitioning)::

    DIR/date=2026-11-24/site=demo/line=eaf-1/part-<first ms>-<seq>-<pid>.parquet

``date`` is the UTC day of the tick. Each write puts each (date, site, line) slice of
the batch in a new file, written to a hidden temporary name, fsynced and renamed into
place, so a reader or a crash never sees half a file. ``compact`` merges a
partition's files into one; ``prune`` removes days older than a retention.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from wattline.ingest.results import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import SinkError

_PART_SCHEMA = pa.schema([("date", pa.string()), ("site", pa.string()), ("line", pa.string())])
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _check_partition_value(value: str) -> str:
    # Site and line names are validated at the topic (contract section 1); this guards
    # the file system against anything else reaching here.
    if not value or value in (".", "..") or not set(value) <= _SAFE:
        raise SinkError(f"cannot store a partition named {value!r}", retryable=False)
    return value


def _utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(table: pa.Table, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


class ParquetStore:
    """Writes results batches as Parquet files under ``directory``."""

    name = "parquet"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._seq = itertools.count()

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.rglob(".*.tmp"):  # left by a crash mid-write
                stale.unlink()
        except OSError as exc:
            raise SinkError(f"cannot use {self.directory} as the Parquet store: {exc}",
                            retryable=False) from None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(INTENSITY_SCHEMA.names).cast(INTENSITY_SCHEMA)
        times = table.column("time_ms").to_numpy()
        dates = [_utc_date(int(ms)) for ms in times]
        keyed = table.append_column("date", pa.array(dates, pa.string()))
        groups = keyed.group_by(["date", "site", "line"]).aggregate([]).to_pylist()
        try:
            for group in groups:
                mask = pc.and_(
                    pc.and_(pc.equal(keyed["date"], group["date"]),
                            pc.equal(keyed["site"], group["site"])),
                    pc.equal(keyed["line"], group["line"]),
                )
                part = table.filter(mask)
                folder = self.partition_dir(group["date"], group["site"], group["line"])
                folder.mkdir(parents=True, exist_ok=True)
                first_ms = int(pc.min(part["time_ms"]).as_py())
                name = f"part-{first_ms:015d}-{next(self._seq):08d}-{os.getpid()}.parquet"
                _write_atomically(part, folder / name)
        except OSError as exc:
            # A full or read-only disk may recover; the pipeline retries with backoff.
            raise SinkError(f"cannot write to the Parquet store {self.directory}: {exc}",
                            retryable=True) from None

    def close(self) -> None:
        """Nothing stays open between writes."""

    def partition_dir(self, date: str, site: str, line: str) -> Path:
        return (self.directory / f"date={_check_partition_value(date)}"
                / f"site={_check_partition_value(site)}" / f"line={_check_partition_value(line)}")

    def compact(self, date: str) -> int:
        """Merge each partition of ``date`` into one file, sorted by time; files removed."""
        removed = 0
        day = self.directory / f"date={_check_partition_value(date)}"
        for folder in sorted(p for p in day.glob("site=*/line=*") if p.is_dir()):
            files = sorted(folder.glob("part-*.parquet"))
            if len(files) < 2:
                continue
            merged = pa.concat_tables(pq.read_table(f, schema=INTENSITY_SCHEMA) for f in files)
            merged = merged.sort_by([("time_ms", "ascending"), ("window", "ascending")])
            first_ms = int(pc.min(merged["time_ms"]).as_py())
            target = folder / f"part-{first_ms:015d}-compact-{time.time_ns()}.parquet"
            _write_atomically(merged, target)
            for f in files:
                f.unlink()
                removed += 1
            _fsync_dir(folder)
        return removed

    def prune(self, retention_days: int, now_ms: int | None = None) -> list[str]:
        """Delete whole days older than ``retention_days`` (UTC); the days removed."""
        now = datetime.fromtimestamp((now_ms or time.time() * 1000) / 1000, UTC)
        oldest_kept = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        removed = []
        for day in sorted(self.directory.glob("date=*")):
            date = day.name.removeprefix("date=")
            if date < oldest_kept:
                shutil.rmtree(day)
                removed.append(date)
        return removed


def read_store(
    directory: str | os.PathLike[str], *, site: str | None = None, line: str | None = None
) -> pa.Table:
    """Everything in a store (optionally one site or line), sorted by line, window, time."""
    path = Path(directory)
    if not any(path.glob("date=*")):
        return INTENSITY_SCHEMA.empty_table()
    dataset = ds.dataset(path, format="parquet", partitioning=ds.partitioning(
        _PART_SCHEMA, flavor="hive"), exclude_invalid_files=True)
    condition = None
    for name, value in (("site", site), ("line", line)):
        if value is not None:
            term = ds.field(name) == value
            condition = term if condition is None else condition & term
    table = dataset.to_table(columns=INTENSITY_SCHEMA.names, filter=condition)
    table = table.cast(INTENSITY_SCHEMA)
    table = table.sort_by([("site", "ascending"), ("line", "ascending"),
                           ("window", "ascending"), ("time_ms", "ascending")])
    return _drop_rewritten_points(table)


def _drop_rewritten_points(table: pa.Table) -> pa.Table:
    """One row per (site, line, window, time_ms) of a sorted table.

    A replay after a crash writes some points again; the contract makes a rewritten
    point carry the same values, so which copy is kept does not matter.
    """
    if table.num_rows < 2:
        return table
    same_as_next = None
    for name in ("site", "line", "window", "time_ms"):
        column = table[name].combine_chunks()
        equal = pc.equal(column.slice(0, len(column) - 1), column.slice(1))
        same_as_next = equal if same_as_next is None else pc.and_(same_as_next, equal)
    keep = pa.concat_arrays([pc.invert(same_as_next), pa.array([True])])
    return table.filter(keep)


def latest(directory: str | os.PathLike[str]) -> pa.Table:
    """The newest row per (site, line, window) in a store."""
    table = read_store(directory)
    if table.num_rows == 0:
        return table
    newest = table.group_by(["site", "line", "window"]).aggregate([("time_ms", "max")])
    keys = newest.rename_columns(["site", "line", "window", "time_ms"])
    return table.join(keys, ["site", "line", "window", "time_ms"], join_type="inner").sort_by(
        [("site", "ascending"), ("line", "ascending"), ("window", "ascending")])
