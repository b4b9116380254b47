"""``SpooledSink``: store-and-forward in front of a network sink (the InfluxDB writer).

While the server takes writes, each batch goes straight through. When a write fails
with a retryable error (server down, overloaded, unreachable), the batch goes to the
on-disk spool (``wattline.ingest.durable.spool``) instead, and so does every later batch until
the spool is empty again; a drain thread delivers the spooled batches oldest first,
with exponential backoff and jitter between failed attempts (honouring
``Retry-After``). So the pipeline never waits for the server, and the server sees
every batch in the order it was made.

- A batch the server refuses for good (a 4xx other than 408/429) goes to the
  dead-letter folder as an Arrow file with a ``.txt`` beside it holding the
  server's message, and is counted; it is not retried.
- When the spool cannot take a batch (disk full, read-only), ``write`` raises a
  retryable ``SinkError``: the pipeline then holds back and retries, which slows
  the broker down rather than losing anything. The failure is counted in
  ``wattline_spool_errors_total`` and logged.
- ``close`` stops the drain thread; what is still spooled stays on disk and is
  delivered after the next start.

Only two threads touch the inner sink, and never at once: the pipeline thread
writes directly only while the spool is empty, and the drain thread writes only
while it is not.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from pathlib import Path

import pyarrow as pa

from wattline.ingest.durable.files import write_arrow_atomically, write_atomically
from wattline.ingest.durable.spool import Segment, Spool, SpoolError
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import IntensitySink, SinkError, SinkHealth

log = logging.getLogger(__name__)


class SpooledSink:
    """``inner`` with a spool in front of it; see the module doc."""

    def __init__(
        self,
        inner: IntensitySink,
        spool: Spool,
        metrics: CollectorMetrics,
        *,
        dead_letter_dir: str | Path | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.spool = spool
        self.metrics = metrics
        self.dead_letter_dir = Path(dead_letter_dir) if dead_letter_dir else None
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._dropped_seen = dict(spool.dropped_rows)
        self._dead_logged_s = -math.inf
        self._dead_since_log = 0
        self._last_error: str | None = None  # the latest failure not followed by a delivery

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self.inner.open()
        if len(self.spool):
            log.warning("spool %s holds %d batch(es) (%d bytes) from before: delivering them "
                        "first", self.spool.directory, len(self.spool), self.spool.bytes)
        self._publish_gauges()
        self._thread = threading.Thread(target=self._drain, name=f"wattline-drain-{self.name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.inner_timeout_s() + 5)
        if len(self.spool):
            log.warning("stopping with %d batch(es) still spooled in %s; they are delivered "
                        "after the next start", len(self.spool), self.spool.directory)
        self.inner.close()

    def inner_timeout_s(self) -> float:
        return float(getattr(self.inner, "timeout_s", 10.0))

    @property
    def backlog(self) -> int:
        """Batches waiting in the spool."""
        with self._lock:
            return len(self.spool)

    def health(self) -> SinkHealth:
        """The spool's backlog and the latest failure to deliver (direct or from the spool),
        cleared by the next delivery; healthy while that is none. Any thread."""
        with self._lock:
            backlog = len(self.spool)
        error = self._last_error
        return SinkHealth(healthy=error is None, backlog=backlog, last_error=error)

    # -- the pipeline side -------------------------------------------------------------------

    def write(self, table: pa.Table) -> None:
        self._submit(table, "intensity")

    def write_alerts(self, table: pa.Table) -> None:
        if hasattr(self.inner, "write_alerts"):
            self._submit(table, "alerts")

    def _submit(self, table: pa.Table, kind: str) -> None:
        if table.num_rows == 0:
            return
        with self._lock:
            direct = len(self.spool) == 0
        if direct:
            try:
                self._deliver(table, kind)
                self._last_error = None
                return
            except SinkError as exc:
                self._last_error = str(exc)
                self.metrics.sink_errors.labels(self.name).inc()
                self._warn_once("down", "%s failed (%s); spooling to %s and delivering in order "
                                "once it is back", self.name, exc, self.spool.directory)
        with self._lock:
            try:
                self.spool.append(table, kind)
            except SpoolError as exc:
                self._last_error = str(exc)
                self.metrics.spool_errors.inc()
                self._warn_once("spool", "%s; holding the pipeline back instead (nothing is "
                                "dropped, the broker is slowed down)", exc)
                raise SinkError(str(exc), retryable=True) from None
            self._warned.discard("spool")
            self.metrics.spool_rows.labels(kind, "spooled").inc(table.num_rows)
            self._count_drops()
        self._publish_gauges()
        self._wake.set()

    def _deliver(self, table: pa.Table, kind: str) -> None:
        """Write to the inner sink; a batch refused for good goes to the dead letters."""
        write = self.inner.write if kind == "intensity" else self.inner.write_alerts  # type: ignore[attr-defined]
        try:
            write(table)
        except SinkError as exc:
            if exc.retryable:
                raise
            self._dead_letter(table, kind, str(exc))

    # -- the drain thread --------------------------------------------------------------------

    def _drain(self) -> None:
        delay = self.retry_min_s
        while not self._stop.is_set():
            self._publish_gauges()
            with self._lock:
                segment = self.spool.oldest()
            if segment is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                table = self.spool.read(segment)
            except SpoolError as exc:
                self.metrics.spool_errors.inc()
                log.error("%s; moving it to the dead letters", exc)
                self._dead_letter_file(segment, str(exc))
                continue
            try:
                self._deliver(table, segment.kind)
            except SinkError as exc:
                self._last_error = str(exc)
                self.metrics.sink_errors.labels(self.name).inc()
                self.metrics.sink_retries.labels(self.name).inc()
                self._warn_once("down", "%s failed (%s); %d batch(es) spooled, retrying with "
                                "backoff", self.name, exc, len(self.spool))
                if exc.retry_after_s is not None:
                    delay = max(delay, min(exc.retry_after_s, self.retry_max_s))
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = self.retry_min_s
            self._last_error = None
            with self._lock:
                self.spool.remove(segment)
                self.metrics.spool_rows.labels(segment.kind, "delivered").inc(table.num_rows)
                empty = len(self.spool) == 0
            if empty and "down" in self._warned:
                log.warning("%s is back: the spool has been delivered", self.name)
                self._warned.discard("down")

    # -- dead letters, metrics, logs ---------------------------------------------------------

    def _dead_letter(self, table: pa.Table, kind: str, reason: str) -> None:
        self.metrics.dead_letter_rows.labels(self.name).inc(table.num_rows)
        if self.dead_letter_dir is None:
            log.error("%s refused %d %s row(s) for good and there is no dead-letter folder "
                      "(--state-dir): they are dropped. The server said: %s",
                      self.name, table.num_rows, kind, reason)
            return
        stamp = f"{time.time_ns()}-{kind}"
        try:
            self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
            write_arrow_atomically(self.dead_letter_dir / f"dead-{stamp}.arrow", table)
            write_atomically(self.dead_letter_dir / f"dead-{stamp}.txt",
                             lambda f: f.write(reason.encode() + b"\n"))
        except OSError as exc:
            log.error("cannot write dead letters to %s: %s", self.dead_letter_dir, exc)
            return
        self._dead_since_log += 1
        now = time.monotonic()
        if now - self._dead_logged_s >= 60.0:
            log.error("%s refused %d %s row(s) for good; kept in %s (dead-%s.*), with %d "
                      "more batch(es) since the last such message; further ones are counted "
                      "in wattline_dead_letter_rows_total and logged once a minute. The server "
                      "said: %s", self.name, table.num_rows, kind, self.dead_letter_dir, stamp,
                      self._dead_since_log - 1, reason)
            self._dead_logged_s = now
            self._dead_since_log = 0

    def _dead_letter_file(self, segment: Segment, reason: str) -> None:
        with self._lock:
            if self.dead_letter_dir is not None:
                try:
                    self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
                    segment.path.rename(self.dead_letter_dir / f"unreadable-{segment.path.name}")
                except OSError as exc:
                    log.error("cannot move %s to the dead letters: %s", segment.path, exc)
            self.spool.remove(segment)

    def _count_drops(self) -> None:
        for kind, rows in self.spool.dropped_rows.items():
            new = rows - self._dropped_seen[kind]
            if new:
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
