"""The InfluxDB writer thread behind the spool (``SpooledSink``) and the queue without one
(``QueuedSink``), with a scripted inner sink: order, no loss, no double delivery, and a
pipeline side that never waits for the server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from tests.processes import wait_until
from wattline.ingest.durable.spool import Spool, SpoolError
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.dead_letters import DeadLetters
from wattline.ingest.sinks.queued import QueuedSink
from wattline.ingest.sinks.spooled import SpooledSink


def batch(n: int) -> pa.Table:
    return pa.table({"time_ms": [n], "value": [float(n)]})


class Scripted:
    """An inner sink whose writes block while ``gate`` is clear and fail while ``down``."""

    name = "influxdb"
    timeout_s = 1.0

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.down: SinkError | None = None
        self.written: list[int] = []
        self.attempts = 0
        self.checks = 0
        self.started = threading.Event()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def check(self) -> None:
        self.checks += 1
        if self.down is not None:
            raise self.down

    def write(self, table: pa.Table) -> None:
        self.attempts += 1
        self.started.set()
        self.gate.wait()
        if self.down is not None:
            raise self.down
        self.written.extend(table["time_ms"].to_pylist())

    def write_alerts(self, table: pa.Table) -> None:
        self.write(table)


def sample(metrics: CollectorMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def make(tmp_path: Path, inner: Scripted, **options: float) -> tuple[SpooledSink,
                                                                     CollectorMetrics]:
    metrics = CollectorMetrics()
    sink = SpooledSink(inner, Spool(tmp_path / "spool", 1 << 20), metrics,
                       dead_letters=DeadLetters(tmp_path / "dead"), retry_min_s=0.01,
                       retry_max_s=0.05, **options)
    sink.open()
    return sink, metrics


def spooled(metrics: CollectorMetrics, event: str = "spooled") -> float:
    return sample(metrics, "wattline_spool_rows_total", kind="intensity", event=event)


def test_a_healthy_server_gets_every_batch_in_order_without_the_spool(tmp_path: Path) -> None:
    inner = Scripted()
    sink, metrics = make(tmp_path, inner)
    for n in range(20):  # fewer than the queue holds: none needs the spool
        sink.write(batch(n))
    wait_until(lambda: len(inner.written) == 20, timeout_s=10, what="every batch written")
    sink.close()
    assert inner.written == list(range(20))
    assert spooled(metrics) == 0 and len(sink.spool) == 0


def test_a_write_left_unanswered_sends_new_batches_to_the_spool_and_none_twice(
        tmp_path: Path) -> None:
    inner = Scripted()
    inner.gate.clear()  # the server takes the request and does not answer (yet)
    sink, metrics = make(tmp_path, inner, slow_after_s=0.05)
    sink.write(batch(0))
    wait_until(inner.started.is_set, timeout_s=5, what="the first write under way")
    wait_until(lambda: not sink.health().healthy, timeout_s=5, what="the health check noticing")
    assert "has not answered a write" in (sink.health().last_error or "")
    started = time.monotonic()
    for n in range(1, 40):
        sink.write(batch(n))  # returns at once: to memory, then (slow) to the spool
    assert time.monotonic() - started < 5
    assert len(sink.spool) == 40  # the one being written is spooled first, in order
    assert sink.health().backlog == 40
    inner.gate.set()  # the server answers again
    wait_until(lambda: len(sink.spool) == 0, timeout_s=10, what="the spool delivered")
    sink.close()
    assert inner.written == list(range(40))  # in order, each once
    assert spooled(metrics) == spooled(metrics, "delivered") == 40


def test_a_failing_server_gets_the_batches_in_order_once_back_asked_to_answer_first(
        tmp_path: Path) -> None:
    inner = Scripted()
    inner.down = SinkError("down", retryable=True)
    sink, metrics = make(tmp_path, inner)
    for n in range(20):
        sink.write(batch(n))
    wait_until(lambda: inner.checks >= 3, timeout_s=10, what="retries asking /ping first")
    attempts = inner.attempts
    assert attempts <= 2, "while /ping fails, no write is tried"
    assert sample(metrics, "wattline_sink_write_retries_total", sink="influxdb") >= 3
    assert not sink.health().healthy and sink.health().last_error == "down"
    inner.down = None
    wait_until(lambda: len(inner.written) == 20 and sink.backlog == 0, timeout_s=10,
               what="everything delivered")
    assert sink.health().healthy
    sink.close()
    assert inner.written == list(range(20))


def test_flush_spools_what_the_writer_holds_and_close_does_not_wait_for_a_hang(
        tmp_path: Path) -> None:
    inner = Scripted()
    inner.gate.clear()
    sink, _ = make(tmp_path, inner, slow_after_s=60.0)
    for n in range(5):
        sink.write(batch(n))
    wait_until(inner.started.is_set, timeout_s=5, what="the first write under way")
    assert len(sink.spool) == 0  # all in memory: the write is not yet late
    assert sink.flush(0.0)
    assert len(sink.spool) == 5
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 10
    reopened = Spool(tmp_path / "spool", 1 << 20)
    got = []
    while (segment := reopened.oldest()) is not None:
        got += reopened.read(segment)["time_ms"].to_pylist()
        reopened.remove(segment)
    assert got == [0, 1, 2, 3, 4]
    inner.gate.set()


def test_a_batch_refused_for_good_goes_to_the_dead_letters_and_the_rest_flows(
        tmp_path: Path) -> None:
    inner = Scripted()
    refusals = iter([SinkError("HTTP 400: no", retryable=False)])

    original = inner.write

    def write(table: pa.Table) -> None:
        if table["time_ms"][0].as_py() == 1:
            raise next(refusals)
        original(table)

    inner.write = write  # type: ignore[method-assign]
    sink, metrics = make(tmp_path, inner)
    for n in range(3):
        sink.write(batch(n))
    wait_until(lambda: inner.written == [0, 2], timeout_s=10, what="the others written")
    sink.close()
    (dead,) = (tmp_path / "dead").glob("dead-*-intensity.arrow")
    assert ipc.open_file(str(dead)).read_all()["time_ms"].to_pylist() == [1]
    assert "HTTP 400" in dead.with_suffix(".txt").read_text()
    assert sample(metrics, "wattline_dead_letter_rows_total", sink="influxdb") == 1


def test_a_spool_that_cannot_take_a_batch_holds_the_pipeline_back(tmp_path: Path) -> None:
    class FullSpool(Spool):
        def append(self, table: pa.Table, kind: str):  # type: ignore[no-untyped-def]
            raise SpoolError(28, "cannot spool: no space left on device")

    inner = Scripted()
    inner.down = SinkError("down", retryable=True)
    metrics = CollectorMetrics()
    sink = SpooledSink(inner, FullSpool(tmp_path / "spool", 1 << 20), metrics,
                       retry_min_s=0.01, retry_max_s=0.02, queue_batches=2)
    sink.open()
    sink.write(batch(0))
    sink.write(batch(1))
    with pytest.raises(SinkError) as err:
        sink.write(batch(2))
    assert err.value.retryable and "no space" in str(err.value)
    assert sample(metrics, "wattline_spool_errors_total") >= 1
    inner.down = None  # the server back: what memory held is written, nothing lost
    wait_until(lambda: inner.written == [0, 1], timeout_s=10, what="the held batches")
    sink.write(batch(2))
    wait_until(lambda: inner.written == [0, 1, 2], timeout_s=10, what="the retried batch")
    sink.close()


def test_the_queue_without_a_spool_writes_in_order_and_holds_back_when_full() -> None:
    inner = Scripted()
    inner.gate.clear()
    metrics = CollectorMetrics()
    sink = QueuedSink(inner, metrics, queue_batches=3, put_wait_s=0.05, retry_min_s=0.01)
    sink.open()
    for n in range(3):
        sink.write(batch(n))
    with pytest.raises(SinkError) as err:
        sink.write(batch(3))  # the fan-out retries this with backoff
    assert err.value.retryable and "behind" in str(err.value)
    inner.gate.set()
    wait_until(lambda: inner.written == [0, 1, 2], timeout_s=10, what="the queue written")
    sink.write(batch(3))
    sink.close()
    assert inner.written == [0, 1, 2, 3]


def _partly_refusing(inner: Scripted) -> None:
    """``inner`` refuses the rows 1 and 3 of every batch, as an InfluxDB 1.x partial write
    does: the others count as written."""
    def write(table: pa.Table) -> None:
        times = table["time_ms"].to_pylist()
        inner.written.extend(t for i, t in enumerate(times) if i not in (1, 3))
        raise SinkError("partial write", retryable=False,
                        rejected={1: "conflict at 1", 3: "conflict at 3"})

    inner.write = write  # type: ignore[method-assign]


def test_of_a_partial_write_only_the_refused_rows_go_to_the_dead_letters(
        tmp_path: Path) -> None:
    inner = Scripted()
    _partly_refusing(inner)
    sink, metrics = make(tmp_path, inner)
    sink.write(pa.table({"time_ms": [10, 11, 12, 13, 14], "value": [1.0] * 5}))
    wait_until(lambda: list((tmp_path / "dead").glob("dead-*.txt")), timeout_s=10,
               what="the dead letters")
    sink.close()
    (dead,) = (tmp_path / "dead").glob("dead-*-intensity.arrow")
    assert ipc.open_file(str(dead)).read_all()["time_ms"].to_pylist() == [11, 13]
    assert dead.with_suffix(".txt").read_text() == "conflict at 1\nconflict at 3\n"
    assert sample(metrics, "wattline_dead_letter_rows_total", sink="influxdb") == 2
    assert inner.written == [10, 12, 14] and not len(sink.spool)


def test_the_queue_without_a_spool_counts_only_the_refused_rows_of_a_partial_write() -> None:
    inner = Scripted()
    _partly_refusing(inner)
    metrics = CollectorMetrics()
    sink = QueuedSink(inner, metrics, retry_min_s=0.01)
    sink.open()
    sink.write(pa.table({"time_ms": [10, 11, 12, 13, 14], "value": [1.0] * 5}))
    wait_until(lambda: sample(metrics, "wattline_readings_dropped_total",
                              reason="sink_rejected") == 2, timeout_s=10, what="the count")
    sink.close()
    assert inner.written == [10, 12, 14]
