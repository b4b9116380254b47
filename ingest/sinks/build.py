"""The sinks the settings ask for, each built together with its health check.

``build_sinks`` returns one ``BuiltSink`` per destination, in the order the
pipeline writes to them: InfluxDB, then the local Parquet store. InfluxDB is written
on a writer thread of its own, so the pipeline never waits for the server: behind
the spool (``spooled.SpooledSink``) when there is a spool folder, else behind a
bounded queue (``queued.QueuedSink``). The Parquet store is written on the pipeline
thread: a local disk answers in milliseconds, and one that does not (full,
read-only) holds the pipeline back, which loses nothing. The retained MQTT alert
topic is not built here: it publishes on the MQTT session, which the collector owns
(``wattline.ingest.app.daemon``).

Health checks (``wattline.ingest.sinks.base.SinkHealth``), safe from any thread:

- InfluxDB behind the spool: the backlog (spooled and held in memory) and the latest
  failure to deliver, or a write unanswered for longer than --influx-health-timeout
  (no request is made);
- InfluxDB without a spool: whether the server answers ``/ping`` (one request,
  bounded by --influx-health-timeout), and the queue's backlog;
- Parquet store: whether its folder exists and may be written to.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from wattline.ingest.config import Settings
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import HealthCheck, IntensitySink, SinkHealth

__all__ = ["BuiltSink", "build_sinks"]


class BuiltSink(NamedTuple):
    sink: IntensitySink
    health: HealthCheck


def build_sinks(settings: Settings, metrics: CollectorMetrics) -> list[BuiltSink]:
    """The sinks ``settings`` ask for, with their health checks; see the module doc."""
    built: list[BuiltSink] = []
    if settings.influx_url:
        built.append(_influx(settings, metrics))
    if settings.store:
        from wattline.ingest.sinks.parquet_store import ParquetStore

        store = ParquetStore(settings.store, retention_days=settings.store_retention_days)
        built.append(BuiltSink(store, lambda: _folder_health(store.directory)))
    return built


def _influx_writer(settings: Settings) -> IntensitySink:
    """The InfluxDB writer of the API the settings name (v2 unless told v1)."""
    timeouts = {"timeout_s": settings.influx_timeout_ms / 1000,
                "health_timeout_s": settings.influx_health_timeout_ms / 1000}
    if settings.influx_api == "v1":
        from wattline.ingest.sinks.influx_v1 import InfluxV1Sink

        return InfluxV1Sink(settings.influx_url or "", settings.influx_db or "",
                            retention_policy=settings.influx_rp,
                            username=settings.influx_user,
                            password=settings.resolved_influx_password(), **timeouts)
    from wattline.ingest.sinks.influx import InfluxSink

    return InfluxSink(settings.influx_url or "", settings.influx_org or "",
                      settings.influx_bucket or "", settings.resolved_influx_token() or "",
                      **timeouts)


def _influx(settings: Settings, metrics: CollectorMetrics) -> BuiltSink:
    influx = _influx_writer(settings)
    spool_dir = settings.resolved_spool_dir
    if not spool_dir:
        from wattline.ingest.sinks.queued import QueuedSink

        queued = QueuedSink(influx, metrics)
        return BuiltSink(queued, queued.health)
    from wattline.ingest.durable.spool import Spool
    from wattline.ingest.sinks.dead_letters import DeadLetters
    from wattline.ingest.sinks.spooled import SpooledSink

    spooled = SpooledSink(influx, Spool(spool_dir, settings.spool_max_bytes), metrics,
                          dead_letters=DeadLetters(settings.resolved_dead_letter_dir))
    return BuiltSink(spooled, spooled.health)


def _folder_health(directory: os.PathLike[str]) -> SinkHealth:
    if os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK):
        return SinkHealth(healthy=True)
    return SinkHealth(healthy=False, last_error=f"{os.fspath(directory)} is not a writable "
                                                "folder")
