"""Behaviour of the write-ahead log of received MQTT messages (wattline.ingest.durable.wal)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.ingest.durable.wal import (
    HEADER,
    WalRecord,
    WriteAheadLog,
    encode_record,
    read_wal,
    wal_files,
    wal_path,
)


def plant_records(count: int, start_s: float = 1_732_406_400.0) -> list[WalRecord]:
    """``count`` small meter readings, one a second."""
    return [WalRecord(start_s + i, f"plant/line1/meter{i}", b'{"ts": %d, "v": 1.5}' % i)
            for i in range(count)]


def write(directory: Path, generation: int, records: list[WalRecord]) -> None:
    """Append ``records`` to the log of ``generation`` in one batch."""
    with WriteAheadLog(directory, generation) as wal:
        wal.append(records)


def test_round_trip_keeps_empty_payload_non_ascii_topic_and_large_payload(tmp_path: Path):
    records = [
        WalRecord(1_732_406_400.25, "plant/line1/meter1", b""),
        WalRecord(1_732_406_401.5, "工厂/炉子/电表-Ä", b"\x00\xff binary"),
        WalRecord(1_732_406_402.0, "plant/line1/bulk", os.urandom(1_000_000)),
        WalRecord(1_732_406_403.0, "", b"empty topic"),
    ]
    write(tmp_path, 1, records)
    assert read_wal(tmp_path, 1) == records


def test_file_is_named_after_the_generation_in_a_created_directory(tmp_path: Path):
    directory = tmp_path / "state" / "wal"
    with WriteAheadLog(directory, 7) as wal:
        assert wal.path == directory / "wal-000000000007.log"
        assert wal.path.exists()
        assert wal.bytes == 0


def test_bytes_is_the_size_of_the_current_file(tmp_path: Path):
    records = plant_records(3)
    with WriteAheadLog(tmp_path, 1) as wal:
        wal.append(records)
        assert wal.bytes == sum(len(encode_record(r)) for r in records)
        assert wal.bytes == wal.path.stat().st_size


def test_appends_across_reopen_read_back_in_order(tmp_path: Path):
    first, second = plant_records(3), plant_records(2, start_s=1_732_406_500.0)
    write(tmp_path, 1, first)
    write(tmp_path, 1, second)
    assert read_wal(tmp_path, 1) == first + second


def test_empty_append_writes_nothing(tmp_path: Path):
    with WriteAheadLog(tmp_path, 1) as wal:
        wal.append([])
        assert wal.bytes == 0
    assert read_wal(tmp_path, 1) == []


def test_torn_last_record_is_ignored_and_cut_on_reopen(tmp_path: Path):
    complete, last = plant_records(2), WalRecord(1_732_406_999.0, "plant/x", b"torn")
    later = WalRecord(1_732_407_000.0, "plant/after", b"restart")
    good_length = sum(len(encode_record(r)) for r in complete)
    for kept in range(len(encode_record(last))):
        directory = tmp_path / f"cut-{kept}"
        write(directory, 1, [*complete, last])
        with open(wal_path(directory, 1), "r+b") as f:
            f.truncate(good_length + kept)

        assert read_wal(directory, 1) == complete, f"torn after {kept} bytes"
        with WriteAheadLog(directory, 1) as wal:
            assert wal.bytes == good_length
            wal.append([later])
        assert read_wal(directory, 1) == [*complete, later], f"torn after {kept} bytes"


def test_zero_filled_tail_is_treated_as_torn(tmp_path: Path):
    records = plant_records(2)
    write(tmp_path, 1, records)
    with open(wal_path(tmp_path, 1), "ab") as f:
        f.write(bytes(HEADER.size + 64))
    assert read_wal(tmp_path, 1) == records


def test_corrupt_byte_in_middle_record_body_ends_the_read_there(tmp_path: Path):
    records = plant_records(3)
    write(tmp_path, 1, records)
    first_length = len(encode_record(records[0]))
    with open(wal_path(tmp_path, 1), "r+b") as f:
        f.seek(first_length + HEADER.size + 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    assert read_wal(tmp_path, 1) == records[:1]


def test_reopen_after_a_corrupt_middle_record_keeps_only_the_records_before_it(
        tmp_path: Path):
    records, later = plant_records(3), WalRecord(1_732_407_000.0, "plant/after", b"")
    write(tmp_path, 1, records)
    first_length = len(encode_record(records[0]))
    with open(wal_path(tmp_path, 1), "r+b") as f:
        f.seek(first_length + 4)  # the CRC of the second record
        f.write(b"\xff\xff\xff\xff")
    write(tmp_path, 1, [later])
    assert read_wal(tmp_path, 1) == [records[0], later]


def test_corrupt_received_time_in_header_ends_the_read_there(tmp_path: Path):
    records = plant_records(2)
    write(tmp_path, 1, records)
    first_length = len(encode_record(records[0]))
    with open(wal_path(tmp_path, 1), "r+b") as f:
        f.seek(first_length + 8)  # received_s of the second record
        f.write(b"\x00" * 8)
    assert read_wal(tmp_path, 1) == records[:1]


def test_topic_that_cannot_be_encoded_raises_before_writing(tmp_path: Path):
    good = plant_records(1)
    with WriteAheadLog(tmp_path, 1) as wal:
        wal.append(good)
        with pytest.raises(UnicodeEncodeError):
            wal.append([*plant_records(1), WalRecord(0.0, "bad\ud800", b"")])
        assert wal.bytes == wal.path.stat().st_size
    assert read_wal(tmp_path, 1) == good


def test_rotate_deletes_older_generations_and_appends_go_to_the_new_file(tmp_path: Path):
    before, after = plant_records(2), plant_records(2, start_s=1_732_407_000.0)
    write(tmp_path, 0, plant_records(1))  # a leftover from a crash before an earlier rotate
    with WriteAheadLog(tmp_path, 1) as wal:
        wal.append(before)
        wal.rotate(2)
        wal.append(after)
        assert wal.path == wal_path(tmp_path, 2)
        assert wal.bytes == sum(len(encode_record(r)) for r in after)
    assert wal_files(tmp_path) == [(2, wal_path(tmp_path, 2))]
    assert read_wal(tmp_path, 1) == []
    assert read_wal(tmp_path, 2) == after


def test_rotate_to_an_older_or_same_generation_is_refused(tmp_path: Path):
    with WriteAheadLog(tmp_path, 3) as wal:
        for generation in (2, 3):
            with pytest.raises(ValueError, match="not newer"):
                wal.rotate(generation)
        assert wal.generation == 3


def test_older_log_left_by_a_crash_during_rotate_is_not_read(tmp_path: Path):
    old, new = plant_records(2), plant_records(1, start_s=1_732_407_000.0)
    write(tmp_path, 1, old)
    write(tmp_path, 2, new)
    assert read_wal(tmp_path, 2) == new


def test_missing_generation_reads_as_empty(tmp_path: Path):
    assert read_wal(tmp_path, 5) == []
    assert read_wal(tmp_path / "absent", 0) == []


def test_wal_files_lists_generations_in_order_and_skips_other_names(tmp_path: Path):
    for generation in (10, 2, 0):
        write(tmp_path, generation, [])
    (tmp_path / "wal-notes.log").write_text("x")
    (tmp_path / "checkpoint.json").write_text("{}")
    assert wal_files(tmp_path) == [(g, wal_path(tmp_path, g)) for g in (0, 2, 10)]
    assert wal_files(tmp_path / "absent") == []


def test_append_after_close_is_refused(tmp_path: Path):
    wal = WriteAheadLog(tmp_path, 1)
    wal.close()
    wal.close()
    with pytest.raises(ValueError, match="closed"):
        wal.append(plant_records(1))


messages = st.lists(
    st.tuples(
        st.floats(allow_nan=False),
        st.text(st.characters(codec="utf-8"), max_size=20),  # MQTT topics are UTF-8
        st.binary(max_size=200),
    ),
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(messages=messages, data=st.data())
def test_any_messages_in_any_batches_read_back_equal(messages, data):
    records = [WalRecord(received_s, topic, payload) for received_s, topic, payload in messages]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=5)))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    with tempfile.TemporaryDirectory() as directory:
        with WriteAheadLog(directory, 1) as wal:
            for batch in batches:
                wal.append(batch)
        assert read_wal(directory, 1) == records

