"""Sinks built from the settings, each with its health check; the MQTT alert sink."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from wattline.contract.schemas import ALERT_SCHEMA
from wattline.contract.topics import TopicTemplate
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import Sink, SinkHealth
from wattline.ingest.sinks.build import build_sinks
from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink
from wattline.ingest.sinks.parquet_store import ParquetStore
from wattline.ingest.sinks.queued import QueuedSink
from wattline.ingest.sinks.spooled import SpooledSink


def test_no_destination_builds_no_sink() -> None:
    assert build_sinks(settings_from_mapping({}), CollectorMetrics()) == []


def test_the_store_is_healthy_while_its_folder_can_be_written(tmp_path: Path) -> None:
    (built,) = build_sinks(settings_from_mapping({"store": str(tmp_path / "store")}),
                           CollectorMetrics())
    assert isinstance(built.sink, ParquetStore)
    assert not built.health().healthy  # not opened yet: no folder
    built.sink.open()
    assert built.health() == SinkHealth(healthy=True)


def test_influxdb_behind_the_spool_reports_the_backlog_and_last_error(tmp_path: Path) -> None:
    settings = settings_from_mapping({
        "influx_url": "http://127.0.0.1:1", "influx_org": "o", "influx_bucket": "b",
        "state_dir": str(tmp_path / "state"), "store": str(tmp_path / "store")})
    influx, store = build_sinks(settings, CollectorMetrics())
    assert isinstance(influx.sink, SpooledSink) and isinstance(influx.sink, Sink)
    assert isinstance(store.sink, ParquetStore)
    assert influx.health() == SinkHealth(healthy=True, backlog=0)
    influx.sink._last_error = "cannot reach InfluxDB"  # what a failed delivery leaves
    assert influx.health() == SinkHealth(healthy=False, backlog=0,
                                         last_error="cannot reach InfluxDB")


def test_influxdb_without_a_spool_is_unhealthy_while_it_does_not_answer() -> None:
    settings = settings_from_mapping({"influx_url": "http://127.0.0.1:1", "influx_org": "o",
                                      "influx_bucket": "b"})
    (influx,) = build_sinks(settings, CollectorMetrics())
    health = influx.health()
    assert not health.healthy and "127.0.0.1:1" in (health.last_error or "")


def _alert(site: str, line: str) -> dict:
    return {"site": site, "line": line, "rule": "spike", "time_ms": 1, "state": 1,
            "value": 2.0, "threshold": 1.0, "message": "m"}


def test_the_alert_sink_publishes_the_lines_an_alert_batch_touches() -> None:
    published: list[tuple[str, bytes]] = []
    asked: list = []

    def retained(only: pa.Table | None) -> list[tuple[str, str, bytes]]:
        asked.append(only)
        lines = [("s", "a"), ("s", "b")] if only is None else [("s", "a")]
        return [(s, ln, json.dumps({"line": ln}).encode()) for s, ln in lines]

    sink = MqttAlertSink(lambda t, p: published.append((t, p)),
                         TopicTemplate("{prefix}/{site}/{line}/{kind}/{meter}", prefix="f"),
                         retained)
    assert isinstance(sink, Sink) and sink.counted is False
    batch = pa.Table.from_pylist([_alert("s", "a")], schema=ALERT_SCHEMA)
    sink.write(pa.table({}))  # results are not published
    sink.write_alerts(batch)
    assert published == [("f/s/a/alerts", b'{"line": "a"}')] and asked == [batch]
    sink.republish()
    assert [t for t, _ in published[1:]] == ["f/s/a/alerts", "f/s/b/alerts"]
    sink.enabled = False
    sink.write_alerts(batch)
    sink.republish()
    assert len(published) == 3


def test_influxdb_takes_its_timeouts_from_the_settings_and_is_written_on_a_thread(
        tmp_path: Path) -> None:
    base = {"influx_url": "http://127.0.0.1:1", "influx_org": "o", "influx_bucket": "b",
            "influx_timeout": "5s", "influx_health_timeout": "1s"}
    (queued,) = build_sinks(settings_from_mapping(base), CollectorMetrics())
    assert isinstance(queued.sink, QueuedSink)
    assert (queued.sink.inner.timeout_s, queued.sink.inner.health_timeout_s) == (5.0, 1.0)
    (spooled,) = build_sinks(settings_from_mapping({**base, "state_dir": str(tmp_path)}),
                             CollectorMetrics())
    assert isinstance(spooled.sink, SpooledSink) and spooled.sink.slow_after_s == 1.0
