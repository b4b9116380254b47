"""The kinds of rows the Parquet store keeps, each in a folder tree of its own.

- ``INTENSITY``: the ticks (``INTENSITY_SCHEMA``), at the store's root, as ever;
- ``PERIODS``: shift, day and month rows (``energy_period``), under ``_periods/``;
- ``BATCHES``: the closed batches of batch lines (``energy_batch``), under ``_batches/``.

Under its root a kind has the same ``date=/site=/line=`` folders, file names, atomic
files, compaction and retention (``date`` is the UTC day of ``time_ms``: a tick, a
period's start, a batch's close). The folders of the other kinds start with ``_``, which
pyarrow, Spark and Hive skip, so a reader of the ticks at the root (docs/store.md) sees
only ticks, in a store with periods or in one from before.

Periods and batches are kept with the columns they were written with: a column added
to their schema later (carbon, say) is stored from then on, and older files read back
with it null. Each kind reads back one row per ``key``; of the copies of a key,
the one with ``prefer`` true wins (a final period over its provisional rewrites), then
the one written last (by the file name's write time), so a period rewritten as it
fills reads back as its newest state, and as its final row once there is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wattline.contract.schemas import INTENSITY_SCHEMA, conform
from wattline.ingest.durable.files import fsync_dir
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.store_files import (
    DAY_MS,
    file_name,
    last_of_runs,
    make_partition,
    segment,
    utc_date,
    write_parquet,
    written_ns,
)

__all__ = ["BATCHES", "INTENSITY", "KINDS", "PERIODS", "StoreTable"]

_WRITTEN = "__written_ns"
_PARALLEL_FROM = 32  # files
_READERS = 8


@dataclass(frozen=True)
class StoreTable:
    """One kind of row of the store: where it lives and which copy of a row wins."""

    kind: str
    folder: str
    """Below the store's folder; empty for the ticks, which live at its root."""
    key: tuple[str, ...]
    """The columns naming one row (a point); the files are sorted by them."""
    schema: pa.Schema | None = None
    """Columns every file holds (the ticks'); ``None``: the columns the rows come with."""
    prefer: str | None = None
    """A boolean column whose true copies of a key win over the false ones."""

    def root(self, directory: Path) -> Path:
        return directory / self.folder if self.folder else directory

    def partition_dir(self, directory: Path, date: str, site: str, line: str) -> Path:
        """The folder of one (UTC day, site, line) of this kind."""
        return self.root(directory).joinpath(*(segment(key, value) for key, value in
                                               (("date", date), ("site", site),
                                                ("line", line))))

    def days(self, directory: Path) -> list[str]:
        """The UTC days this kind has folders for, oldest first."""
        return sorted(p.name.removeprefix("date=") for p in self.root(directory).glob("date=*")
                      if p.is_dir())

    def conform(self, table: pa.Table) -> pa.Table:
        """The rows as stored: the fixed schema's columns (a nullable one the rows lack, as
        ticks written before the carbon columns do, as nulls), or the rows' own."""
        if self.schema is not None:
            return conform(table, self.schema)
        missing = [name for name in (*self.key, "site", "line") if name not in table.schema.names]
        if missing:
            raise SinkError(f"a {self.kind} batch has no column {missing[0]!r}; the batch is "
                            "refused", retryable=False)
        return table

    def write(self, directory: Path, table: pa.Table) -> None:
        """One new file per (UTC day, site, line) of the batch (OSError goes up)."""
        for date, site, line, part in self._slices(self.conform(table)):
            folder = make_partition(self.partition_dir(directory, date, site, line))
            write_parquet(part, folder / file_name(part))

    def read_files(self, files: list[Path]) -> pa.Table:
        """The rows of some of this kind's files, one per key (see the module doc), sorted
        by key; ``None`` for an empty list."""
        def read(path: Path) -> pa.Table:
            part = pq.ParquetFile(path).read()
            if self.schema is not None:
                part = conform(part, self.schema)
            return part.append_column(_WRITTEN, pa.array(
                np.full(part.num_rows, written_ns(path), dtype=np.int64)))

        if len(files) < _PARALLEL_FROM:
            parts = [read(path) for path in files]
        else:  # a year of days is thousands of small files: overlap their reads
            with ThreadPoolExecutor(_READERS) as pool:
                parts = list(pool.map(read, files))
        table = pa.concat_tables(parts, promote_options="default")
        order = [*self.key, *((self.prefer,) if self.prefer else ()), _WRITTEN]
        table = table.sort_by([(name, "ascending") for name in order])
        return _nullable_where_null(last_of_runs(table, self.key).drop_columns([_WRITTEN]))

    def files(self, directory: Path, *, first_date: str | None = None,
              last_date: str | None = None, site: str | None = None,
              line: str | None = None) -> list[Path]:
        """This kind's files of the days ``first_date..last_date`` (UTC, inclusive) and of
        one site or line's folders when given (a digested folder holds only its name)."""
        found = []
        for date in self.days(directory):
            if (first_date and date < first_date) or (last_date and date > last_date):
                continue
            day = self.root(directory) / segment("date", date)
            sites = [day / segment("site", site)] if site is not None else day.glob("site=*")
            for site_dir in sorted(sites):
                lines = ([site_dir / segment("line", line)] if line is not None
                         else site_dir.glob("line=*"))
                for line_dir in sorted(lines):
                    found.extend(sorted(line_dir.glob("part-*.parquet")))
        return found

    def compact(self, directory: Path, date: str) -> int:
        """Merge each site and line of one UTC day into one file; the files merged away."""
        removed = 0
        day = self.root(directory) / segment("date", date)
        for folder in sorted(p for p in day.glob("site=*/line=*") if p.is_dir()):
            files = sorted(folder.glob("part-*.parquet"))
            if len(files) < 2:
                continue
            merged = self.read_files(files)
            write_parquet(merged, folder / file_name(merged))
            for f in files:
                f.unlink()
            removed += len(files)
            fsync_dir(folder)
        return removed

    def _slices(self, table: pa.Table) -> Iterator[tuple[str, str, str, pa.Table]]:
        """The batch cut into (UTC day, site, line) slices, each sorted by key."""
        for name in ("site", "line"):
            if pc.any(pc.equal(pc.utf8_length(table[name]), 0)).as_py():
                raise SinkError(f"a row has an empty {name} name, which cannot be a partition "
                                "of the store; the batch is refused", retryable=False)
        days = np.floor_divide(table["time_ms"].to_numpy(), DAY_MS)
        keyed = table.append_column("__day", pa.array(days, pa.int64()))
        groups = keyed.group_by(["__day", "site", "line"]).aggregate([]).to_pylist()
        for group in sorted(groups, key=lambda g: (g["__day"], g["site"], g["line"])):
            mask = pc.and_(pc.and_(pc.equal(keyed["__day"], group["__day"]),
                                   pc.equal(keyed["site"], group["site"])),
                           pc.equal(keyed["line"], group["line"]))
            part = keyed.filter(mask).drop_columns(["__day"])
            yield (utc_date(group["__day"]), group["site"], group["line"],
                   part.sort_by([(name, "ascending") for name in self.key]))


def _nullable_where_null(table: pa.Table) -> pa.Table:
    """Fields that hold nulls (a column older files lack) declared nullable."""
    fields = [field.with_nullable(True) if not field.nullable and table[field.name].null_count
              else field for field in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


INTENSITY = StoreTable("intensity", "", ("site", "line", "window", "time_ms"),
                       schema=INTENSITY_SCHEMA)
PERIODS = StoreTable("periods", "_periods", ("site", "line", "period", "time_ms"),
                     prefer="final")
BATCHES = StoreTable("batches", "_batches", ("site", "line", "time_ms"))
KINDS = (INTENSITY, PERIODS, BATCHES)

