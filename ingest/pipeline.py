"""The collector's one-way pipeline: messages -> readings batch -> kernels -> sinks.

    MQTT network thread            pipeline thread
    -------------------            -------------------------------------------
    submit(topic, payload) --> [bounded queue] --> take a batch (size / age bounds)
                                                -> write-ahead log, broker acks
                                                -> topics, payloads -> Readings
                                                -> kernels.advance -> Ticks
                                                -> results, alerts -> fan-out to sinks
                                                -> periods_stage -> period rows -> sinks
                                                -> metrics
                                                -> checkpoint when due, stale lines

Lifecycle: build a ``Pipeline``, ``start()`` it (the sinks are opened first, so
downstream is ready before data flows), feed it with ``submit`` from any one
thread, and ``stop()`` it: the queue is drained, the last batch written and the
sinks closed. ``submit`` blocks while the queue is full, which holds back the
MQTT client's network loop and so slows the broker down instead of dropping.

The work around the batch lives in its own modules, which the loop calls at fixed
points: ``durable.durability`` (log, acknowledgements, checkpoints, replay),
``sinks.fanout`` (retries and counting per sink), ``staleness`` (the stale-line
rule), ``line_log`` (first readings and summaries in the log) and ``reload_apply``
(a reloaded configuration, between batches).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wattline.contract.reference_data import load_reference
from wattline.ingest.alerting import ALERT_SCHEMA, LineAlerts, kernel_windows
from wattline.ingest.batch_lines import BatchLines
from wattline.ingest.config import Settings
from wattline.ingest.decode.batch import BatchDecoder, Message
from wattline.ingest.decode.registry import MeterRegistry, state_nbytes
from wattline.ingest.durable.durability import Durability
from wattline.ingest.line_log import LineLog
from wattline.ingest.log_limit import OncePerMinute
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.periods_stage import PeriodStage
from wattline.ingest.reload_apply import PendingReload
from wattline.ingest.results import INTENSITY_SCHEMA, intensity_table
from wattline.ingest.sinks.base import IntensitySink
from wattline.ingest.sinks.dead_letters import DeadLetters
from wattline.ingest.sinks.fanout import FanOut
from wattline.ingest.sources.handoff import Handoff
from wattline.ingest.staleness import StaleLineCheck
from wattline.kernels import DROP_REASONS, KernelConfig, Readings, Ticks, advance, new_state
from wattline.kernels.alerts import alert_state_arrays
from wattline.kernels.state import grow_state

__all__ = ["Message", "Pipeline"]

log = logging.getLogger("wattline.pipeline")


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
        self.registry = MeterRegistry(load_reference(), settings.meters,
                                      grid_kgco2_per_kwh=settings.grid_factor)
        self.alerts = LineAlerts(settings, self.kernel_config, load_reference(), self.metrics)
        self._log_once = OncePerMinute()
        self._fast: set[tuple[str, str]] = set()  # lines whose clock was found running fast
        self.decoder = BatchDecoder(settings, self.registry, self.metrics, self._log_once)
        self.topics = self.decoder.topics
        self.state = new_state(self.kernel_config, 0, 0)
        self.durability = Durability(settings.state_dir, self.kernel_config, self.metrics,
                                     checkpoint_every_s=settings.checkpoint_every_ms / 1000.0,
                                     log_once=self._log_once)
        self.batch_lines = BatchLines(settings)
        self.periods = PeriodStage(settings, self.metrics, clock)
        resumed = self.durability.resume(self.registry, self.alerts, self.periods)
        if resumed is not None:
            self.state = resumed
            self.batch_lines.restore(self.durability.saved_alerts)
        self.line_log = LineLog(self.registry, self.window_names, self.metrics,
                                settings.summary_every_ms / 1000.0)
        self._reload = PendingReload()
        self._stale = StaleLineCheck(clock)
        self._queue: Handoff[Message] = Handoff(settings.queue_max_messages)
        self._stop = threading.Event()
        self.fanout = FanOut(self.sinks, self.metrics, stopping=self._stop,
                             on_wait=self._beat,
                             dead_letters=DeadLetters(settings.resolved_dead_letter_dir))
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self.heartbeat_s = time.monotonic()
        """Monotonic time the pipeline thread last went round its loop (or a retry)."""
        self.kernels_ready = threading.Event()
        """Set while the kernels are loaded; the collector clears it while its warm-up
        thread loads or compiles them, and the loop takes no batch until it is set."""
        self.kernels_ready.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.fanout.open()
        self.durability.replay(self.process, self.settings.batch_max_messages)
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
        self.fanout.close()
        self.durability.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flowing(self, within_s: float) -> bool:
        """Whether the pipeline thread is alive and went round its loop within ``within_s``.

        The loop turns at least every 0.2 s when idle, after every batch, and on every
        sink retry, so a thread stuck anywhere else stops counting as flowing.
        """
        return self.alive and time.monotonic() - self.heartbeat_s < within_s

    def _beat(self) -> None:
        self.heartbeat_s = time.monotonic()

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

    def checkpoint(self) -> bool:
        """Write the kernel state, meter numbering and alert state to --state-dir (pipeline
        thread only); ``False`` when none was written (no state directory, or a failure,
        which is logged and counted while the pipeline goes on)."""
        if not self.settings.state_dir:
            return False
        # Results a sink's writer still holds in memory are spooled first, so none whose
        # messages the checkpoint covers can be lost (at shutdown, written if it can be).
        if not self.fanout.flush(wait_s=5.0 if self._stop.is_set() else 0.0):
            return False  # the log still holds the messages; tried again next turn
        return self.durability.save(self.state, self.registry.snapshot(),
                                    {**alert_state_arrays(self.alerts.state),
                                     **self.batch_lines.state_arrays()},
                                    self.periods.arrays())

    def request_reload(self, settings: Settings) -> None:
        """Switch to ``settings`` at the next turn of the loop (any thread); only keys that
        ``wattline.ingest.app.reload.RELOADABLE`` names may differ from the current ones."""
        self._reload.request(settings)

    # -- the pipeline thread -----------------------------------------------------------------

    def _run(self) -> None:
        max_n = self.settings.batch_max_messages
        max_wait = self.settings.batch_max_wait_ms / 1000.0
        durability = self.durability
        try:
            while True:
                self.heartbeat_s = time.monotonic()
                if not self.kernels_ready.wait(0.2) and not self._stop.is_set():
                    continue  # messages queue meanwhile; a full queue holds the broker back
                self._reload.apply_pending(self)
                batch = self._take_batch(max_n, max_wait)
                if batch:
                    durability.hold(batch)
                    self.process(batch)
                    durability.processed()
                elif self._stop.is_set() and not len(self._queue):
                    self.checkpoint()  # drained: the state now holds everything received
                    return
                else:
                    self._write_periods(self.periods.idle(self.registry.table(),
                                                          self.registry.line_sites,
                                                          self.registry.line_names))
                # Also when idle: the batches since the last checkpoint get theirs on time.
                if durability.checkpoint_due():
                    self.checkpoint()
                self.check_stale_lines()
                self.line_log.tick()
        except BaseException as exc:
            self.failed = exc
            log.exception("pipeline stopped by an unexpected error")

    def _take_batch(self, max_n: int, max_wait: float) -> list[Message]:
        """A batch: up to ``max_n`` messages, collected for at most ``max_wait`` after the
        first (which is waited for up to 0.2 s, so the loop keeps turning)."""
        # With acknowledgements waiting for the log, the broker sends no more than its
        # in-flight window until we acknowledge: take what is queued and go.
        if self.durability.acks_wait:
            max_wait = 0.0
        batch = self._queue.take(max_n, wait_s=0.2, fill_s=max_wait)
        if batch:
            self.metrics.queue_depth.set(len(self._queue))
        return batch

    def process(self, batch: Sequence[Message]) -> pa.Table:
        """Run one batch of messages through decoding, the kernels and the sinks."""
        started = time.perf_counter()
        readings = self.decoder.decode(batch)
        # The wall clock that caps watermarks is the batch's newest receipt time, which the
        # write-ahead log keeps: a replay after a crash judges every reading as it was judged.
        received_ms = int(max((m.received_s for m in batch), default=self._clock()) * 1000)
        ticks, heard = self._run_kernels(readings, received_ms)
        sites, names = self.registry.line_sites, self.registry.line_names
        self.batch_lines.note_labels(self.decoder.labels, self.registry.table().line)
        if ticks is None:
            table = INTENSITY_SCHEMA.empty_table()
            alerts = ALERT_SCHEMA.empty_table()
        else:
            table = intensity_table(ticks, sites, names, self.window_names)
            alerts = self.alerts.on_ticks(ticks, sites, names)
            batches = self.batch_lines.on_ticks(ticks, sites, names)
            if batches.num_rows:
                self.fanout.write_batches(batches)
                alerts = pa.concat_tables([alerts, self.alerts.on_batches(
                    self.batch_lines.last, sites, names)])
        self.line_log.after_batch(readings, ticks, table)
        back = self.alerts.heard(heard, self._clock(), sites, names)
        if back.num_rows:
            alerts = pa.concat_tables([alerts, back])
        if table.num_rows:
            self.fanout.write(table)
        if ticks is not None and len(ticks):
            self._publish_gauges(table, ticks.line)
        if alerts.num_rows:
            self._emit_alerts(alerts)
        self._write_periods(self.periods.run(self.registry.table(), readings, received_ms,
                                             sites, names))
        if self._on_results is not None:
            self._on_results(table)
        now = self._clock()
        received = np.fromiter((m.received_s for m in batch), dtype=np.float64,
                               count=len(batch))
        self.metrics.latency.observe_many(np.maximum(0.0, now - received))
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return table

    def _write_periods(self, periods: pa.Table) -> None:
        if periods.num_rows:
            self.fanout.write_periods(periods)
            if pc.any(periods.column("final")).as_py():
                self.durability.finals_written()

    def check_stale_lines(self) -> None:
        """Start a stale alert on each line quiet for --stale-after (checked once a second)."""
        started = self._stale(self.alerts, self.registry)
        if started is not None:
            self._emit_alerts(started)

    def _emit_alerts(self, alerts: pa.Table) -> None:
        """Alert starts and ends to the log and to every sink that takes alerts."""
        for row in alerts.select(["site", "line", "rule", "state", "message"]).to_pylist():
            log.warning("alert %s %s on %s/%s: %s", row["rule"],
                        "started" if row["state"] else "ended", row["site"], row["line"],
                        row["message"])
        self.fanout.write_alerts(alerts)

    def _run_kernels(self, readings: Readings, now_ms: int) -> tuple[Ticks | None, list[int]]:
        table = self.registry.table()
        if table.n_meters > self.state.n_meters or table.n_lines > self.state.n_lines:
            grow_state(
                self.state, self.kernel_config,
                n_lines=max(table.n_lines, 2 * self.state.n_lines),
                n_meters=max(table.n_meters, 2 * self.state.n_meters),
            )
        self.metrics.state_bytes.set(state_nbytes(self.state) + self.registry.nbytes())
        if len(readings) == 0:
            # Nothing new: ticks only move when readings move a line's watermark.
            return None, []
        ticks = advance(self.state, self.kernel_config, table, readings,
                        now_ms=now_ms if self.settings.watermark_wall_clock else None,
                        logged_lines=self.batch_lines.logged_lines(self.registry.line_sites,
                                                                   self.registry.line_names))
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
            site, name = self.registry.line_sites[line_idx], self.registry.line_names[line_idx]
            self.metrics.last_reading.labels(site, name).set(newest[line_idx] / 1000.0)
            self._note_clock_offset(site, name, (int(newest[line_idx]) - now_ms) / 1000.0)
        return ticks, heard

    def _note_clock_offset(self, site: str, line: str, offset_s: float) -> None:
        """Publish a line's clock offset; say once per line when its clock runs fast by
        more than half of --max-future (beyond it, its readings are refused)."""
        self.metrics.clock_offset.labels(site, line).set(offset_s)
        if offset_s * 2000 > self.settings.max_future_ms and (site, line) not in self._fast:
            self._fast.add((site, line))
            log.warning("line %s/%s: readings stamped %.0f s ahead of this machine's clock; "
                        "its watermark waits for the wall clock (set the gateway's clock "
                        "with NTP; beyond --max-future %s its readings are refused)",
                        site, line, offset_s, self.settings.max_future)

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
            ["site", "line", "window", "kgce_per_t", "kwh_per_t", "co2_per_t"]).to_pydict()
        for site, line, window, kgce, kwh, co2 in zip(
            cols["site"], cols["line"], cols["window"], cols["kgce_per_t"], cols["kwh_per_t"],
            cols["co2_per_t"], strict=True,
        ):
            labels = (site, line, window)
            for gauge, value in ((self.metrics.kgce_per_t, kgce), (self.metrics.kwh_per_t, kwh),
                                 (self.metrics.co2_per_t, co2)):
                if value is None:
                    with contextlib.suppress(KeyError):  # never set: nothing to remove
                        gauge.remove(*labels)
                else:
                    gauge.labels(*labels).set(value)
