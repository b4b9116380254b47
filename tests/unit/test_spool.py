"""The on-disk spool on real files: order, durability across reopen, the size cap."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import missing_component
from tests.processes import ComponentMissing, small_filesystem
from wattline.ingest.durable.spool import Spool, SpoolError


def batch(first: int, rows: int = 50) -> pa.Table:
    return pa.table({"time_ms": list(range(first, first + rows)),
                     "value": [float(i) for i in range(rows)]})


def test_segments_come_back_oldest_first_and_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for first in (0, 100, 200):
        spool.append(batch(first), "intensity")
    spool.append(batch(300, 2), "alerts")
    again = Spool(tmp_path, max_bytes=1 << 20)
    got = []
    while (segment := again.oldest()) is not None:
        got.append((segment.kind, again.read(segment)["time_ms"][0].as_py()))
        again.remove(segment)
    assert got == [("intensity", 0), ("intensity", 100), ("intensity", 200), ("alerts", 300)]
    assert len(Spool(tmp_path, max_bytes=1 << 20)) == 0


def test_a_reopened_spool_numbers_new_segments_after_the_old_ones(tmp_path: Path) -> None:
    Spool(tmp_path, max_bytes=1 << 20).append(batch(0), "intensity")
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(100), "intensity")
    assert [spool.read(s)["time_ms"][0].as_py() for s in spool._segments] == [0, 100]


def test_over_the_cap_the_oldest_segments_are_dropped_and_counted(tmp_path: Path) -> None:
    one = Spool(tmp_path / "probe", max_bytes=1 << 20).append(batch(0), "intensity").size
    spool = Spool(tmp_path / "spool", max_bytes=3 * one + one // 2)
    for i in range(6):
        spool.append(batch(100 * i), "intensity")
    assert len(spool) == 3 and spool.bytes <= spool.max_bytes
    assert spool.dropped_segments == 3
    assert spool.dropped_rows == {"intensity": 150, "alerts": 0, "batches": 0, "periods": 0}
    assert spool.read(spool.oldest())["time_ms"][0].as_py() == 300


def test_the_newest_segment_is_kept_even_when_it_alone_exceeds_the_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10)
    spool.append(batch(0), "intensity")
    spool.append(batch(100), "intensity")
    assert len(spool) == 1 and spool.dropped_rows["intensity"] == 50


def test_a_half_written_segment_left_by_a_crash_is_removed_on_open(tmp_path: Path) -> None:
    Spool(tmp_path, max_bytes=1 << 20).append(batch(0), "intensity")
    (tmp_path / ".seg-0000000000000001-intensity.arrow.tmp").write_bytes(b"ARROW1 torn")
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert len(spool) == 1
    assert not list(tmp_path.glob(".seg-*"))


def test_an_unreadable_segment_raises_a_spool_error_naming_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    segment = spool.append(batch(0), "intensity")
    segment.path.write_bytes(b"not arrow")
    with pytest.raises(SpoolError, match=segment.path.name):
        spool.read(segment)


def test_a_full_disk_raises_a_spool_error_and_keeps_what_was_spooled(tmp_path: Path) -> None:
    try:
        context = small_filesystem(tmp_path / "full", "16k")
        full = context.__enter__()
    except ComponentMissing as err:
        missing_component(err)
    try:
        spool = Spool(full, max_bytes=1 << 30)
        with pytest.raises(SpoolError, match="cannot spool"):
            for i in range(1000):
                spool.append(batch(100 * i, 200), "intensity")
        kept = len(spool)
        assert kept > 0 and not list(full.glob(".seg-*"))
        assert Spool(full, max_bytes=1 << 30).read(spool.oldest()).num_rows == 200
    finally:
        context.__exit__(None, None, None)
