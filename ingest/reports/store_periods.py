"""The periods and batches of a Parquet store, for reports, by the plant's calendar days.

A report asks for the plant's days ``first .. last`` (inclusive, in ``plant_timezone``)
as a ``PlantDays``, and gets Arrow tables:

- ``final_periods(store, "day", days)``: the final rows of one period kind whose start
  lies in those days, one per line and period (a period rewritten provisional and then
  final reads back as its final row);
- ``periods(...)``: the same with the open periods' newest provisional rows too;
- ``batches(store, days)``: the batches that closed in those days.

Columns come in the order of ``PERIOD_SCHEMA`` / ``BATCH_SCHEMA`` as they are now; a
column the rows were written without (a store from before it was added) is null, and
any column the store has beyond them follows. Rows are sorted by site, line and time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from wattline.contract.schemas import BATCH_SCHEMA
from wattline.ingest.calendar import zone
from wattline.ingest.periods_stage import PERIOD_SCHEMA
from wattline.ingest.sinks.parquet_store import read_batches, read_periods

__all__ = ["PERIOD_KINDS", "PlantDays", "batches", "final_periods", "periods"]

PERIOD_KINDS = ("shift", "day", "month")


@dataclass(frozen=True)
class PlantDays:
    """The plant's calendar days ``first`` to ``last`` (inclusive) in ``timezone``."""

    first: date
    last: date
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        zone(self.timezone)  # ValueError naming an unknown zone
        if self.last < self.first:
            raise ValueError(f"the last day {self.last} is before the first {self.first}")

    def midnight_ms(self, day: date) -> int:
        """The instant the plant's day ``day`` starts (local midnight), in epoch ms."""
        local = datetime(day.year, day.month, day.day, tzinfo=zone(self.timezone))
        return int(local.astimezone(UTC).timestamp() * 1000)

    @property
    def start_ms(self) -> int:
        return self.midnight_ms(self.first)

    @property
    def end_ms(self) -> int:
        """The end (exclusive): the midnight after the last day."""
        return self.midnight_ms(self.last + timedelta(days=1))

    def __iter__(self) -> Iterator[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)

    def __len__(self) -> int:
        return (self.last - self.first).days + 1

    def day_of(self, ms: int) -> date:
        """The plant's calendar day an instant falls on."""
        return datetime.fromtimestamp(ms / 1000, zone(self.timezone)).date()

    def utc_dates(self) -> tuple[str, str]:
        """The store's UTC ``date=`` folders that can hold these days' rows."""
        def utc(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
        return utc(self.start_ms), utc(self.end_ms - 1)


def periods(store: str | os.PathLike[str], kind: str, days: PlantDays, *,
            site: str | None = None, line: str | None = None,
            final_only: bool = False) -> pa.Table:
    """The rows of period kind ``kind`` (``shift``, ``day``, ``month``) that start in
    ``days``: one per line and period, its final row where there is one, else its newest
    provisional row (none of those with ``final_only``)."""
    if kind not in PERIOD_KINDS:
        raise ValueError(f"no period kind {kind!r}: use one of {', '.join(PERIOD_KINDS)}")
    first, last = days.utc_dates()
    table = read_periods(store, site=site, line=line, first_date=first, last_date=last)
    if table is None:
        return PERIOD_SCHEMA.empty_table()
    keep = pc.and_(pc.equal(table["period"], kind),
                   pc.and_(pc.greater_equal(table["time_ms"], days.start_ms),
                           pc.less(table["time_ms"], days.end_ms)))
    if final_only:
        keep = pc.and_(keep, pc.fill_null(table["final"], False))
    return _conform(table.filter(keep), PERIOD_SCHEMA)


def final_periods(store: str | os.PathLike[str], kind: str, days: PlantDays, *,
                  site: str | None = None, line: str | None = None) -> pa.Table:
    """The final rows of period kind ``kind`` that start in ``days``; see ``periods``."""
    return periods(store, kind, days, site=site, line=line, final_only=True)


def batches(store: str | os.PathLike[str], days: PlantDays, *, site: str | None = None,
            line: str | None = None) -> pa.Table:
    """The batches that closed in ``days``, one per line and close."""
    first, last = days.utc_dates()
    table = read_batches(store, site=site, line=line, first_date=first, last_date=last)
    if table is None:
        return BATCH_SCHEMA.empty_table()
    keep = pc.and_(pc.greater_equal(table["time_ms"], days.start_ms),
                   pc.less(table["time_ms"], days.end_ms))
    return _conform(table.filter(keep), BATCH_SCHEMA)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``schema``'s columns first, in its order and types (null where the store has
    none), then the store's other columns; sorted by site, line and time."""
    columns, fields = [], []
    for field in schema:
        if field.name in table.schema.names:
            column = table[field.name].cast(field.type)
        else:
            column = pa.nulls(table.num_rows, field.type)
        columns.append(column)
        fields.append(field.with_nullable(field.nullable and column.null_count == 0))
    for field in table.schema:
        if field.name not in schema.names:
            columns.append(table[field.name])
            fields.append(field)
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    return out.sort_by([("site", "ascending"), ("line", "ascending"), ("time_ms", "ascending")])
