"""``ParquetStore``: the local, embedded results store (the demo's default sink).

Layout, readable with any Parquet tool (hive partitioning)::

    DIR/date=2024-11-24/site=demo/line=eaf-1/part-<first tick ms>-<written ns>-<random>.parquet

- ``date`` is the UTC day of the tick. A site or line name is its folder name as
  written, except that ``%``, ``/``, ``\\``, ``=``, control characters and the
  characters Windows refuses (``: * ? " < > |``) are percent-escaped, and so are a
  first ``~`` and a last ``.`` (``site=Plant A``, ``line=a%2Fb``): Arrow's ``uri``
  segment encoding reads that back. Every segment starts with ``date=``, ``site=``
  or ``line=``, so no name can climb out of the store, hide a folder or add one. A segment that
  would be over 255 bytes (64 four-byte characters) is named by a digest of the
  name instead (``site=~<32 hex digits>``).
- The exact names are the ``site`` and ``line`` columns of every file; ``read_store``
  takes them from there, not from the folder names, so digested folders and file
  systems that fold case or normalise Unicode cannot change a name read back.
- Each ``write`` puts each (date, site, line) slice of the batch in a new file,
  sorted by window and tick. A file is written under a hidden temporary name,
  fsynced and renamed into place (and its folder fsynced), so a reader or a crash
  never sees half a file. File names sort by first tick, then by write time, and
  a random part keeps them unique across processes and restarts.
- ``compact`` merges a day's files, per site and line, into one; ``prune`` removes
  days older than a retention. Both may run while the pipeline writes.
- ``read_store`` reads a store back as one results batch, one row per point even
  when a replay wrote a point twice; ``latest`` keeps the newest tick per line and
  window.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.durable.files import fsync_dir, private_dir, write_atomically
from wattline.ingest.sinks.base import SinkError

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# Only the day comes from the folders: site and line are read from the files' columns.
_PARTITIONING = ds.HivePartitioning(pa.schema([("date", pa.string())]),
                                    segment_encoding="uri")
_POINT_KEY = ("site", "line", "window", "time_ms")
_MAX_NAME_BYTES = 255  # a folder name's limit on common file systems
_TRASH_PREFIX = ".trash-"


class ParquetStore:
    """Writes results batches as Parquet files under ``directory``; see the module doc."""

    name = "parquet"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retention_days: int | None = None,
        housekeeping_every_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``retention_days``: whole UTC days older than this are deleted (None: keep all).

        Every ``housekeeping_every_s`` (and at ``open``) past days are compacted to one
        file per site and line, and the retention is applied.
        """
        self.directory = Path(directory)
        self.retention_days = retention_days
        self.housekeeping_every_s = housekeeping_every_s
        self._clock = clock
        self._last_housekeeping_s: float | None = None

    def open(self) -> None:
        """Create the store's folder and clear what a crash mid-write or mid-prune left."""
        try:
            private_dir(self.directory)
            for stale in self.directory.glob(f"{_TRASH_PREFIX}*"):
                shutil.rmtree(stale)
            for stale in self.directory.rglob(".*.tmp"):
                stale.unlink()
        except OSError as exc:
            raise SinkError(f"cannot use {self.directory} as the Parquet store: {exc}; "
                            "give a writable folder with --store", retryable=False) from None
        self.housekeeping()

    def housekeeping(self) -> tuple[int, list[str]]:
        """Compact every day before today (UTC) and apply the retention.

        Returns (files merged away, days removed). Failures are logged, never raised:
        housekeeping must not stop results from being written.
        """
        now_s = self._clock()
        self._last_housekeeping_s = now_s
        today = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%d")
        merged, removed = 0, []
        try:
            if self.retention_days is not None:
                removed = self.prune(self.retention_days, now_ms=int(now_s * 1000))
            for day in sorted(self.directory.glob("date=*")):
                date = day.name.removeprefix("date=")
                if day.is_dir() and date < today:
                    merged += self.compact(date)
        except OSError as exc:
            log.warning("housekeeping of the Parquet store %s failed: %s; it will be tried "
                        "again later", self.directory, exc)
        return merged, removed

    def _housekeeping_if_due(self) -> None:
        last = self._last_housekeeping_s
        if last is None or self._clock() - last >= self.housekeeping_every_s:
            self.housekeeping()

    def write(self, table: pa.Table) -> None:
        """Write one batch as one new file per (UTC day, site, line), or raise ``SinkError``."""
        if table.num_rows == 0:
            return
        table = table.select(INTENSITY_SCHEMA.names).cast(INTENSITY_SCHEMA)
        for name in ("site", "line"):
            if pc.any(pc.equal(pc.utf8_length(table[name]), 0)).as_py():
                raise SinkError(f"a row has an empty {name} name, which cannot be a partition "
                                "of the store; the batch is refused", retryable=False)
        try:
            for date, site, line, part in _day_site_line_slices(table):
                folder = self._make_partition(date, site, line)
                _write_parquet(part, folder / _file_name(part))
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise SinkError(f"a site or line name is too long for a folder name of the "
                                f"store {self.directory}: {exc}", retryable=False) from None
            # A full or read-only disk may recover; the pipeline retries with backoff.
            raise SinkError(f"cannot write to the Parquet store {self.directory}: {exc}; "
                            "free some space or fix the folder's permissions",
                            retryable=True) from None
        self._housekeeping_if_due()

    def close(self) -> None:
        """Nothing stays open between writes."""

    def read(self, *, site: str | None = None, line: str | None = None) -> pa.Table:
        """Everything in this store (optionally one site or line); see ``read_store``."""
        return read_store(self.directory, site=site, line=line)

    def latest(self) -> pa.Table:
        """The newest row per (site, line, window); see ``latest``."""
        return latest(self.directory)

    def partition_dir(self, date: str, site: str, line: str) -> Path:
        """The folder of one (UTC day, site, line)."""
        return self.directory.joinpath(*(_segment(key, value) for key, value in
                                         (("date", date), ("site", site), ("line", line))))

    def compact(self, date: str) -> int:
        """Merge each site and line of one UTC day (``YYYY-MM-DD``) into one file.

        Points written twice are kept once. Returns how many files were merged away;
        a crash halfway leaves both the merged file and some originals, which reads
        (and the next compaction) take as one.
        """
        removed = 0
        day = self.directory / _segment("date", date)
        for folder in sorted(p for p in day.glob("site=*/line=*") if p.is_dir()):
            files = sorted(folder.glob("part-*.parquet"))
            if len(files) < 2:
                continue
            merged = pa.concat_tables(
                pq.ParquetFile(f).read().select(INTENSITY_SCHEMA.names).cast(INTENSITY_SCHEMA)
                for f in files)
            merged = _one_row_per_point(_sorted(merged))
            _write_parquet(merged, folder / _file_name(merged))
            for f in files:
                f.unlink()
            removed += len(files)
            fsync_dir(folder)
        return removed

    def prune(self, retention_days: int, now_ms: int | None = None) -> list[str]:
        """Delete whole UTC days older than ``retention_days`` before ``now_ms``.

        A day is first renamed out of sight, so a reader sees it whole or not at
        all. Returns the days removed, oldest first.
        """
        now_s = time.time() if now_ms is None else now_ms / 1000
        now = datetime.fromtimestamp(now_s, UTC)
        oldest_kept = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        removed = []
        for day in sorted(self.directory.glob("date=*")):
            date = day.name.removeprefix("date=")
            if day.is_dir() and date < oldest_kept:
                trash = day.with_name(f"{_TRASH_PREFIX}{day.name}-{secrets.token_hex(4)}")
                os.replace(day, trash)
                shutil.rmtree(trash)
                removed.append(date)
        if removed:
            fsync_dir(self.directory)
        return removed

    def _make_partition(self, date: str, site: str, line: str) -> Path:
        """The partition's folder, created if new (and its parents fsynced)."""
        folder = self.partition_dir(date, site, line)
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


