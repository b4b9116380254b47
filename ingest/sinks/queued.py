"""``QueuedSink``: a network sink on a writer thread, for a daemon without a spool.

Without --state-dir or --spool-dir there is nowhere on disk to keep batches, so:

- ``write`` puts the batch in a bounded in-memory queue (``queue_batches``) and
  returns; the writer thread delivers the queue in order, retrying a batch that fails
  with a retryable error with backoff (0.5 s doubling to 30 s, at least the server's
  ``Retry-After``), asking the server to answer (``inner.check``) before each retry;
- a full queue holds the pipeline back: ``write`` waits up to ``put_wait_s`` for
  room, then raises a retryable ``SinkError``, which the fan-out retries with its own
  backoff, so the broker is slowed down rather than anything dropped;
- a batch (or, of a partial write, the rows) refused for good is dropped, logged and counted
  (``wattline_readings_dropped_total{reason="sink_rejected"}``);
- ``close`` waits up to ``close_wait_s`` for the queue to be written, then logs how
  many points were not (they are lost: this is why production wants --state-dir).

A server that answers slowly is written to while the pipeline goes on, up to the
queue's depth; past it, intake slows to what the server takes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque

import pyarrow as pa

from wattline.ingest.log_limit import Outage
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import WRITES, IntensitySink, SinkError, SinkHealth

__all__ = ["QueuedSink"]

log = logging.getLogger(__name__)


class QueuedSink:
    """``inner`` behind a bounded queue and a writer thread; see the module doc."""

    def __init__(self, inner: IntensitySink, metrics: CollectorMetrics, *,
                 queue_batches: int = 32, put_wait_s: float = 1.0, close_wait_s: float = 8.0,
                 retry_min_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics
        self.queue_batches = queue_batches
        self.put_wait_s = put_wait_s
        self.close_wait_s = close_wait_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._lock = threading.Condition()
        self._queue: deque[tuple[pa.Table, str]] = deque()  # the head is being written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    def open(self) -> None:
        self.inner.open()
        self._thread = threading.Thread(target=self._run, name=f"wattline-writer-{self.name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        deadline = time.monotonic() + self.close_wait_s
        with self._lock:
            while self._queue and self._thread is not None and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            lost = sum(t.num_rows for t, _ in self._queue)
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if lost:
            log.error("shutting down with %s still failing; %d points not written to it "
                      "(there is no spool without --state-dir)", self.name, lost)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.inner.close()

    def health(self) -> SinkHealth:
        """Whether the server answers ``/ping`` now (one request, bounded by the health
        timeout) and no failure since the last delivery; the backlog is the queue's."""
        with self._lock:
            backlog = len(self._queue)
        error = self._last_error
        check = getattr(self.inner, "check", None)
        if error is None and check is not None:
            try:
                check()
            except SinkError as exc:
                error = str(exc)
        return SinkHealth(healthy=error is None, backlog=backlog, last_error=error)

    def write(self, table: pa.Table) -> None:
        self._put(table, "intensity")

    def write_alerts(self, table: pa.Table) -> None:
        if hasattr(self.inner, "write_alerts"):
            self._put(table, "alerts")

    def write_batches(self, table: pa.Table) -> None:
        if hasattr(self.inner, "write_batches"):
            self._put(table, "batches")

    def write_periods(self, table: pa.Table) -> None:
        if hasattr(self.inner, "write_periods"):
            self._put(table, "periods")

    def _put(self, table: pa.Table, kind: str) -> None:
        if table.num_rows == 0:
            return
        deadline = time.monotonic() + self.put_wait_s
        with self._lock:
            while len(self._queue) >= self.queue_batches:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SinkError(f"{self.name} is behind ({len(self._queue)} batches "
                                    f"queued; {self._last_error or 'writes are slow'})",
                                    retryable=True)
                self._lock.wait(remaining)
            self._queue.append((table, kind))
            self._lock.notify_all()

    def _run(self) -> None:
        delay = self.retry_min_s
        failed = False
        outage = Outage()
        while not self._stop.is_set():
            with self._lock:
                if not self._queue:
                    self._lock.wait(1.0)
                    continue
                table, kind = self._queue[0]
            try:
                check = getattr(self.inner, "check", None)
                if failed and check is not None:
                    check()
                write = getattr(self.inner, WRITES[kind])
                write(table)
            except SinkError as exc:
                self.metrics.sink_errors.labels(self.name).inc()
                if exc.retryable:
                    self._last_error = str(exc)
                    self.metrics.sink_retries.labels(self.name).inc()
                    due = outage.failed()
                    if due == "start":
                        log.warning("%s failed (%s); retrying with backoff, holding the "
                                    "pipeline (and so the broker) back once %d batches wait",
                                    self.name, exc, self.queue_batches)
                    elif due == "still":
                        log.warning("%s still failing after %.0f s (%d failed writes): %s; "
                                    "retrying with backoff", self.name, outage.lasted_s,
                                    outage.failures, exc)
                    failed = True
                    if exc.retry_after_s is not None:
                        delay = max(delay, min(exc.retry_after_s, self.retry_max_s))
                    self._stop.wait(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                refused = exc.refused_rows(table)[0].num_rows
                log.error("%s refused %d of %d points for good: %s; they are dropped for "
                          "this sink", self.name, refused, table.num_rows, exc)
                self.metrics.readings_dropped.labels("sink_rejected").inc(refused)
            else:
                ended = outage.recovered()
                if ended is not None:
                    log.warning("%s is back after %.0f s (%d failed writes)", self.name, *ended)
                failed, delay, self._last_error = False, self.retry_min_s, None
            with self._lock:
                self._queue.popleft()
                self._lock.notify_all()
