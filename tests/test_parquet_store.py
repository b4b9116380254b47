"""The local Parquet store: partitions, atomic files, read-back, compaction, retention."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wattline.ingest.results import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.parquet_store import ParquetStore, latest, read_store

DAY_MS = 86_400_000
T0 = 1_732_406_400_000  # 2024-11-24T00:00:00Z


def _rows(site: str, line: str, times: list[int], window: str = "15m") -> pa.Table:
    n = len(times)
    return pa.table({
        "site": [site] * n, "line": [line] * n, "window": [window] * n, "time_ms": times,
        "energy_kgce": [float(i) for i in range(n)], "electricity_kwh": [2.0 * i for i in range(n)],
        "production_t": [0.0] + [1.0] * (n - 1), "kgce_per_t": [None] + [float(i) for i in
                                                                       range(1, n)],
        "kwh_per_t": [None] + [2.0 * i for i in range(1, n)],
    }, schema=INTENSITY_SCHEMA)


@pytest.fixture()
def store(tmp_path: Path) -> ParquetStore:
    s = ParquetStore(tmp_path / "store")
    s.open()
    return s


def test_written_rows_read_back_with_the_results_schema(store: ParquetStore) -> None:
    batch = _rows("demo", "eaf-1", [T0 + 10_000 * i for i in range(5)])
    store.write(batch)
    back = read_store(store.directory)
    assert back.schema == INTENSITY_SCHEMA
    assert back.to_pylist() == batch.to_pylist()


def test_files_are_partitioned_by_utc_date_site_and_line(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0 + 1000, T0 + DAY_MS + 1000]),
                                  _rows("demo", "kiln-1", [T0 + 2000])]))
    folders = sorted(str(p.relative_to(store.directory)) for p in
                     store.directory.glob("date=*/site=*/line=*"))
    assert folders == ["date=2024-11-24/site=demo/line=eaf-1",
                       "date=2024-11-24/site=demo/line=kiln-1",
                       "date=2024-11-25/site=demo/line=eaf-1"]
    for folder in store.directory.glob("date=*/site=*/line=*"):
        for f in folder.iterdir():
            assert pq.read_table(f).num_rows >= 1  # each a complete Parquet file


def test_no_temporary_files_are_left_behind(store: ParquetStore) -> None:
    store.write(_rows("demo", "eaf-1", [T0, T0 + 10_000]))
    assert [p for p in store.directory.rglob("*") if p.name.startswith(".")] == []


def test_a_half_written_file_from_a_crash_is_ignored_and_cleaned_on_open(tmp_path: Path) -> None:
    s = ParquetStore(tmp_path / "store")
    s.open()
    s.write(_rows("demo", "eaf-1", [T0]))
    folder = next(s.directory.glob("date=*/site=*/line=*"))
    (folder / ".part-crash.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert read_store(s.directory).num_rows == 1
    ParquetStore(s.directory).open()
    assert not (folder / ".part-crash.parquet.tmp").exists()


def test_rewritten_points_are_read_back_once(store: ParquetStore) -> None:
    batch = _rows("demo", "eaf-1", [T0, T0 + 10_000, T0 + 20_000])
    store.write(batch)
    store.write(batch.slice(1))  # a replay after a crash
    assert read_store(store.directory).to_pylist() == batch.to_pylist()


def test_reading_one_line_filters_the_partitions(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0]), _rows("demo", "kiln-1", [T0])]))
    assert set(read_store(store.directory, line="kiln-1")["line"].to_pylist()) == {"kiln-1"}


def test_latest_is_the_newest_row_per_line_and_window(store: ParquetStore) -> None:
    store.write(_rows("demo", "eaf-1", [T0, T0 + 10_000]))
    store.write(_rows("demo", "eaf-1", [T0 + 20_000, T0 + 30_000]))
    store.write(_rows("demo", "eaf-1", [T0 + 5_000], window="1h"))
    rows = latest(store.directory).to_pylist()
    assert [(r["window"], r["time_ms"]) for r in rows] == [("15m", T0 + 30_000),
                                                          ("1h", T0 + 5_000)]


def test_compaction_merges_a_days_files_and_keeps_every_row(store: ParquetStore) -> None:
    for i in range(4):
        store.write(_rows("demo", "eaf-1", [T0 + 10_000 * i]))
    before = read_store(store.directory)
    assert store.compact("2024-11-24") == 4
    folder = next(store.directory.glob("date=*/site=*/line=*"))
    assert len(list(folder.glob("*.parquet"))) == 1
    assert read_store(store.directory).to_pylist() == before.to_pylist()


def test_prune_removes_days_older_than_the_retention(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0 + k * DAY_MS]) for k in range(5)]))
    removed = store.prune(retention_days=2, now_ms=T0 + 4 * DAY_MS + 1000)
    assert removed == ["2024-11-24", "2024-11-25"]
    assert sorted(p.name for p in store.directory.glob("date=*")) == [
        "date=2024-11-26", "date=2024-11-27", "date=2024-11-28"]


def test_an_unsafe_partition_name_is_refused(store: ParquetStore) -> None:
    with pytest.raises(SinkError):
        store.write(_rows("demo", "../escape", [T0]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_a_read_only_store_gives_a_retryable_error(store: ParquetStore) -> None:
    store.directory.chmod(0o500)
    try:
        with pytest.raises(SinkError) as err:
            store.write(_rows("demo", "eaf-1", [T0]))
        assert err.value.retryable
    finally:
        store.directory.chmod(0o700)


def test_an_empty_store_reads_as_an_empty_batch(tmp_path: Path) -> None:
    assert read_store(tmp_path).num_rows == 0
