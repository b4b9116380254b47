"""The collector's one-way pipeline: messages -> readings batch -> kernels -> sinks.

    MQTT network thread            pipeline thread
    -------------------            -------------------------------------------
    submit(topic, payload) --> [bounded queue] --> take a batch (size / age bounds)
                                                -> topics, payloads -> Readings
                                                -> kernels.advance -> Ticks
                                                -> results table -> every sink
                                                -> metrics

Lifecycle: build a ``Pipeline``, ``start()`` it (the sinks are opened first, so
downstream is ready before data flows), feed it with ``submit`` from any one
thread, and ``stop()`` it: the queue is drained, the last batch written and the
sinks closed. ``submit`` blocks while the queue is full, which holds back the
MQTT client's network loop and so slows the broker down instead of dropping.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from wattline.contract.reference_data import load_reference
from wattline.ingest.alerting import ALERT_SCHEMA, LineAlerts, kernel_windows
from wattline.ingest.config import Settings, settings_from_mapping
from wattline.ingest.decode.batch import BatchDecoder, Message
from wattline.ingest.decode.registry import MeterRegistry
from wattline.ingest.durable.checkpoint import load_checkpoint, save_checkpoint
from wattline.ingest.durable.wal import WalRecord, WriteAheadLog, read_wal
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.results import INTENSITY_SCHEMA, intensity_table
from wattline.ingest.sinks.base import IntensitySink, SinkError
from wattline.ingest.sources.handoff import Handoff
from wattline.kernels import DROP_REASONS, KernelConfig, Readings, Ticks, advance, new_state
from wattline.kernels.alerts import alert_state_arrays, alert_state_from_arrays
from wattline.kernels.state import grow_state

log = logging.getLogger("wattline.pipeline")

MAX_HELD_ACKS = 10_000
"""Acknowledgements held (the log could not be written) before a checkpoint is forced."""


class OncePerMinute:
    """Lets a log line through once per key per minute; the key set is bounded."""

    def __init__(self, period_s: float = 60.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period_s
        self._max = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._clock = clock

    def __call__(self, reason: str, topic: str) -> bool:
        now = self._clock()
        key = (reason, topic)
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            return False
        if len(self._last) >= self._max:
            self._last = {k: t for k, t in self._last.items() if now - t < self._period}
            if len(self._last) >= self._max:
                return False
        self._last[key] = now
        return True


def warm_up_kernels() -> float:
    """Run the kernels once on a few minutes of a made-up line, in a throwaway pipeline;
    returns the seconds it took.

    Numba loads compiled kernels from its cache on first call, or compiles them when
    the cache is cold (a fresh install, changed kernels), which takes seconds. The
    collector does this before it subscribes, so the first real batch does not wait.
    """
    started = time.time()
    base_ms = int(started * 1000) // 10_000 * 10_000 - 600_000
    messages = [
        Message(f"warmup/s/l/{kind}/m", orjson.dumps({"ts": base_ms + k * 10_000,
                                                      "v": k * step}), started)
        for k in range(60) for kind, step in (("energy", 5.0), ("production", 0.1))
    ]
    pipeline = Pipeline(settings_from_mapping({"topic_prefix": "warmup"}), [],
                        CollectorMetrics())
    pipeline.process(messages)
    return time.time() - started


class Pipeline:
    """Owns the queue, the meter registry, the kernel state and the sinks."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[IntensitySink],
        metrics: CollectorMetrics | None = None,
        clock: Callable[[], float] = time.time,
        on_results: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.metrics = metrics or CollectorMetrics()
        self._clock = clock
        self._on_results = on_results
        self.kernel_config = KernelConfig(
            emit_every_ms=settings.emit_every_ms,
            windows_ms=kernel_windows(settings),
            allowed_lateness_ms=settings.allowed_lateness_ms,
            min_production_t=settings.min_production_t,
        )
        # The window tag is the window as configured (docs/formats.md, outputs): "24h", not "1d".
        self.window_names = list(settings.windows)
        self.registry = MeterRegistry(load_reference(), settings.meters)
        self.alerts = LineAlerts(settings, self.kernel_config, load_reference(), self.metrics)
        self.publish_alert_state: Callable[[str, bytes], None] | None = None
        """Publishes a line's retained alert state (topic, payload); set by the collector."""
        self._last_stale_check_s = 0.0
        self._pending_settings: Settings | None = None
        self._log_once = OncePerMinute()
        self.decoder = BatchDecoder(settings, self.registry, self.metrics, self._log_once)
        self.topics = self.decoder.topics
        self.state = new_state(self.kernel_config, 0, 0)
        self._generation = 0
        self._checkpoint_every_s = settings.checkpoint_every_ms / 1000.0
        self._last_checkpoint_s = time.monotonic()
        self.ack: Callable[[Any], None] | None = None
        """Acknowledges a message to the broker (the source's ``ack``); set by the collector
        when acknowledgements wait for durability."""
        self._held_acks: list[Any] = []
        self._unsaved = False  # batches processed since the last checkpoint
        self.wal: WriteAheadLog | None = None
        self._replay: list[WalRecord] = []
        if settings.state_dir:
            self._resume(settings.state_dir)
            self._replay = read_wal(self._wal_dir, self._generation)
            self.wal = WriteAheadLog(self._wal_dir, self._generation)
        self._queue: Handoff[Message] = Handoff(settings.queue_max_messages)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self.heartbeat_s = time.monotonic()
        """Monotonic time the pipeline thread last went round its loop (or a retry)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def _wal_dir(self) -> Path:
        return Path(self.settings.state_dir or ".") / "wal"

    def start(self) -> None:
        for sink in self.sinks:
            sink.open()
        if self._replay:
            self._replay_wal()
        self._thread = threading.Thread(target=self._run, name="wattline-pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain what is queued, write it, close the sinks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("pipeline did not drain within %.0f s; %d messages left in the queue",
                          timeout_s, len(self._queue))
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - a failing close must not hide the others
                log.error("closing sink %s failed: %s", sink.name, exc)
        if self.wal is not None:
            self.wal.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flowing(self, within_s: float) -> bool:
        """Whether the pipeline thread is alive and went round its loop within ``within_s``.

        The loop turns at least every 0.2 s when idle, after every batch, and on every
        sink retry, so a thread stuck anywhere else stops counting as flowing.
        """
        return self.alive and time.monotonic() - self.heartbeat_s < within_s

    def submit(self, topic: str, payload: bytes, ack: Any = None) -> None:
        """Queue one message; blocks while the queue is full (back-pressure).

        ``ack`` is the source's token for acknowledging it; the pipeline acknowledges
        once the message is in the write-ahead log (or, without one, in a checkpoint).
        """
        msg = Message(topic, payload, self._clock(), ack)
        while not self._queue.put(msg, timeout_s=0.5):
            if self._stop.is_set():
                self.metrics.readings_dropped.labels("shutdown").inc()
                return

    # -- checkpoints -------------------------------------------------------------------------

    def _resume(self, state_dir: str) -> None:
        checkpoint = load_checkpoint(state_dir, self.kernel_config)
        if checkpoint is None:
            log.info("no checkpoint in %s yet: windows start empty", state_dir)
            return
        self.registry.restore(checkpoint.registry)
        self.state = checkpoint.state
        self._generation = checkpoint.generation
        if checkpoint.alerts is not None:
            self.alerts.state = alert_state_from_arrays(checkpoint.alerts)
            sites, names = self.registry.line_sites, self.registry.line_names
            self.alerts.rules_for(sites, names)
            self.alerts.restore_active(sites, names)
        log.info("resumed from checkpoint %d in %s: %d meters on %d lines", self._generation,
                 state_dir, self.registry.n_meters, self.registry.n_lines)

    def checkpoint(self) -> bool:
        """Write the kernel state and meter numbering to --state-dir (pipeline thread only).

        A failure (disk full, read-only) is logged and counted, and the pipeline goes on.
        """
        if not self.settings.state_dir:
            return False
        try:
            save_checkpoint(self.settings.state_dir, self.state, self.registry.snapshot(),
                            self.kernel_config, self._generation + 1,
                            alerts=alert_state_arrays(self.alerts.state))
        except OSError as exc:
            self._last_checkpoint_s = time.monotonic()  # try again after another interval
            self.metrics.checkpoint_errors.inc()
            if self._log_once("checkpoint", self.settings.state_dir):
                log.error("cannot write a checkpoint to %s: %s; the pipeline goes on, but a "
                          "restart would begin with the last good checkpoint",
                          self.settings.state_dir, exc)
            return False
        self._generation += 1
        self._last_checkpoint_s = time.monotonic()
        self._unsaved = False
        self.metrics.checkpoints.inc()
        if self.wal is not None:
            try:
                self.wal.rotate(self._generation)
            except OSError as exc:
                self.metrics.wal_errors.inc()
                log.error("cannot start a new write-ahead log in %s: %s", self._wal_dir, exc)
        self._ack_all(self._held_acks)  # everything so far is in the checkpoint
        self._held_acks = []
        return True

    def _checkpoint_if_due(self) -> None:
        due = time.monotonic() - self._last_checkpoint_s >= self._checkpoint_every_s
        if self.settings.state_dir and (due or len(self._held_acks) > MAX_HELD_ACKS):
            self.checkpoint()

    # -- durability of received messages ------------------------------------------------------

    def _make_durable(self, batch: Sequence[Message]) -> None:
        """Put a batch in the write-ahead log, then acknowledge its messages to the broker.

        When the log cannot be written (disk full, read-only) the acknowledgements are
        held until the next checkpoint, which then holds the messages' effect; the broker
        keeps them meanwhile and stops sending once its in-flight window is full.
        """
        acks = [m.ack for m in batch if m.ack is not None]
        if self.wal is None:
            self._ack_all(acks)
            return
        try:
            self.wal.append([WalRecord(m.received_s, m.topic, m.payload) for m in batch])
        except OSError as exc:
            self.metrics.wal_errors.inc()
            if self._log_once("wal", str(self._wal_dir)):
                log.error("cannot write the write-ahead log in %s: %s; holding the broker's "
                          "acknowledgements until the next checkpoint", self._wal_dir, exc)
            self._held_acks.extend(acks)
            return
        self._ack_all(acks)

    def _ack_all(self, acks: Sequence[Any]) -> None:
        if self.ack is None:
            return
        for token in acks:
            self.ack(token)

    def _replay_wal(self) -> None:
        """Run the messages received after the checkpoint we resumed from through again."""
        records = self._replay
        self._replay = []
        log.info("replaying %d message(s) received after checkpoint %d from %s",
                 len(records), self._generation, self._wal_dir)
        step = max(1, self.settings.batch_max_messages)
        for i in range(0, len(records), step):
            self.process([Message(r.topic, r.payload, r.received_s)
                          for r in records[i:i + step]])
        self.metrics.wal_replayed.inc(len(records))

    # -- reload ------------------------------------------------------------------------------

    def request_reload(self, settings: Settings) -> None:
        """Switch to ``settings`` at the next turn of the loop (any thread); only keys that
        ``wattline.ingest.app.reload.RELOADABLE`` names may differ from the current ones."""
        self._pending_settings = settings

    def _apply_reload(self) -> None:
        settings, self._pending_settings = self._pending_settings, None
        if settings is None:
            return
        state = self.alerts.state
        self.settings = settings
        self.decoder.settings = settings
        self._checkpoint_every_s = settings.checkpoint_every_ms / 1000.0
        alerts = LineAlerts(settings, self.kernel_config, load_reference(), self.metrics,
                            state=state)
        alerts.take_over(self.alerts)
        self.alerts = alerts
        for sink in self.sinks:
            if hasattr(sink, "retention_days"):
                sink.retention_days = settings.store_retention_days  # type: ignore[attr-defined]
        log.info("reloaded the configuration")

    # -- the pipeline thread -----------------------------------------------------------------

    def _run(self) -> None:
        max_n = self.settings.batch_max_messages
        max_wait = self.settings.batch_max_wait_ms / 1000.0
        try:
            while True:
                self.heartbeat_s = time.monotonic()
                self._apply_reload()
                batch = self._take_batch(max_n, max_wait)
                if batch:
                    self._make_durable(batch)
                    self.process(batch)
                    self._unsaved = True
                elif self._stop.is_set() and not len(self._queue):
                    self.checkpoint()  # drained: the state now holds everything received
                    return
                # Also when idle: the batches since the last checkpoint get theirs on time.
                if self._unsaved:
                    self._checkpoint_if_due()
                self._check_stale_lines()
        except BaseException as exc:
            self.failed = exc
            log.exception("pipeline stopped by an unexpected error")

    def _take_batch(self, max_n: int, max_wait: float) -> list[Message]:
        """A batch: up to ``max_n`` messages, collected for at most ``max_wait`` after the
        first (which is waited for up to 0.2 s, so the loop keeps turning)."""
        # With acknowledgements waiting for the log, the broker sends no more than its
        # in-flight window until we acknowledge: take what is queued and go.
        if self.ack is not None:
            max_wait = 0.0
        batch = self._queue.take(max_n, wait_s=0.2, fill_s=max_wait)
        if batch:
            self.metrics.queue_depth.set(len(self._queue))
        return batch

    def process(self, batch: Sequence[Message]) -> pa.Table:
        """Run one batch of messages through decoding, the kernels and the sinks."""
        started = time.perf_counter()
        readings = self.decoder.decode(batch)
        ticks, heard = self._run_kernels(readings)
        sites, names = self.registry.line_sites, self.registry.line_names
        if ticks is None:
            table = INTENSITY_SCHEMA.empty_table()
            alerts = ALERT_SCHEMA.empty_table()
        else:
            table = intensity_table(ticks, sites, names, self.window_names)
            alerts = self.alerts.on_ticks(ticks, sites, names)
        back = self.alerts.heard(heard, self._clock(), sites, names)
        if back.num_rows:
            alerts = pa.concat_tables([alerts, back])
        if table.num_rows:
            self._write(table, "write")
        if ticks is not None and len(ticks):
            self._publish_gauges(table, ticks.line)
        if alerts.num_rows:
            self._emit_alerts(alerts)
        if self._on_results is not None:
            self._on_results(table)
        now = self._clock()
        received = np.fromiter((m.received_s for m in batch), dtype=np.float64,
                               count=len(batch))
        self.metrics.latency.observe_many(np.maximum(0.0, now - received))
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return table

    def _check_stale_lines(self) -> None:
        """Once a second: start a stale alert on each line quiet for --stale-after."""
        now = self._clock()
        if now - self._last_stale_check_s < 1.0:
            return
        self._last_stale_check_s = now
        alerts = self.alerts.check_stale(now, self.registry.line_sites,
                                         self.registry.line_names)
        if alerts.num_rows:
            self._emit_alerts(alerts)

    def _emit_alerts(self, alerts: pa.Table) -> None:
        """Alert starts and ends to the sinks that store them and the retained topic."""
        for row in alerts.select(["site", "line", "rule", "state", "message"]).to_pylist():
            log.warning("alert %s %s on %s/%s: %s", row["rule"],
                        "started" if row["state"] else "ended", row["site"], row["line"],
                        row["message"])
        self._write(alerts, "write_alerts")
        self.republish_alerts(alerts)

    def republish_alerts(self, only: pa.Table | None = None) -> None:
        """Publish the retained alert state of the lines in ``only`` (all when None)."""
        publish = self.publish_alert_state
        if publish is None or not self.settings.alert_topic:
            return
        for site, line, payload in self.alerts.retained_payloads(only):
            publish(self.topics.alerts_topic(site, line), payload)

    def _run_kernels(self, readings: Readings) -> tuple[Ticks | None, list[int]]:
        table = self.registry.table()
        if table.n_meters > self.state.n_meters or table.n_lines > self.state.n_lines:
            grow_state(
                self.state, self.kernel_config,
                n_lines=max(table.n_lines, 2 * self.state.n_lines),
                n_meters=max(table.n_meters, 2 * self.state.n_meters),
            )
        if len(readings) == 0:
            # Nothing new: ticks only move when readings move a line's watermark.
            return None, []
        ticks = advance(self.state, self.kernel_config, table, readings)
        dropped = 0
        for reason, count in zip(DROP_REASONS, ticks.drops.tolist(), strict=True):
            if count:
                dropped += count
                self.metrics.readings_dropped.labels(reason).inc(count)
        self.metrics.readings_accepted.inc(len(readings) - dropped)
        self.metrics.ticks_emitted.inc(len(ticks))
        newest = self.state.newest_ts
        heard = np.flatnonzero(np.bincount(table.line[readings.meter],
                                           minlength=table.n_lines)).tolist()
        for line_idx in heard:
            self.metrics.last_reading.labels(
                self.registry.line_sites[line_idx], self.registry.line_names[line_idx]
            ).set(newest[line_idx] / 1000.0)
        return ticks, heard

    def _write(self, table: pa.Table, method: str) -> None:
        """Hand ``table`` to ``sink.<method>`` of every sink that has it, with retries."""
        for sink in self.sinks:
            write = getattr(sink, method, None)
            if write is None:
                continue
            delay = 0.5
            while True:
                try:
                    write(table)
                    self.metrics.sink_points.labels(sink.name).inc(table.num_rows)
                    break
                except SinkError as exc:
                    self.metrics.sink_errors.labels(sink.name).inc()
                    if not exc.retryable:
                        log.error("sink %s refused a batch of %d points for good: %s; the batch "
                                  "is dropped for this sink", sink.name, table.num_rows, exc)
                        self.metrics.readings_dropped.labels("sink_rejected").inc(table.num_rows)
                        break
                    if self._log_once("sink_retry", sink.name):
                        log.warning("sink %s failed (%s); retrying with backoff, holding the "
                                    "pipeline (and so the broker) back meanwhile", sink.name, exc)
                    self.metrics.sink_retries.labels(sink.name).inc()
                    self.heartbeat_s = time.monotonic()  # waiting on a sink is not a hang
                    if exc.retry_after_s is not None:
                        delay = min(max(delay, exc.retry_after_s), 30.0)
                    if self._stop.wait(delay) and delay >= 8:
                        log.error("shutting down with sink %s still failing; %d points not "
                                  "written to it", sink.name, table.num_rows)
                        break
                    delay = min(delay * 2, 30.0)

    def _publish_gauges(self, table: pa.Table, tick_lines: np.ndarray) -> None:
        """Set each line's intensity gauges to its newest tick of the batch.

        ``table`` has one row per tick row (``tick_lines`` gives their kernel lines) and
        window, in that order; only each line's last tick row is read, so a batch that
        spans hours of plant time costs no more than one that spans a tick.
        """
        n_windows = len(self.window_names)
        _, first_from_end = np.unique(tick_lines[::-1], return_index=True)
        last_rows = tick_lines.shape[0] - 1 - first_from_end
        rows = (last_rows[:, None] * n_windows + np.arange(n_windows)).reshape(-1)
        cols = table.take(pa.array(rows)).select(
            ["site", "line", "window", "kgce_per_t", "kwh_per_t"]).to_pydict()
        for site, line, window, kgce, kwh in zip(
            cols["site"], cols["line"], cols["window"], cols["kgce_per_t"], cols["kwh_per_t"],
            strict=True,
        ):
            labels = (site, line, window)
            for gauge, value in ((self.metrics.kgce_per_t, kgce), (self.metrics.kwh_per_t, kwh)):
                if value is None:
                    with contextlib.suppress(KeyError):  # never set: nothing to remove
                        gauge.remove(*labels)
                else:
                    gauge.labels(*labels).set(value)
