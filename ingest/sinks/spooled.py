"""``SpooledSink``: a network sink (the InfluxDB writer) on a thread of its own, with a spool.

The pipeline never waits for the server: ``write`` hands the batch over and returns.

- While the spool is empty and the writer keeps up (its queue has room and its current write has
  not gone unanswered for ``slow_after_s``), the batch joins a short in-memory queue
  (``queue_batches`` batches, ``queue_rows`` rows) that the writer thread delivers in order.
- Otherwise the batch goes to the on-disk spool (``wattline.ingest.durable.spool``), fsynced,
  and so does every later batch until the spool is empty again. Before the first one, whatever
  the writer holds in memory (and the batch it is writing) is spooled too, so the spool always
  holds every undelivered batch in the order they were made. A batch spooled while its write was
  under way, and then written, has its segment removed: it is not sent twice.
- A write that fails with a retryable error (down, overloaded, unreachable, timed out) sends the
  writer's batches to the spool the same way; the writer then delivers the spool oldest first,
  with exponential backoff and jitter between failures (honouring ``Retry-After``), logging once
  a minute while the failure lasts. After a failure it asks the server to answer
  (``inner.check``, a ``/ping`` bounded by the short health timeout) first, so a server that
  hangs costs that timeout per try.
- A batch the server refuses for good (a 4xx other than 408/429) goes to the dead-letter folder
  (``dead_letters``) with the server's message, and is counted; it is not retried. Of a partial
  write only the refused rows go there.
- When the spool cannot take a batch (disk full, read-only), ``write`` raises a retryable
  ``SinkError``: the pipeline then holds back and retries, which slows the broker down rather
  than losing anything. The failure is counted in ``wattline_spool_errors_total`` and logged.
- ``flush(wait_s)`` waits at most ``wait_s`` for the in-memory batches to be written, then
  spools the rest (at once when the write under way is unanswered for ``slow_after_s``); the
  pipeline calls it before each checkpoint, so no result whose messages a checkpoint covers
  lives in memory only. ``close`` flushes (5 s at most), then gives the writer ``slow_after_s``
  to finish; what is spooled stays on disk and is delivered after the next start.

The pipeline thread calls the ``write`` methods, ``flush`` and ``close``; only the
writer thread touches the inner sink after ``open``; ``health`` may be called from any
thread. They share one lock, never held during a request to the server.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from wattline.ingest.durable.spool import Segment, Spool, SpoolError
from wattline.ingest.log_limit import Outage
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import WRITES, IntensitySink, SinkError, SinkHealth
from wattline.ingest.sinks.dead_letters import DeadLetters

log = logging.getLogger(__name__)

QUEUE_BATCHES = 32
"""Batches the writer may hold in memory before new ones go to the spool."""
QUEUE_ROWS = 50_000
"""Rows the writer may hold in memory before new batches go to the spool."""
CLOSE_FLUSH_S = 5.0
"""How long ``close`` waits for the in-memory batches to be written before spooling them."""


@dataclass(eq=False)
class _Held:
    """A batch the writer has to deliver, and its spool segment when it has one."""

    table: pa.Table
    kind: str
    segment: Segment | None = None


class SpooledSink:
    """``inner`` on a writer thread with a spool in front of it; see the module doc."""

    def __init__(
        self,
        inner: IntensitySink,
        spool: Spool,
        metrics: CollectorMetrics,
        *,
        dead_letters: DeadLetters | None = None,
        dead_letter_dir: str | Path | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        slow_after_s: float | None = None,
        queue_batches: int = QUEUE_BATCHES,
        queue_rows: int = QUEUE_ROWS,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.spool = spool
        self.metrics = metrics
        self.dead_letters = dead_letters or DeadLetters(dead_letter_dir)
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.slow_after_s = (float(getattr(inner, "health_timeout_s", 2.0))
                             if slow_after_s is None else slow_after_s)
        self.queue_batches = queue_batches
        self.queue_rows = queue_rows
        self._lock = threading.Condition()  # reentrant: guards everything below
        self._memory: deque[_Held] = deque()
        self._memory_rows = 0
        self._inflight: _Held | None = None
        self._inflight_since: float | None = None
        self._probe = False  # ask the server to answer before the next write
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._outage = Outage()  # logs a failing server when it starts, then once a minute
        self._dropped_seen = dict(spool.dropped_rows)
        self._last_error: str | None = None  # the latest failure not followed by a delivery

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self.inner.open()
        if len(self.spool):
            log.warning("spool %s holds %d batch(es) (%d bytes) from before: delivering them "
                        "first", self.spool.directory, len(self.spool), self.spool.bytes)
        self._publish_gauges()
        self._thread = threading.Thread(target=self._run, name=f"wattline-writer-{self.name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.flush(CLOSE_FLUSH_S)
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            # A write under way is of a spooled batch: it may finish, or be sent again
            # after the next start. A server that answers does so within the health timeout.
            self._thread.join(timeout=min(self.slow_after_s, CLOSE_FLUSH_S))
        with self._lock:
            self._closed = True
            left = len(self.spool)
        if left:
            log.warning("stopping with %d batch(es) still spooled in %s; they are delivered "
                        "after the next start", left, self.spool.directory)
        self._publish_gauges()
        self.inner.close()

    def inner_timeout_s(self) -> float:
        return float(getattr(self.inner, "timeout_s", 10.0))

    @property
    def backlog(self) -> int:
        """Batches not yet delivered: spooled, or held in memory by the writer."""
        with self._lock:
            held = len(self._memory) + (self._inflight is not None
                                        and self._inflight.segment is None)
            return len(self.spool) + held

    def health(self) -> SinkHealth:
        """The backlog and the latest failure to deliver, cleared by the next delivery, or
        a write unanswered for ``slow_after_s``; healthy while neither. Any thread."""
        backlog = self.backlog
        with self._lock:
            since = self._inflight_since
            error = self._last_error
        if error is None and since is not None:
            waited = time.monotonic() - since
            if waited >= self.slow_after_s:
                error = f"{self.name} has not answered a write for {waited:.1f} s"
        return SinkHealth(healthy=error is None, backlog=backlog, last_error=error)

    # -- the pipeline side -------------------------------------------------------------------

    def write(self, table: pa.Table) -> None:
        self._submit(table, "intensity")

    def write_alerts(self, table: pa.Table) -> None:
        self._submit(table, "alerts")

    def write_batches(self, table: pa.Table) -> None:
        self._submit(table, "batches")

    def write_periods(self, table: pa.Table) -> None:
        self._submit(table, "periods")

    def flush(self, wait_s: float = 0.0) -> bool:
        """Wait at most ``wait_s`` for the batches held in memory to be written, then spool
        the rest; ``False`` when the spool could not take them (logged and counted)."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._holds_unspooled() and self._running():
                now = time.monotonic()
                remaining = min(deadline, self._late_at()) - now
                if remaining <= 0:
                    break  # out of time, or the server is not answering: no use waiting
                self._lock.wait(remaining)
            try:
                self._spool_held()
            except SpoolError as exc:
                self._spool_failed(exc)
                return False
        self._publish_gauges()
        return True

    def _submit(self, table: pa.Table, kind: str) -> None:
        if table.num_rows == 0 or not hasattr(self.inner, WRITES[kind]):
            return  # nothing, or what the inner sink does not keep
        with self._lock:
            if self._takes_in_memory(table.num_rows):
                self._memory.append(_Held(table, kind))
                self._memory_rows += table.num_rows
                self._lock.notify_all()
                return
            try:
                self._spool_held()  # everything older first, in order
                self._append(table, kind)
            except SpoolError as exc:
                self._spool_failed(exc)
                raise SinkError(str(exc), retryable=True) from None
            self._warned.discard("spool")
            self._lock.notify_all()
        self._publish_gauges()

    def _takes_in_memory(self, rows: int) -> bool:
        """Whether a new batch may wait in memory: nothing spooled, room in the queue, and
        the writer's current write not unanswered for ``slow_after_s``."""
        if len(self.spool) or not self._running():
            return False
        if self._memory and (len(self._memory) >= self.queue_batches
                             or self._memory_rows + rows > self.queue_rows):
            return False
        if time.monotonic() >= self._late_at():
            self._warn_once("slow", "%s has not answered a write for %.1f s; spooling new "
                            "batches to %s meanwhile", self.name, self.slow_after_s,
                            self.spool.directory)
            return False
        return True

    def _late_at(self) -> float:
        """When the write under way counts as unanswered (infinity when none is)."""
        since = self._inflight_since
        return math.inf if since is None else since + self.slow_after_s

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def _holds_unspooled(self) -> bool:
        return bool(self._memory) or (self._inflight is not None
                                      and self._inflight.segment is None)

    def _spool_held(self) -> None:
        """Spool the batch being written (unless it is spooled) and the in-memory queue, in
        order; ``SpoolError`` leaves what could not be spooled where it was."""
        held = self._inflight
        if held is not None and held.segment is None:
            held.segment = self._append(held.table, held.kind)
        while self._memory:
            first = self._memory[0]
            self._append(first.table, first.kind)
            self._memory.popleft()
            self._memory_rows -= first.table.num_rows

    def _append(self, table: pa.Table, kind: str) -> Segment:
        segment = self.spool.append(table, kind)
        self.metrics.spool_rows.labels(kind, "spooled").inc(table.num_rows)
        self._count_drops()
        return segment

    def _spool_failed(self, exc: SpoolError) -> None:
        self._last_error = str(exc)
        self.metrics.spool_errors.inc()
        self._warn_once("spool", "%s; holding the pipeline back instead (nothing is "
                        "dropped, the broker is slowed down)", exc)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.retry_min_s
        while not self._stop.is_set():
            self._publish_gauges()
            with self._lock:
                held = self._next()
                if held is None:
                    self._lock.wait(1.0)
                    continue
                self._inflight, self._inflight_since = held, time.monotonic()
            error = self._attempt(held)
            with self._lock:
                self._inflight = self._inflight_since = None
                if self._closed:
                    return
                if error is None:
                    self._delivered(held)
                else:
                    self._failed(held, error)
                self._lock.notify_all()
            if error is None:
                delay = self.retry_min_s
                if (ended := self._outage.recovered()) is not None:
                    log.info("%s answers again after %.0f s (%d failed writes)", self.name, *ended)
                continue
            if self._outage.failed() is not None:  # when it starts, then once a minute
                self._warned.add("down")
                log.warning("%s failing for %.0f s (%d writes): %s; spooling to %s, delivered "
                            "in order once it is back", self.name, self._outage.lasted_s,
                            self._outage.failures, error, self.spool.directory)
            if error.retry_after_s is not None:
                delay = max(delay, min(error.retry_after_s, self.retry_max_s))
            self._stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.retry_max_s)

    def _next(self) -> _Held | None:
        """The oldest undelivered batch: the in-memory queue's head (the spool is empty
        while it has one), else the spool's oldest segment."""
        if self._memory:
            held = self._memory.popleft()
            self._memory_rows -= held.table.num_rows
            return held
        while (segment := self.spool.oldest()) is not None:
            try:
                return _Held(self.spool.read(segment), segment.kind, segment)
            except SpoolError as exc:
                self.metrics.spool_errors.inc()
                log.error("%s; moving it to the dead letters", exc)
                self.dead_letters.keep_file(segment.path, str(exc))
                self.spool.remove(segment)
        return None

    def _attempt(self, held: _Held) -> SinkError | None:
        """Deliver one batch (asking the server to answer first after a failure); the
        retryable error, if any. A refusal for good is dead-lettered here."""
        check = getattr(self.inner, "check", None)
        try:
            if self._probe and check is not None:
                check()
            self._probe = False
            try:
                getattr(self.inner, WRITES[held.kind])(held.table)
            except SinkError as exc:
                if exc.retryable:
                    raise
                self._refused(held, *exc.refused_rows(held.table))
            except Exception as exc:  # a bug must not stop the writer
                log.exception("%s failed unexpectedly on a batch; it goes to the dead letters",
                              self.name)
                self._refused(held, held.table, f"unexpected error: {exc!r}")
        except SinkError as exc:
            return exc
        return None

    def _refused(self, held: _Held, table: pa.Table, reason: str) -> None:
        rows = table.num_rows
        self.metrics.dead_letter_rows.labels(self.name).inc(rows)
        self.dead_letters.keep(table, held.kind,
                               f"{self.name} refused {rows} {held.kind} row(s) for good", reason)

    def _delivered(self, held: _Held) -> None:
        self._last_error = None
        segment = held.segment
        if segment is None:
            return
        oldest = self.spool.oldest()
        if oldest is not None and oldest.sequence == segment.sequence:
            self.spool.remove(segment)
            self.metrics.spool_rows.labels(segment.kind, "delivered").inc(held.table.num_rows)
        if not len(self.spool) and "down" in self._warned:
            log.warning("%s is back: the spool has been delivered", self.name)
            self._warned.discard("down")
        self._warned.discard("slow")

    def _failed(self, held: _Held, error: SinkError) -> None:
        self._last_error = str(error)
        self._probe = True
        self.metrics.sink_errors.labels(self.name).inc()
        self.metrics.sink_retries.labels(self.name).inc()
        if held.segment is None:  # the oldest batch: back to the front, then all to disk
            self._memory.appendleft(held)
            self._memory_rows += held.table.num_rows
        try:
            self._spool_held()
        except SpoolError as exc:
            self._spool_failed(exc)

    # -- metrics, logs -----------------------------------------------------------------------

    def _count_drops(self) -> None:
        for kind, rows in self.spool.dropped_rows.items():
            if new := rows - self._dropped_seen[kind]:
                self.metrics.spool_rows.labels(kind, "dropped").inc(new)
                self._dropped_seen[kind] = rows

    def _publish_gauges(self) -> None:
        with self._lock:
            self.metrics.spool_bytes.set(self.spool.bytes)
            self.metrics.spool_segments.set(len(self.spool))
            self.metrics.spool_oldest_age.set(self.spool.oldest_age_s())

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)
