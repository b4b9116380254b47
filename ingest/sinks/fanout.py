"""``FanOut``: every sink behind one call, with the retries and counting they share.

The pipeline hands each results batch to ``write``, each batch of alert starts
and ends to ``write_alerts``, of closed batches to ``write_batches`` and of period
rows to ``write_periods``, once; the fan-out passes it to every sink in order
(results to all, the others to those that have the method) and, per sink name:

- counts the points taken (``wattline_sink_points_written_total``) and the failed
  writes (``wattline_sink_write_errors_total``);
- on a retryable ``SinkError``, retries the same batch with exponential backoff
  (0.5 s doubling to 30 s, at least the server's ``Retry-After``), counting each
  retry; logging when the failure starts, once a minute while it lasts and when the
  sink writes again. This holds the pipeline, and through its bounded
  queue the broker, back: nothing is dropped while a sink is down. ``on_wait`` is
  called before each wait, so a pipeline waiting on a sink is not taken for hung;
- on a sink's refusal for good, drops the batch for that sink alone and counts its
  rows as ``wattline_readings_dropped_total{reason="sink_rejected"}``;
- once ``stopping`` is set, gives up a sink after a wait of 8 s or more, logging
  how many points it did not get.

Before any sink sees a batch, rows with a NaN or infinite value (``finite``) are
taken out of it: they go to the dead-letter folder (``dead_letters``) with the
field and value, are counted as
``wattline_readings_dropped_total{reason="non_finite_result"}``, and the rest of the
batch goes on to every sink.

``flush(wait_s)`` asks every sink that holds batches on a writer thread (the
InfluxDB writer) to make them durable: the pipeline calls it before each checkpoint.

Sinks with ``counted = False`` (see ``wattline.ingest.sinks.base``) are called
without any of this. Only the pipeline thread calls ``write``/``write_alerts``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import pyarrow as pa

from wattline.ingest.log_limit import Outage
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import IntensitySink, SinkError
from wattline.ingest.sinks.dead_letters import DeadLetters
from wattline.ingest.sinks.finite import split_non_finite

__all__ = ["FanOut"]

log = logging.getLogger("wattline.pipeline")

Write = Callable[[pa.Table], None]


class FanOut:
    """``sinks`` as one; see the module doc."""

    def __init__(
        self,
        sinks: Sequence[IntensitySink],
        metrics: CollectorMetrics,
        *,
        stopping: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.metrics = metrics
        self.dead_letters = dead_letters or DeadLetters(None)
        self._stopping = stopping or threading.Event()
        self._on_wait = on_wait
        self._outages: dict[str, Outage] = {sink.name: Outage() for sink in self.sinks}
        # Resolved once, so a batch costs one call per sink and nothing more.
        self._results = [(sink, sink.write, getattr(sink, "counted", True))
                         for sink in self.sinks]
        self._alerts: list[tuple[IntensitySink, Write, bool]] = [
            (sink, sink.write_alerts, getattr(sink, "counted", True))  # type: ignore[attr-defined]
            for sink in self.sinks if hasattr(sink, "write_alerts")
        ]
        self._batches: list[tuple[IntensitySink, Write, bool]] = [
            (sink, sink.write_batches, getattr(sink, "counted", True))  # type: ignore[attr-defined]
            for sink in self.sinks if hasattr(sink, "write_batches")
        ]
        self._periods: list[tuple[IntensitySink, Write, bool]] = [
            (sink, sink.write_periods, getattr(sink, "counted", True))  # type: ignore[attr-defined]
            for sink in self.sinks if hasattr(sink, "write_periods")
        ]

    def open(self) -> None:
        """Open every sink, in order."""
        for sink in self.sinks:
            sink.open()

    def close(self) -> None:
        """Close every sink; a failing close is logged and does not keep the others open."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - a failing close must not hide the others
                log.error("closing sink %s failed: %s", sink.name, exc)

    def flush(self, wait_s: float = 0.0) -> bool:
        """Every batch a sink holds in memory made durable (delivered, or spooled), waiting
        at most ``wait_s`` for deliveries; ``False`` if one could not be (logged)."""
        ok = True
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None and not flush(wait_s):
                ok = False
        return ok

    def write(self, table: pa.Table) -> None:
        """One results batch to every sink."""
        self._to_each(self._results, table, "intensity")

    def write_alerts(self, table: pa.Table) -> None:
        """One batch of alert starts and ends to every sink that takes alerts."""
        self._to_each(self._alerts, table, "alerts")

    def write_batches(self, table: pa.Table) -> None:
        """One batch of closed batches (``energy_batch``) to every sink that takes them."""
        self._to_each(self._batches, table, "batches")

    def write_periods(self, table: pa.Table) -> None:
        """One batch of period rows (``PERIOD_SCHEMA``) to every sink that takes them."""
        self._to_each(self._periods, table, "periods")

    def _to_each(self, writes: list[tuple[IntensitySink, Write, bool]], table: pa.Table,
                 kind: str) -> None:
        table, bad, reasons = split_non_finite(table)
        if bad.num_rows:
            self.metrics.readings_dropped.labels("non_finite_result").inc(bad.num_rows)
            self.dead_letters.keep(bad, kind, f"{bad.num_rows} {kind} row(s) with a NaN or "
                                   "infinite value were kept from every sink",
                                   "\n".join(reasons))
            if not table.num_rows:
                return
        for sink, write, counted in writes:
            if counted:
                self._write_retrying(sink.name, write, table)
            else:
                write(table)

    def _write_retrying(self, name: str, write: Write, table: pa.Table) -> None:
        delay = 0.5
        while True:
            try:
                write(table)
                self.metrics.sink_points.labels(name).inc(table.num_rows)
                ended = self._outages[name].recovered()
                if ended is not None:
                    log.info("sink %s is writing again after %.0f s (%d failed writes)",
                             name, *ended)
                return
            except SinkError as exc:
                self.metrics.sink_errors.labels(name).inc()
                if not exc.retryable:
                    refused = exc.refused_rows(table)[0].num_rows
                    log.error("sink %s refused %d of %d points for good: %s; they are "
                              "dropped for this sink", name, refused, table.num_rows, exc)
                    self.metrics.readings_dropped.labels("sink_rejected").inc(refused)
                    self.metrics.sink_points.labels(name).inc(table.num_rows - refused)
                    return
                due = self._outages[name].failed()
                if due == "start":
                    log.warning("sink %s failed (%s); retrying with backoff, holding the "
                                "pipeline (and so the broker) back meanwhile", name, exc)
                elif due == "still":
                    log.warning("sink %s still failing after %.0f s (%d failed writes): %s; "
                                "retrying, the pipeline (and so the broker) held back", name,
                                self._outages[name].lasted_s, self._outages[name].failures, exc)
                self.metrics.sink_retries.labels(name).inc()
                if self._on_wait is not None:
                    self._on_wait()  # waiting on a sink is not a hang
                if exc.retry_after_s is not None:
                    delay = min(max(delay, exc.retry_after_s), 30.0)
                if self._stopping.wait(delay) and delay >= 8:
                    log.error("shutting down with sink %s still failing; %d points not "
                              "written to it", name, table.num_rows)
                    return
                delay = min(delay * 2, 30.0)
