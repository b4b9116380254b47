"""``ParquetStore``: the local, embedded results store (the demo's default sink).

Layout, readable with any Parquet tool (hive partitioning)::

    DIR/date=2024-11-24/site=demo/line=eaf-1/part-<first tick ms>-<written ns>-<random>.parquet
    DIR/_periods/date=2024-11-23/site=demo/line=eaf-1/part-....parquet   shift, day, month rows
    DIR/_batches/date=2024-11-24/site=demo/line=eaf-1/part-....parquet   closed batches

- The ticks live at the root; period rows (``write_periods``) and batches
  (``write_batches``) in folder trees of their own (``store_tables``), with the same
  rules below. ``date`` is the UTC day of ``time_ms`` (a tick, a period's start, a
  batch's close). A site or line name is its folder name as
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
  window. ``read_periods`` and ``read_batches`` read the other kinds, one row per
  period (its final row once written) and per batch.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.durable.files import fsync_dir, private_dir
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.store_files import TRASH_PREFIX, last_of_runs, segment
from wattline.ingest.sinks.store_tables import BATCHES, INTENSITY, KINDS, PERIODS, StoreTable

__all__ = ["ParquetStore", "latest", "read_batches", "read_periods", "read_store"]

log = logging.getLogger(__name__)

# Only the day comes from the folders: site and line are read from the files' columns.
_PARTITIONING = ds.HivePartitioning(pa.schema([("date", pa.string())]),
                                    segment_encoding="uri")
_POINT_KEY = INTENSITY.key
_STORED_SCHEMA = INTENSITY_SCHEMA.append(pa.field("date", pa.string()))


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
            for kind in KINDS:
                for stale in kind.root(self.directory).glob(f"{TRASH_PREFIX}*"):
                    shutil.rmtree(stale)
            for stale in self.directory.rglob(".*.tmp"):
                stale.unlink()
        except OSError as exc:
            raise SinkError(f"cannot use {self.directory} as the Parquet store: {exc}; "
                            "give a writable folder with --store", retryable=False) from None
        self.housekeeping()

    def housekeeping(self) -> tuple[int, list[str]]:
        """Compact every day before today (UTC) and apply the retention, for every kind
        of row.

        Returns (files merged away, days removed, each once). Failures are logged, never
        raised: housekeeping must not stop results from being written.
        """
        now_s = self._clock()
        self._last_housekeeping_s = now_s
        today = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%d")
        merged, removed = 0, set()
        try:
            if self.retention_days is not None:
                removed = set(self.prune(self.retention_days, now_ms=int(now_s * 1000)))
            for kind in KINDS:
                for date in kind.days(self.directory):
                    if date < today:
                        merged += kind.compact(self.directory, date)
        except OSError as exc:
            log.warning("housekeeping of the Parquet store %s failed: %s; it will be tried "
                        "again later", self.directory, exc)
        return merged, sorted(removed)

    def _housekeeping_if_due(self) -> None:
        last = self._last_housekeeping_s
        if last is None or self._clock() - last >= self.housekeeping_every_s:
            self.housekeeping()

    def write(self, table: pa.Table) -> None:
        """Write one batch as one new file per (UTC day, site, line), or raise ``SinkError``."""
        self._write(INTENSITY, table)

    def write_periods(self, table: pa.Table) -> None:
        """Write shift, day and month rows (``PERIOD_SCHEMA``, with whatever columns it has
        now), like ``write``."""
        self._write(PERIODS, table)

    def write_batches(self, table: pa.Table) -> None:
        """Write closed batches (``BATCH_SCHEMA``), like ``write``."""
        self._write(BATCHES, table)

    def _write(self, kind: StoreTable, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        try:
            kind.write(self.directory, table)
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
        """The folder of one (UTC day, site, line) of the ticks."""
        return INTENSITY.partition_dir(self.directory, date, site, line)

    def compact(self, date: str) -> int:
        """Merge each site and line of one UTC day (``YYYY-MM-DD``) into one file, for
        every kind of row.

        Points written twice are kept once (for periods, the copy that reads back).
        Returns how many files were merged away; a crash halfway leaves both the merged
        file and some originals, which reads (and the next compaction) take as one.
        """
        return sum(kind.compact(self.directory, date) for kind in KINDS)

    def prune(self, retention_days: int, now_ms: int | None = None) -> list[str]:
        """Delete whole UTC days older than ``retention_days`` before ``now_ms``, of every
        kind of row.

        A day is first renamed out of sight, so a reader sees it whole or not at
        all. Returns the days removed, oldest first.
        """
        now_s = time.time() if now_ms is None else now_ms / 1000
        now = datetime.fromtimestamp(now_s, UTC)
        oldest_kept = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        removed: set[str] = set()
        for kind in KINDS:
            root = kind.root(self.directory)
            gone = []
            for date in kind.days(self.directory):
                if date < oldest_kept:
                    day = root / segment("date", date)
                    trash = day.with_name(f"{TRASH_PREFIX}{day.name}-{os.urandom(4).hex()}")
                    os.replace(day, trash)
                    shutil.rmtree(trash)
                    gone.append(date)
            if gone:
                fsync_dir(root)
                removed.update(gone)
        return sorted(removed)


def read_store(
    directory: str | os.PathLike[str], *, site: str | None = None, line: str | None = None
) -> pa.Table:
    """Everything in a store (optionally one site or line) as one results batch.

    Columns and types are ``INTENSITY_SCHEMA``'s; rows are sorted by site, line,
    window and tick, one per point: a replay after a crash writes some points
    again, and the contract makes a rewritten point carry the same values, so
    which copy is kept does not matter. Files written before a column existed (the
    carbon columns) read back with nulls in it.
    """
    path = Path(directory)
    if not any(path.glob("date=*")):
        return INTENSITY_SCHEMA.empty_table()
    # Hidden names (temporary files, days being pruned) and the other kinds' ``_`` folders
    # are ignored by discovery.
    # The schema is given, not inferred from some file: a column that older files lack
    # reads back as nulls there.
    dataset = ds.dataset(path, format="parquet", partitioning=_PARTITIONING,
                         schema=_STORED_SCHEMA)
    condition = None
    for name, value in (("site", site), ("line", line)):
        if value is not None:
            term = ds.field(name) == value
            condition = term if condition is None else condition & term
    table = dataset.to_table(columns=INTENSITY_SCHEMA.names, filter=condition)
    return _one_row_per_point(_sorted(table.cast(INTENSITY_SCHEMA)))


def latest(directory: str | os.PathLike[str]) -> pa.Table:
    """The newest row (latest tick) per (site, line, window) in a store."""
    return last_of_runs(read_store(directory), ("site", "line", "window"))


def read_periods(
    directory: str | os.PathLike[str], *, site: str | None = None, line: str | None = None,
    first_date: str | None = None, last_date: str | None = None,
) -> pa.Table | None:
    """The period rows of a store, one per (site, line, period, start): its final row
    where one was written, else its newest provisional one; sorted by that key.

    ``first_date``/``last_date`` (UTC ``YYYY-MM-DD``, inclusive) bound the periods' start
    days. Columns are those the rows were written with (older files' missing columns
    null); ``None`` when the store holds no period row there.
    """
    return _read_kind(PERIODS, directory, site, line, first_date, last_date)


def read_batches(
    directory: str | os.PathLike[str], *, site: str | None = None, line: str | None = None,
    first_date: str | None = None, last_date: str | None = None,
) -> pa.Table | None:
    """The closed batches of a store, one per (site, line, close), sorted by that key;
    as ``read_periods`` (the days bound the closes)."""
    return _read_kind(BATCHES, directory, site, line, first_date, last_date)


def _read_kind(kind: StoreTable, directory: str | os.PathLike[str], site: str | None,
               line: str | None, first_date: str | None, last_date: str | None) -> pa.Table | None:
    files = kind.files(Path(directory), first_date=first_date, last_date=last_date,
                       site=site, line=line)
    if not files:
        return None
    table = kind.read_files(files)
    for name, value in (("site", site), ("line", line)):
        if value is not None:  # a folder that folds case may hold a second name
            table = table.filter(pc.equal(table[name], value))
    return table


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in _POINT_KEY])


def _one_row_per_point(table: pa.Table) -> pa.Table:
    return last_of_runs(table, _POINT_KEY)