def read_store(
    directory: str | os.PathLike[str], *, site: str | None = None, line: str | None = None
) -> pa.Table:
    """Everything in a store (optionally one site or line) as one results batch.

    Columns and types are ``INTENSITY_SCHEMA``'s; rows are sorted by site, line,
    window and tick, one per point: a replay after a crash writes some points
    again, and the contract makes a rewritten point carry the same values, so
    which copy is kept does not matter.
    """
    path = Path(directory)
    if not any(path.glob("date=*")):
        return INTENSITY_SCHEMA.empty_table()
    # Hidden names (temporary files, days being pruned) are ignored by discovery.
    dataset = ds.dataset(path, format="parquet", partitioning=_PARTITIONING)
    condition = None
    for name, value in (("site", site), ("line", line)):
        if value is not None:
            term = ds.field(name) == value
            condition = term if condition is None else condition & term
    table = dataset.to_table(columns=INTENSITY_SCHEMA.names, filter=condition)
    return _one_row_per_point(_sorted(table.cast(INTENSITY_SCHEMA)))


def latest(directory: str | os.PathLike[str]) -> pa.Table:
    """The newest row (latest tick) per (site, line, window) in a store."""
    return _last_of_runs(read_store(directory), ("site", "line", "window"))


_ESCAPED = frozenset('%/\\=:*?"<>|') | {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


def _escape(value: str) -> str:
    """``value`` with the characters a folder name must not hold percent-escaped."""
    text = "".join(quote(c, safe="") if c in _ESCAPED else c for c in value)
    if text.startswith("~"):  # kept for digests
        text = "%7E" + text[1:]
    return text[:-1] + "%2E" if text.endswith(".") else text


def _segment(key: str, value: str) -> str:
    """One folder name, ``key=<escaped value>``, or ``key=~<digest>`` when too long."""
    segment = f"{key}={_escape(value)}"
    if len(segment.encode("utf-8", "surrogatepass")) <= _MAX_NAME_BYTES:
        return segment
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{key}=~{digest.hexdigest()}"


def _utc_date(day: int) -> str:
    return datetime.fromtimestamp(day * (DAY_MS // 1000), UTC).strftime("%Y-%m-%d")


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in _POINT_KEY])


def _day_site_line_slices(table: pa.Table) -> list[tuple[str, str, str, pa.Table]]:
    """The batch cut into (UTC day, site, line) slices, each sorted by window and tick."""
    days = np.floor_divide(table["time_ms"].to_numpy(), DAY_MS)
    keyed = table.append_column("day", pa.array(days, pa.int64()))
    groups = keyed.group_by(["day", "site", "line"]).aggregate([]).to_pylist()
    slices = []
    for group in sorted(groups, key=lambda g: (g["day"], g["site"], g["line"])):
        mask = pc.and_(pc.and_(pc.equal(keyed["day"], group["day"]),
                               pc.equal(keyed["site"], group["site"])),
                       pc.equal(keyed["line"], group["line"]))
        part = _sorted(keyed.filter(mask).drop_columns(["day"]))
        slices.append((_utc_date(group["day"]), group["site"], group["line"], part))
    return slices


def _last_of_runs(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
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


def _one_row_per_point(table: pa.Table) -> pa.Table:
    return _last_of_runs(table, _POINT_KEY)


def _file_name(part: pa.Table) -> str:
    first_ms = int(pc.min(part["time_ms"]).as_py())
    return f"part-{first_ms:015d}-{time.time_ns():019d}-{secrets.token_hex(4)}.parquet"


def _write_parquet(table: pa.Table, target: Path) -> None:
    write_atomically(target, lambda f: pq.write_table(table, f, compression="zstd"))
