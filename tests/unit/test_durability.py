"""Durability of received messages: the write-ahead log, acknowledgements held until
durable, checkpoints when due, and the log replayed after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from wattline.ingest.config import settings_from_mapping
from wattline.ingest.decode.batch import Message
from wattline.ingest.durable.durability import MAX_HELD_ACKS, Durability
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline
from wattline.kernels import KernelConfig, new_state

T0 = 1_732_406_400_000


def messages(first: int, steps: int, acks: bool = True) -> list[Message]:
    msgs = []
    for k in range(first, first + steps):
        ts = T0 + 10_000 * k
        for kind, meter, value in (("energy", "incomer", 100.0 * k),
                                   ("production", "scale", 0.25 * k)):
            msgs.append(Message(f"factory/s/eaf-1/{kind}/{meter}",
                                json.dumps({"ts": ts, "v": value}).encode(), ts / 1000,
                                (kind, k) if acks else None))
    return msgs


def pipeline(state_dir: Path | None) -> Pipeline:
    settings = {"max_past": "100000d", "windows": "1m,10m"}
    if state_dir is not None:
        settings["state_dir"] = str(state_dir)
    return Pipeline(settings_from_mapping(settings), [], CollectorMetrics(),
                    clock=lambda: T0 / 1000 + 3600)


def test_a_batch_is_acknowledged_once_it_is_in_the_log(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    acked: list = []
    p.durability.ack = acked.append
    batch = messages(0, 3)
    p.durability.hold(batch)
    assert acked == [m.ack for m in batch]
    assert p.durability.wal is not None and p.durability.wal.bytes > 0


def test_without_a_state_directory_a_batch_is_acknowledged_at_once(tmp_path: Path) -> None:
    p = pipeline(None)
    acked: list = []
    p.durability.ack = acked.append
    p.durability.hold(messages(0, 2))
    assert len(acked) == 4
    assert not p.checkpoint()


def test_acks_wait_for_the_checkpoint_when_the_log_cannot_be_written(tmp_path, monkeypatch):
    p = pipeline(tmp_path)
    acked: list = []
    p.durability.ack = acked.append

    def full(records):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(p.durability.wal, "append", full)
    batch = messages(0, 3)
    p.durability.hold(batch)
    p.process(batch)
    assert acked == []
    assert p.metrics.registry.get_sample_value("wattline_wal_errors_total") == 1
    assert p.checkpoint()
    assert acked == [m.ack for m in batch]


def test_a_checkpoint_is_due_after_a_batch_and_the_interval_or_too_many_held_acks(tmp_path):
    now = [0.0]
    durability = Durability(str(tmp_path), KernelConfig(10_000, (60_000,), 0, 0.0),
                            CollectorMetrics(), checkpoint_every_s=30.0, clock=lambda: now[0])
    now[0] = 31.0
    assert not durability.checkpoint_due()  # nothing processed since the last one
    durability.processed()
    assert durability.checkpoint_due()
    now[0] = 0.0
    assert not durability.checkpoint_due()
    durability._held_acks = [None] * (MAX_HELD_ACKS + 1)
    assert durability.checkpoint_due()


def test_a_checkpoint_is_due_at_once_after_final_periods_were_written(tmp_path: Path) -> None:
    durability = Durability(str(tmp_path), KernelConfig(10_000, (60_000,), 0, 0.0),
                            CollectorMetrics(), checkpoint_every_s=3600.0, clock=lambda: 0.0)
    durability.processed()
    assert not durability.checkpoint_due()  # an hour to go
    durability.finals_written()
    assert durability.checkpoint_due()
    state = new_state(KernelConfig(10_000, (60_000,), 0, 0.0), 0, 0)
    assert durability.save(state, {}, {})
    assert not durability.checkpoint_due()


def test_what_came_after_the_checkpoint_is_replayed_after_a_restart(tmp_path: Path) -> None:
    first = pipeline(tmp_path)
    first.durability.hold(messages(0, 30, acks=False))
    first.process(messages(0, 30, acks=False))
    assert first.checkpoint()
    after = messages(30, 30, acks=False)
    first.durability.hold(after)
    expected = first.process(after)  # then a crash: no checkpoint holds these
    first.durability.close()

    second = pipeline(tmp_path)
    replayed: list[pa.Table] = []
    second.durability.replay(lambda batch: replayed.append(second.process(batch)), 1000)
    assert pa.concat_tables(replayed).equals(expected)
    assert second.metrics.registry.get_sample_value("wattline_wal_replayed_messages_total") == 60
    second.durability.replay(lambda batch: replayed.append(batch), 1000)  # only once
    assert len(replayed) == 1
