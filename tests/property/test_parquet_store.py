"""The local Parquet store: partitions, atomic files, read-back, compaction, retention."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import IntensitySink, SinkError
from wattline.ingest.sinks.parquet_store import ParquetStore, latest, read_store

DAY_MS = 86_400_000
T0 = 1_732_406_400_000  # 2024-11-24T00:00:00Z


def _rows(site: str, line: str, times: list[int], window: str = "15m") -> pa.Table:
    """Ticks of one line and window; the first one idle, the others producing."""
    n = len(times)
    return pa.table({
        "site": [site] * n, "line": [line] * n, "window": [window] * n, "time_ms": times,
        "energy_kgce": [float(i) for i in range(n)], "electricity_kwh": [2.0 * i for i in range(n)],
        "production_t": [0.0] + [1.0] * (n - 1),
        "kgce_per_t": [None] + [float(i) for i in range(1, n)],
        "kwh_per_t": [None] + [2.0 * i for i in range(1, n)],
        "co2_direct_t": [0.001 * i for i in range(n)],
        "co2_indirect_t": [0.002 * i for i in range(n)],
        "co2_per_t": [None] + [0.003 * i for i in range(1, n)],
    }, schema=INTENSITY_SCHEMA)


def _files(store: ParquetStore) -> list[Path]:
    return sorted(p for p in store.directory.rglob("*") if p.is_file())


def _hidden(store: ParquetStore) -> list[Path]:
    return [p for p in store.directory.rglob("*") if p.name.startswith(".")]


@pytest.fixture()
def store(tmp_path: Path) -> ParquetStore:
    s = ParquetStore(tmp_path / "store")
    s.open()
    return s


def test_the_store_is_an_intensity_sink_named_parquet(store: ParquetStore) -> None:
    assert isinstance(store, IntensitySink)
    assert store.name == "parquet"


def test_written_rows_read_back_with_the_results_schema(store: ParquetStore) -> None:
    batch = _rows("demo", "eaf-1", [T0 + 10_000 * i for i in range(5)])
    store.write(batch)
    back = read_store(store.directory)
    assert back.schema == INTENSITY_SCHEMA
    assert back.to_pylist() == batch.to_pylist()
    assert store.read().to_pylist() == batch.to_pylist()


def test_files_are_partitioned_by_utc_date_site_and_line(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0 - 1, T0, T0 + DAY_MS]),
                                  _rows("demo", "kiln-1", [T0 + 2000])]))
    folders = sorted(str(p.parent.relative_to(store.directory)) for p in _files(store))
    assert folders == ["date=2024-11-23/site=demo/line=eaf-1",
                       "date=2024-11-24/site=demo/line=eaf-1",
                       "date=2024-11-24/site=demo/line=kiln-1",
                       "date=2024-11-25/site=demo/line=eaf-1"]
    for f in _files(store):
        table = pq.ParquetFile(f).read()  # each a complete Parquet file of its own partition
        assert table.num_rows == 1
        assert f"line={table['line'][0]}" == f.parent.name


def test_no_temporary_files_are_left_behind(store: ParquetStore) -> None:
    store.write(_rows("demo", "eaf-1", [T0, T0 + 10_000]))
    store.write(_rows("demo", "eaf-1", [T0 + 20_000]))
    store.compact("2024-11-24")
    store.prune(retention_days=0, now_ms=T0 + 3 * DAY_MS)
    assert _hidden(store) == []


def test_a_write_failing_midway_leaves_no_file_and_is_retryable(
        store: ParquetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(SinkError) as err:
        store.write(_rows("demo", "eaf-1", [T0]))
    assert err.value.retryable
    assert "space" in str(err.value)
    assert _files(store) == []
    monkeypatch.undo()
    store.write(_rows("demo", "eaf-1", [T0]))  # the retry
    assert read_store(store.directory).num_rows == 1


def test_a_half_written_file_from_a_crash_is_ignored_and_cleaned_on_open(tmp_path: Path) -> None:
    s = ParquetStore(tmp_path / "store")
    s.open()
    s.write(_rows("demo", "eaf-1", [T0]))
    folder = next(s.directory.glob("date=*/site=*/line=*"))
    (folder / ".part-crash.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert read_store(s.directory).num_rows == 1
    ParquetStore(s.directory).open()
    assert not (folder / ".part-crash.parquet.tmp").exists()


def test_file_names_are_unique_and_sort_by_first_tick(store: ParquetStore) -> None:
    later = _rows("demo", "eaf-1", [T0 + 50_000])
    store.write(later)
    store.write(later)  # the same batch again: a new file, not an overwrite
    store.write(_rows("demo", "eaf-1", [T0 + 10_000]))
    names = [p.name for p in _files(store)]
    assert len(set(names)) == 3
    assert pq.ParquetFile(_files(store)[0]).read()["time_ms"].to_pylist() == [T0 + 10_000]


def test_rewritten_points_are_read_back_once(store: ParquetStore) -> None:
    batch = _rows("demo", "eaf-1", [T0, T0 + 10_000, T0 + 20_000])
    store.write(batch)
    store.write(batch.slice(1))  # a replay after a crash
    assert read_store(store.directory).to_pylist() == batch.to_pylist()


def test_reading_one_site_or_line_filters_the_partitions(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0]), _rows("demo", "kiln-1", [T0]),
                                  _rows("other", "kiln-1", [T0])]))
    assert set(read_store(store.directory, line="kiln-1")["site"].to_pylist()) == {"demo",
                                                                                   "other"}
    one = store.read(site="demo", line="kiln-1")
    assert [(r["site"], r["line"]) for r in one.to_pylist()] == [("demo", "kiln-1")]
    assert read_store(store.directory, site="nowhere").num_rows == 0


def test_names_a_folder_cannot_hold_are_escaped_and_read_back(store: ParquetStore) -> None:
    site, line = "../escape", "a/b %2F c"
    store.write(_rows(site, line, [T0]))
    [path] = _files(store)
    assert store.directory in path.parents
    assert path.parent.name == "line=a%2Fb %252F c"
    assert [(r["site"], r["line"]) for r in read_store(store.directory).to_pylist()] == [
        (site, line)]
    assert read_store(store.directory, site=site, line=line).num_rows == 1


def test_a_name_too_long_for_a_folder_gets_a_digest_folder_and_reads_back(
        store: ParquetStore) -> None:
    site, line = "😀" * 64, "x" * 300
    store.write(_rows(site, line, [T0]))
    [path] = _files(store)
    assert path.parent.name.startswith("line=~") and path.parent.parent.name.startswith("site=~")
    assert [(r["site"], r["line"]) for r in read_store(store.directory).to_pylist()] == [
        (site, line)]


@pytest.mark.parametrize(("site", "line"), [("", "eaf-1"), ("demo", "")])
def test_a_name_no_folder_can_hold_is_refused_for_good(store: ParquetStore, site: str,
                                                       line: str) -> None:
    with pytest.raises(SinkError) as err:
        store.write(_rows(site, line, [T0]))
    assert not err.value.retryable


def test_latest_is_the_newest_row_per_line_and_window(store: ParquetStore) -> None:
    store.write(_rows("demo", "eaf-1", [T0, T0 + 10_000]))
    store.write(_rows("demo", "eaf-1", [T0 + 20_000, T0 + 30_000]))
    store.write(_rows("demo", "eaf-1", [T0 + 5_000], window="1h"))
    store.write(_rows("demo", "kiln-1", [T0 + DAY_MS]))
    rows = latest(store.directory).to_pylist()
    assert [(r["line"], r["window"], r["time_ms"]) for r in rows] == [
        ("eaf-1", "15m", T0 + 30_000), ("eaf-1", "1h", T0 + 5_000), ("kiln-1", "15m", T0 + DAY_MS)]
    assert rows[0] == read_store(store.directory).to_pylist()[3]
    assert store.latest().to_pylist() == rows


def test_compaction_merges_a_days_files_and_keeps_every_row(store: ParquetStore) -> None:
    for i in range(4):
        store.write(_rows("demo", "eaf-1", [T0 + 10_000 * i]))
    store.write(_rows("demo", "eaf-1", [T0 + 20_000]))  # a replayed point
    store.write(_rows("demo", "eaf-1", [T0 + DAY_MS]))  # another day: left alone
    before = read_store(store.directory)
    assert store.compact("2024-11-24") == 5
    day = store.directory / "date=2024-11-24" / "site=demo" / "line=eaf-1"
    [merged] = day.glob("*.parquet")
    assert pq.ParquetFile(merged).read()["time_ms"].to_pylist() == [
        T0 + 10_000 * i for i in range(4)]
    assert len(_files(store)) == 2
    assert read_store(store.directory).to_pylist() == before.to_pylist()
    assert store.compact("2024-11-24") == 0  # one file: nothing to merge


def test_prune_removes_days_older_than_the_retention(store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0 + k * DAY_MS]) for k in range(5)]))
    removed = store.prune(retention_days=2, now_ms=T0 + 4 * DAY_MS + 1000)
    assert removed == ["2024-11-24", "2024-11-25"]
    assert sorted(p.name for p in store.directory.glob("date=*")) == [
        "date=2024-11-26", "date=2024-11-27", "date=2024-11-28"]
    assert read_store(store.directory)["time_ms"].to_pylist() == [
        T0 + k * DAY_MS for k in (2, 3, 4)]


def test_a_day_left_half_pruned_by_a_crash_is_unseen_and_cleaned_on_open(
        store: ParquetStore) -> None:
    store.write(pa.concat_tables([_rows("demo", "eaf-1", [T0]), _rows("demo", "eaf-1",
                                                                      [T0 + DAY_MS])]))
    day = store.directory / "date=2024-11-24"
    day.rename(store.directory / ".trash-date=2024-11-24-crash")  # as prune does first
    assert read_store(store.directory)["time_ms"].to_pylist() == [T0 + DAY_MS]
    store.open()
    assert _hidden(store) == []


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
    assert read_store(tmp_path / "missing").schema == INTENSITY_SCHEMA
    assert latest(tmp_path).num_rows == 0


_point = st.tuples(st.sampled_from(["s1", "s 2"]), st.sampled_from(["eaf-1", "kiln/1"]),
                   st.sampled_from(["15m", "1h"]), st.integers(-2, 3))


@settings(max_examples=150, deadline=None)
@given(st.lists(_point, min_size=1, max_size=30), st.data())
def test_any_batches_read_back_as_their_points_once_each(points: list[tuple], data: st.DataObject
                                                         ) -> None:
    rows = [{"site": s, "line": ln, "window": w, "time_ms": T0 + k * (DAY_MS // 2),
             "energy_kgce": float(k), "electricity_kwh": 1.5, "production_t": 0.5,
             "kgce_per_t": None if k < 0 else 2.0 * k, "kwh_per_t": 3.0,
             "co2_direct_t": 0.25 * k, "co2_indirect_t": 0.125,
             "co2_per_t": None if k < 0 else 0.5 * k + 0.25}
            for s, ln, w, k in points]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetStore(Path(tmp) / "store")
        store.open()
        for start, end in zip([0, *cuts], [*cuts, len(rows)], strict=True):
            store.write(pa.Table.from_pylist(rows[start:end], schema=INTENSITY_SCHEMA))
        back = read_store(store.directory).to_pylist()
    expected = {(r["site"], r["line"], r["window"], r["time_ms"]): r for r in rows}
    assert back == [expected[k] for k in sorted(expected)]


def test_housekeeping_compacts_past_days_and_drops_days_past_the_retention(
    tmp_path: Path,
) -> None:
    day_ms = 86_400_000
    t0 = 1_732_406_400_000  # 2024-11-24T00:00Z
    now = [t0 / 1000 + 5 * 86_400 + 3600]  # 2024-11-29, 01:00
    store = ParquetStore(tmp_path / "s", retention_days=2, housekeeping_every_s=60,
                         clock=lambda: now[0])
    store.open()
    rows = {"site": ["demo"], "line": ["eaf-1"], "window": ["15m"], "energy_kgce": [1.0],
            "electricity_kwh": [1.0], "production_t": [1.0], "kgce_per_t": [1.0],
            "kwh_per_t": [1.0], "co2_direct_t": [0.5], "co2_indirect_t": [0.25],
            "co2_per_t": [0.75]}
    for day in range(6):
        for k in range(3):
            store.write(pa.table({**rows, "time_ms": [t0 + day * day_ms + k * 10_000]},
                                 schema=INTENSITY_SCHEMA))
    now[0] += 61  # the next write is due for housekeeping
    store.write(pa.table({**rows, "time_ms": [t0 + 5 * day_ms + 99_000]},
                         schema=INTENSITY_SCHEMA))
    days = sorted(p.name for p in store.directory.glob("date=*"))
    assert days == ["date=2024-11-27", "date=2024-11-28", "date=2024-11-29"]
    files = {p.parent.parent.name: len(list(p.glob("*.parquet")))
             for p in store.directory.glob("date=*/site=*/line=*")}
    assert files == {"date=2024-11-27": 1, "date=2024-11-28": 1, "date=2024-11-29": 4}
    assert read_store(store.directory).num_rows == 3 + 3 + 4


def _without_carbon(table: pa.Table) -> pa.Table:
    """A batch as wattline wrote it before it recorded carbon: no CO2 columns."""
    return table.drop_columns(["co2_direct_t", "co2_indirect_t", "co2_per_t"])


def test_a_store_written_before_the_carbon_columns_reads_back_with_them_null(
    tmp_path: Path,
) -> None:
    """Files from before the carbon columns, alone or beside new ones in one day: read
    back, compacted and read back again, the old rows have nulls there, the new ones
    their values."""
    old = _rows("demo", "eaf-1", [T0 + 10_000 * i for i in range(3)])
    new = _rows("demo", "eaf-1", [T0 + 10_000 * i for i in range(3, 6)])
    folder = tmp_path / "s" / "date=2024-11-24" / "site=demo" / "line=eaf-1"
    folder.mkdir(parents=True)
    pq.write_table(_without_carbon(old), folder / f"part-{T0:015d}-0-old.parquet")
    alone = read_store(tmp_path / "s")
    assert alone.schema == INTENSITY_SCHEMA
    assert alone.column("co2_direct_t").null_count == 3
    assert alone.column("energy_kgce").to_pylist() == old.column("energy_kgce").to_pylist()
    store = ParquetStore(tmp_path / "s")
    store.open()  # its housekeeping now, not at the write
    store.write(new)
    want_direct = [None] * 3 + new.column("co2_direct_t").to_pylist()
    want_per_t = [None] * 3 + new.column("co2_per_t").to_pylist()
    for compacted in (False, True):
        back = read_store(store.directory)
        assert back.column("co2_direct_t").to_pylist() == want_direct, compacted
        assert back.column("co2_per_t").to_pylist() == want_per_t, compacted
        assert back.column("time_ms").to_pylist() == [T0 + 10_000 * i for i in range(6)]
        if not compacted:
            assert store.compact("2024-11-24") == 2  # the old file and the new one, merged
    assert len(list(folder.glob("*.parquet"))) == 1
