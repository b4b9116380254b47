"""The collector's Prometheus metrics (docs/formats.md, metrics), on an injectable registry.

Every label takes values from a fixed set (reasons, sinks, windows) or from
validated site and line names; none takes a raw topic or free text, so label
cardinality is bounded by the plant's size.

The ``*_created`` series that prometheus-client adds to every counter and histogram
are switched off (``disable_created_metrics``): Prometheus does not use them, and
they would double the collector's series.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BatchHistogram:
    """A label-less histogram observed a batch at a time (``observe_many``), exposed
    through prometheus-client's custom-collector interface as an ordinary histogram.

    The pipeline observes one latency per message; ``Histogram.observe`` costs a lock
    and a bucket search per call, a quarter of the collector's per-message time. Here
    a batch is one ``numpy.searchsorted`` and ``bincount``. ``labelnames`` is empty,
    as for a ``Histogram`` made without labels.
    """

    labelnames: tuple[str, ...] = ()

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.array(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        slots = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def observe(self, value: float) -> None:
        self.observe_many(np.array([value], dtype=np.float64))

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = HistogramMetricFamily(self.name, self.documentation)
        bounds = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), sum_value=total)
        return [family]


class CollectorMetrics:
    """All metrics of one collector. Tests pass a fresh ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "wattline_messages_received_total",
            "MQTT messages received, by kind of topic (reading, meta, sparkplug, or mapped: "
            "read by a [[payloads]] mapping).",
            ["topic_kind"],
            registry=r,
        )
        self.readings_received = Counter(
            "wattline_readings_received_total",
            "Readings decoded from payloads, before any drop.",
            registry=r,
        )
        self.payload_errors = Counter(
            "wattline_payload_errors_total",
            "Messages rejected whole (bad topic, bad JSON, wrong shape, too large...), by reason.",
            ["reason"],
            registry=r,
        )
        self.readings_dropped = Counter(
            "wattline_readings_dropped_total",
            "Single readings dropped (quality, not finite, out-of-range time, late, duplicate...), "
            "by reason.",
            ["reason"],
            registry=r,
        )
        self.meters_refused = Counter(
            "wattline_meters_refused_total",
            "New meters refused because the daemon holds as many lines or meters as it may, "
            "by the setting that refused them (max_lines, max_meters); their readings are "
            "dropped as meter_limit.",
            ["limit"],
            registry=r,
        )
        self.state_bytes = Gauge(
            "wattline_state_bytes",
            "Bytes of what the daemon keeps per line and meter: the kernel state's arrays and "
            "the meter registry.",
            registry=r,
        )
        self.readings_accepted = Counter(
            "wattline_readings_accepted_total",
            "Readings handed to the kernels and accepted by them.",
            registry=r,
        )
        self.ticks_emitted = Counter(
            "wattline_ticks_emitted_total",
            "Intensity ticks emitted (one per line and tick; each carries every window).",
            registry=r,
        )
        self.latency = BatchHistogram(
            "wattline_end_to_end_latency_seconds",
            "From a message's receipt to its batch's results being written by every sink.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sink_points = Counter(
            "wattline_sink_points_written_total",
            "Points a sink took, by sink: written, or spooled to be written later "
            "(see wattline_spool_rows_total).",
            ["sink"],
            registry=r,
        )
        self.sink_errors = Counter(
            "wattline_sink_write_errors_total",
            "Failed sink writes, by sink.",
            ["sink"],
            registry=r,
        )
        self.sink_retries = Counter(
            "wattline_sink_write_retries_total",
            "Sink writes tried again after a retryable failure, by sink.",
            ["sink"],
            registry=r,
        )
        self.spool_bytes = Gauge(
            "wattline_spool_bytes",
            "Bytes of result batches waiting in the on-disk spool for their sink.",
            registry=r,
        )
        self.spool_segments = Gauge(
            "wattline_spool_segments",
            "Batches (segment files) waiting in the on-disk spool.",
            registry=r,
        )
        self.spool_oldest_age = Gauge(
            "wattline_spool_oldest_age_seconds",
            "Age of the oldest spooled batch; 0 when the spool is empty.",
            registry=r,
        )
        self.spool_rows = Counter(
            "wattline_spool_rows",
            "Result rows through the spool, by kind (intensity, alerts) and event: spooled, "
            "delivered, dropped (the spool was over --spool-max-bytes and lost its oldest "
            "batch).",
            ["kind", "event"],
            registry=r,
        )
        self.spool_errors = Counter(
            "wattline_spool_errors",
            "Spool segments that could not be written or read (disk full, read-only, corrupt).",
            registry=r,
        )
        self.dead_letter_rows = Counter(
            "wattline_dead_letter_rows",
            "Result rows a sink refused for good (HTTP 4xx), kept in the dead-letter folder.",
            ["sink"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "wattline_queue_messages",
            "Messages waiting between the MQTT client and the pipeline.",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "wattline_mqtt_connected",
            "1 while the MQTT session is connected, else 0.",
            registry=r,
        )
        self.mqtt_connects = Counter(
            "wattline_mqtt_connects_total",
            "Successful MQTT connections (the first one and every reconnect).",
            registry=r,
        )
        self.clock_offset = Gauge(
            "wattline_line_clock_offset_seconds",
            "Per line, its newest accepted reading time minus this machine's clock when it "
            "was taken: a few seconds negative is transport; positive, the line's gateway "
            "clock runs fast.",
            ["site", "line"],
            registry=r,
        )
        self.last_reading = Gauge(
            "wattline_line_last_reading_timestamp_seconds",
            "Event time of the newest reading accepted per line.",
            ["site", "line"],
            registry=r,
        )
        self.kgce_per_t = Gauge(
            "wattline_intensity_kgce_per_t",
            "Latest energy intensity per line and window, kgce per tonne (absent while idle).",
            ["site", "line", "window"],
            registry=r,
        )
        self.kwh_per_t = Gauge(
            "wattline_intensity_kwh_per_t",
            "Latest electricity intensity per line and window, kWh per tonne (absent while idle).",
            ["site", "line", "window"],
            registry=r,
        )
        self.co2_per_t = Gauge(
            "wattline_intensity_co2_per_t",
            "Latest carbon intensity per line and window, tonnes of CO2 (scope 1 and 2) per "
            "tonne (absent while idle).",
            ["site", "line", "window"],
            registry=r,
        )
        self.alert_active = Gauge(
            "wattline_alert_active",
            "1 while an energy alert is active on a line, by rule (spike, surge, "
            "above_baseline, above_benchmark, stale), else 0.",
            ["site", "line", "rule"],
            registry=r,
        )
        self.alerts = Counter(
            "wattline_alerts_total",
            "Energy alerts that started or ended, by rule and state (start, end).",
            ["rule", "state"],
            registry=r,
        )
        self.checkpoints = Counter(
            "wattline_checkpoints_total",
            "Kernel checkpoints written to --state-dir.",
            registry=r,
        )
        self.checkpoint_errors = Counter(
            "wattline_checkpoint_errors_total",
            "Kernel checkpoints that could not be written (disk full, read-only...).",
            registry=r,
        )
        self.sparkplug_events = Counter(
            "wattline_sparkplug_events",
            "Sparkplug B session events, by event: birth, death, seq_gap, rebirth_requested.",
            ["event"],
            registry=r,
        )
        self.wal_errors = Counter(
            "wattline_wal_errors",
            "Write-ahead log appends or rotations that failed (disk full, read-only); the "
            "broker's acknowledgements then wait for the next checkpoint.",
            registry=r,
        )
        self.wal_replayed = Counter(
            "wattline_wal_replayed_messages",
            "Messages replayed from the write-ahead log at start-up (after a crash).",
            registry=r,
        )
        self.batches = Counter(
            "wattline_batches_total",
            "Batches run through the kernels.",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "wattline_batch_duration_seconds",
            "Time to decode, run the kernels on and write one batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.nats_partitions_owned = Gauge(
            "wattline_nats_partitions_owned",
            "NATS source: stream partitions this daemon holds a lease on and consumes.",
            registry=r,
        )
        self.nats_lease_changes = Counter(
            "wattline_nats_lease_changes",
            "NATS source: partition leases acquired, released (fair share, stopping) or lost "
            "(renewal refused: expired or taken), by change.",
            ["change"],
            registry=r,
        )
        for change in ("acquired", "released", "lost"):
            self.nats_lease_changes.labels(change)
        self.nats_consumer_lag = Gauge(
            "wattline_nats_consumer_lag_messages",
            "NATS source: messages of a held partition not yet delivered to this daemon, by "
            "partition.",
            ["partition"],
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> tuple[object, object]:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)
