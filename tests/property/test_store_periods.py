"""Period rows and batches in the Parquet store: their own folders, one row per period
(final over provisional, newest over older), columns as written, and the reading module
of the reports by plant days."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.contract.schemas import BATCH_SCHEMA, CARBON_FIELDS
from wattline.ingest.periods_stage import PERIOD_SCHEMA
from wattline.ingest.reports.store_periods import PlantDays, batches, final_periods, periods
from wattline.ingest.sinks.parquet_store import (
    ParquetStore,
    read_batches,
    read_periods,
    read_store,
)

DAY_MS = 86_400_000
BERLIN_DAY = 1_768_431_600_000  # 2026-01-15 00:00 Europe/Berlin (23:00 UTC the day before)


def _period(start: int, kwh: float, *, final: bool, kind: str = "day", line: str = "eaf-1",
            site: str = "demo") -> dict:
    return {"site": site, "line": line, "period": kind, "time_ms": start,
            "energy_kgce": kwh * 0.1229, "electricity_kwh": kwh, "production_t": kwh / 400,
            "kgce_per_t": 49.16, "kwh_per_t": 400.0, "co2_direct_t": 0.0,
            "co2_indirect_t": kwh * 0.0005306, "co2_per_t": 0.21224, "final": final,
            "late_readings": 0, "grade": None, "gap_to_benchmark": None}


def _periods(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=PERIOD_SCHEMA)


def _batch(close: int, t: float, name: str = "H1", line: str = "eaf-1") -> dict:
    return {"site": "demo", "line": line, "batch": name, "time_ms": close,
            "energy_kgce": 49.16 * t, "electricity_kwh": 400.0 * t, "production_t": t,
            "kgce_per_t": 49.16, "kwh_per_t": 400.0, "duration_s": 3600.0,
            "co2_direct_t": 0.0, "co2_indirect_t": 400.0 * t * 0.0005306, "co2_per_t": 0.21224}


@pytest.fixture()
def store(tmp_path: Path) -> ParquetStore:
    s = ParquetStore(tmp_path / "store")
    s.open()
    return s


def _files(store: ParquetStore) -> list[str]:
    return sorted(str(p.relative_to(store.directory)) for p in store.directory.rglob("*.parquet"))


def test_periods_and_batches_get_folders_of_their_own_by_the_utc_day_of_their_time(
        store: ParquetStore) -> None:
    store.write_periods(_periods(_period(BERLIN_DAY, 100.0, final=False)))
    store.write_batches(pa.Table.from_pylist([_batch(BERLIN_DAY + 3_600_000, 2.0)],
                                             schema=BATCH_SCHEMA))
    folders = [f.rsplit("/", 1)[0] for f in _files(store)]
    assert folders == ["_batches/date=2026-01-15/site=demo/line=eaf-1",
                       "_periods/date=2026-01-14/site=demo/line=eaf-1"]


def test_a_period_rewritten_provisional_then_final_reads_back_as_its_final_row_once(
        store: ParquetStore) -> None:
    for kwh in (100.0, 250.0):
        store.write_periods(_periods(_period(BERLIN_DAY, kwh, final=False)))
    final = _period(BERLIN_DAY, 300.0, final=True)
    store.write_periods(_periods(final))
    back = read_periods(store.directory)
    assert back is not None and back.to_pylist() == [final]


def test_an_open_period_reads_back_as_its_newest_provisional_row(store: ParquetStore) -> None:
    for kwh in (100.0, 250.0, 50.0):  # newest, not largest
        store.write_periods(_periods(_period(BERLIN_DAY, kwh, final=False)))
    back = read_periods(store.directory)
    assert back is not None and back["electricity_kwh"].to_pylist() == [50.0]


def test_the_final_row_wins_over_a_provisional_one_written_after_it(store: ParquetStore) -> None:
    store.write_periods(_periods(_period(BERLIN_DAY, 300.0, final=True)))
    store.write_periods(_periods(_period(BERLIN_DAY, 10.0, final=False)))
    back = read_periods(store.directory)
    assert back is not None and back["electricity_kwh"].to_pylist() == [300.0]


def test_the_ticks_at_the_root_are_read_alone_in_a_store_with_periods_and_batches(
        store: ParquetStore) -> None:
    store.write_periods(_periods(_period(BERLIN_DAY, 100.0, final=True)))
    store.write_batches(pa.Table.from_pylist([_batch(BERLIN_DAY, 2.0)], schema=BATCH_SCHEMA))
    assert read_store(store.directory).num_rows == 0
    # Any reader of Hive partitions at the root, as the docs show, skips the ``_`` folders.
    assert ds.dataset(store.directory, format="parquet", partitioning="hive").files == []


def test_a_column_added_to_the_period_rows_is_stored_and_older_rows_read_it_as_null(
        store: ParquetStore) -> None:
    # Rows as written before the carbon columns existed, then rows with them.
    old = _periods(_period(BERLIN_DAY - DAY_MS, 100.0, final=True))
    store.write_periods(old.drop_columns(list(CARBON_FIELDS)))
    newer = dict(_period(BERLIN_DAY, 200.0, final=True), co2_direct_t=1.5)
    store.write_periods(_periods(newer))
    back = read_periods(store.directory)
    assert back is not None
    assert back["co2_direct_t"].to_pylist() == [None, 1.5]
    assert back.schema.field("co2_direct_t").nullable
    days = PlantDays(date(2026, 1, 14), date(2026, 1, 15), "Europe/Berlin")
    read = final_periods(store.directory, "day", days)
    assert read.schema.names[:len(PERIOD_SCHEMA)] == PERIOD_SCHEMA.names
    assert read["co2_direct_t"].to_pylist() == [None, 1.5]


def test_a_store_of_ticks_only_from_before_reads_as_no_periods_or_batches(
        store: ParquetStore) -> None:
    days = PlantDays(date(2026, 1, 1), date(2026, 1, 31))
    assert read_periods(store.directory) is None and read_batches(store.directory) is None
    assert final_periods(store.directory, "day", days).schema == PERIOD_SCHEMA
    assert batches(store.directory, days).schema == BATCH_SCHEMA


def test_compaction_keeps_the_row_each_period_reads_back_as(store: ParquetStore) -> None:
    store.write_periods(_periods(_period(BERLIN_DAY, 100.0, final=False),
                                 _period(BERLIN_DAY, 5.0, final=False, kind="shift")))
    store.write_periods(_periods(_period(BERLIN_DAY, 300.0, final=True)))
    store.write_periods(_periods(_period(BERLIN_DAY, 8.0, final=False, kind="shift")))
    before = read_periods(store.directory)
    assert store.compact("2026-01-14") == 3
    assert len(_files(store)) == 1
    assert read_periods(store.directory) == before
    store.write_periods(_periods(_period(BERLIN_DAY, 9.0, final=False, kind="shift")))
    back = read_periods(store.directory)
    assert back is not None and back.to_pylist()[1]["electricity_kwh"] == 9.0


def test_retention_removes_old_days_of_periods_and_batches_too(store: ParquetStore) -> None:
    store.write_periods(_periods(_period(BERLIN_DAY, 100.0, final=True)))
    store.write_batches(pa.Table.from_pylist([_batch(BERLIN_DAY + DAY_MS, 1.0)],
                                             schema=BATCH_SCHEMA))
    removed = store.prune(1, now_ms=BERLIN_DAY + 3 * DAY_MS)  # 2026-01-17 23:00 UTC
    assert removed == ["2026-01-14", "2026-01-15"]
    assert _files(store) == []


def test_a_replayed_batch_reads_back_once(store: ParquetStore) -> None:
    rows = pa.Table.from_pylist([_batch(BERLIN_DAY, 2.0), _batch(BERLIN_DAY + 60_000, 3.0,
                                                                "H2")], schema=BATCH_SCHEMA)
    store.write_batches(rows)
    store.write_batches(rows.slice(1))
    back = read_batches(store.directory)
    assert back is not None and back.to_pylist() == rows.to_pylist()


def test_reports_get_the_final_periods_of_the_plants_days_in_local_time(
        store: ParquetStore) -> None:
    rows = [_period(BERLIN_DAY + k * DAY_MS, 100.0 + k, final=True) for k in range(-1, 3)]
    rows.append(_period(BERLIN_DAY + 3 * DAY_MS, 7.0, final=False))  # still open
    rows.append(_period(BERLIN_DAY + 8 * 3_600_000, 9.0, final=True, kind="shift"))
    store.write_periods(_periods(*rows))
    days = PlantDays(date(2026, 1, 15), date(2026, 1, 18), "Europe/Berlin")
    got = final_periods(store.directory, "day", days)
    assert got["time_ms"].to_pylist() == [BERLIN_DAY + k * DAY_MS for k in range(3)]
    assert [days.day_of(t) for t in got["time_ms"].to_pylist()] == list(days)[:3]
    with_open = periods(store.directory, "day", days)
    assert with_open["electricity_kwh"].to_pylist()[-1] == 7.0
    one = final_periods(store.directory, "shift", days, site="demo", line="eaf-1")
    assert one["electricity_kwh"].to_pylist() == [9.0]
    assert final_periods(store.directory, "day", days, line="kiln-1").num_rows == 0


def test_reports_get_the_batches_that_closed_in_the_plants_days(store: ParquetStore) -> None:
    rows = [_batch(BERLIN_DAY - 1, 1.0, "H0"), _batch(BERLIN_DAY, 2.0, "H1"),
            _batch(BERLIN_DAY + DAY_MS - 1, 3.0, "H2"), _batch(BERLIN_DAY + DAY_MS, 4.0, "H3")]
    store.write_batches(pa.Table.from_pylist(rows, schema=BATCH_SCHEMA))
    got = batches(store.directory, PlantDays(date(2026, 1, 15), date(2026, 1, 15),
                                             "Europe/Berlin"))
    assert got.schema == BATCH_SCHEMA
    assert got["batch"].to_pylist() == ["H1", "H2"]


def test_plant_days_are_refused_backwards_or_in_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="before"):
        PlantDays(date(2026, 2, 1), date(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown time zone"):
        PlantDays(date(2026, 1, 1), date(2026, 1, 2), "Mars/Olympus")


def test_plant_days_across_the_spring_change_last_23_hours() -> None:
    days = PlantDays(date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin")
    assert days.end_ms - days.start_ms == 23 * 3_600_000


# Writes of provisional and final rows for a few periods, with compactions between.
_WRITES = st.lists(st.tuples(st.integers(0, 3), st.booleans(),
                             st.floats(-1e6, 1e6, allow_nan=False), st.booleans()),
                   min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(writes=_WRITES)
def test_any_writes_read_back_as_each_periods_final_or_newest_row(
        tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, bool, float, bool]]
) -> None:
    store = ParquetStore(tmp_path_factory.mktemp("store"))
    store.open()
    expected: dict[int, dict] = {}
    for k, final, kwh, compact in writes:
        row = _period(BERLIN_DAY + k * 8 * 3_600_000, kwh, final=final, kind="shift")
        store.write_periods(_periods(row))
        held = expected.get(k)
        if held is None or not held["final"] or final:
            expected[k] = row
        if compact:
            for date_dir in (store.directory / "_periods").glob("date=*"):
                store.compact(date_dir.name.removeprefix("date="))
    back = read_periods(store.directory)
    assert back is not None
    assert back.to_pylist() == [expected[k] for k in sorted(expected)]
    for f in store.directory.rglob("*.parquet"):  # every file a whole Parquet file
        assert pq.ParquetFile(f).metadata.num_rows >= 1


@settings(max_examples=25, deadline=None)
@given(site=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=64),
       line=st.sampled_from(["a/b", "Öfen=3", "..", "x" * 64, "~k.", "c:*?"]))
def test_any_site_and_line_names_read_back_exactly_from_the_period_folders(
        tmp_path_factory: pytest.TempPathFactory, site: str, line: str) -> None:
    store = ParquetStore(tmp_path_factory.mktemp("store"))
    store.open()
    row = _period(BERLIN_DAY, 1.0, final=True, site=site, line=line)
    store.write_periods(_periods(row, _period(BERLIN_DAY, 2.0, final=True, line="other")))
    back = read_periods(store.directory, site=site, line=line)
    assert back is not None and back.to_pylist() == [row]
    for f in store.directory.rglob("*.parquet"):  # no name adds or climbs a level
        parts = f.relative_to(store.directory).parts
        assert parts[0] == "_periods" and len(parts) == 5


def test_the_python_example_of_the_store_docs_reads_the_final_days_of_a_line(
        store: ParquetStore) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    example = docs.split("```python\n")[2].split("```", 1)[0]
    rows = [_period(BERLIN_DAY + k * DAY_MS, 10.0 + k, final=True) for k in range(3)]
    store.write_periods(_periods(*rows, _period(BERLIN_DAY, 1.0, final=True, line="kiln-1")))
    scope: dict[str, object] = {}
    exec(example.replace("/var/lib/wattline/store", str(store.directory))
         .replace("date(2024, 11, 1), date(2024, 11, 30)", "date(2026, 1, 15), date(2026, 1, 16)"),
         scope)
    assert scope["rows"].to_pylist() == rows[:2]  # type: ignore[attr-defined]
