"""/metrics of a running daemon, scraped over HTTP: every family's name, type and label
set, and label values drawn only from bounded sets (docs/formats.md, metrics).

The daemon gets good readings, a malformed payload, a reading with a NaN value, a
topic of an unknown kind and, once its line falls silent, a stale-line alert, so
that every labelled family has samples to check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.contract.errors import PAYLOAD_ERROR_REASONS, TOPIC_ERROR_REASONS
from wattline.ingest.alerting import ALL_RULES
from wattline.ingest.decode.payloads import READING_DROP_REASONS
from wattline.ingest.sources.sparkplug import EVENTS as SPARKPLUG_EVENTS
from wattline.kernels import DROP_REASONS

# family name (without _total) -> (type, label names)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels))
    for name, kind, labels in [
        ("wattline_messages_received", "counter", {"topic_kind"}),
        ("wattline_readings_received", "counter", set()),
        ("wattline_payload_errors", "counter", {"reason"}),
        ("wattline_readings_dropped", "counter", {"reason"}),
        ("wattline_readings_accepted", "counter", set()),
        ("wattline_meters_refused", "counter", {"limit"}),
        ("wattline_state_bytes", "gauge", set()),
        ("wattline_ticks_emitted", "counter", set()),
        ("wattline_end_to_end_latency_seconds", "histogram", set()),
        ("wattline_sink_points_written", "counter", {"sink"}),
        ("wattline_sink_write_errors", "counter", {"sink"}),
        ("wattline_sink_write_retries", "counter", {"sink"}),
        ("wattline_spool_bytes", "gauge", set()),
        ("wattline_spool_segments", "gauge", set()),
        ("wattline_spool_oldest_age_seconds", "gauge", set()),
        ("wattline_spool_rows", "counter", {"kind", "event"}),
        ("wattline_spool_errors", "counter", set()),
        ("wattline_dead_letter_rows", "counter", {"sink"}),
        ("wattline_queue_messages", "gauge", set()),
        ("wattline_mqtt_connected", "gauge", set()),
        ("wattline_mqtt_connects", "counter", set()),
        ("wattline_line_last_reading_timestamp_seconds", "gauge", {"site", "line"}),
        ("wattline_line_clock_offset_seconds", "gauge", {"site", "line"}),
        ("wattline_intensity_kgce_per_t", "gauge", {"site", "line", "window"}),
        ("wattline_intensity_kwh_per_t", "gauge", {"site", "line", "window"}),
        ("wattline_intensity_co2_per_t", "gauge", {"site", "line", "window"}),
        ("wattline_alert_active", "gauge", {"site", "line", "rule"}),
        ("wattline_alerts", "counter", {"rule", "state"}),
        ("wattline_checkpoints", "counter", set()),
        ("wattline_checkpoint_errors", "counter", set()),
        ("wattline_sparkplug_events", "counter", {"event"}),
        ("wattline_wal_errors", "counter", set()),
        ("wattline_wal_replayed_messages", "counter", set()),
        ("wattline_batches", "counter", set()),
        ("wattline_batch_duration_seconds", "histogram", set()),
        ("wattline_nats_partitions_owned", "gauge", set()),
        ("wattline_nats_lease_changes", "counter", {"change"}),
        ("wattline_nats_consumer_lag_messages", "gauge", {"partition"}),
    ]
}
# Families whose samples need a failing database (tests/e2e/test_spool_faults.py causes them),
# or the NATS source (tests/e2e/test_nats_partitions.py); here their names and types are checked.
MAY_BE_EMPTY = {"wattline_sink_write_errors", "wattline_sink_write_retries",
                "wattline_spool_rows", "wattline_dead_letter_rows", "wattline_sparkplug_events",
                "wattline_meters_refused", "wattline_nats_consumer_lag_messages"}
LINE = "kiln-1"


def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(host, int(port))
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.e2e
def test_metrics_of_a_running_daemon_have_the_documented_names_types_and_labels(
    mosquitto: Mosquitto, connected_daemon: Callable[..., Wattline], site: str, tmp_path: Path,
) -> None:
    daemon = connected_daemon([
        "--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}", "--store",
        str(tmp_path / "store"), "--state-dir", str(tmp_path / "state"),
        "--checkpoint-every", "1s", "--windows", "1m,10m", "--stale-after", "3s",
    ])
    base = f"factory/{site}/{LINE}"
    now_ms = int(time.time() * 1000) // 10_000 * 10_000 - 300_000
    messages = []
    for i in range(60):  # in time order, meter by meter, so that none is late
        ts = now_ms + i * 5000
        messages += [
            (f"{base}/energy/power", json.dumps({"ts": ts, "v": 100.0 + 7 * i}).encode()),
            (f"{base}/production/clinker", json.dumps({"ts": ts, "v": 10.0 + 0.3 * i}).encode()),
        ]
    messages += [
        (f"{base}/energy/power", b"{not json"),
        (f"{base}/energy/power", b'{"ts": 1, "v": "NaN"}'),
        (f"{base}/warp/core", b'{"ts": 1, "v": 1}'),
    ]
    _publish(mosquitto.url, messages)
    wait_until(lambda: daemon.metric_sum("wattline_alerts_total", {"rule": "stale"}) >= 1,
               timeout_s=20, what="a stale-line alert")
    wait_until(lambda: daemon.metric_sum("wattline_checkpoints_total") >= 1, timeout_s=10)

    families = {f.name: f for f in text_string_to_metric_families(daemon.scrape())
                if f.name.startswith("wattline_")}
    assert set(families) == set(EXPECTED), (
        f"missing {sorted(set(EXPECTED) - set(families))}, "
        f"unexpected {sorted(set(families) - set(EXPECTED))}")
    bounded = {
        "site": {site}, "line": {LINE}, "window": {"1m", "10m"}, "rule": set(ALL_RULES),
        "state": {"start", "end"}, "sink": {"parquet", "influxdb"},
        "topic_kind": {"reading", "meta", "sparkplug", "mapped"},
        "event": {"spooled", "delivered", "dropped", *SPARKPLUG_EVENTS},
        "kind": {"intensity", "alerts"},
        "limit": {"max_lines", "max_meters"},
        "change": {"acquired", "released", "lost"},
        "reason": {*PAYLOAD_ERROR_REASONS, *TOPIC_ERROR_REASONS, *READING_DROP_REASONS,
                   *DROP_REASONS, "sink_rejected", "shutdown"},
    }
    for name, (kind, labels) in EXPECTED.items():
        family = families[name]
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        samples = [s for s in family.samples
                   if not s.name.endswith(("_created", "_bucket"))]
        if name not in MAY_BE_EMPTY:
            assert samples, f"{name} has no samples:\n{daemon.scrape()}"
        for sample in samples:
            assert set(sample.labels) == labels, f"{sample.name} has labels {sample.labels}"
            for label, value in sample.labels.items():
                if label in bounded:
                    assert value in bounded[label], f"{sample.name}{{{label}={value!r}}}"
        if kind == "counter":
            assert all(s.name == f"{name}_total" for s in samples), name
    reasons = {s.labels["reason"] for s in families["wattline_payload_errors"].samples
               if s.name.endswith("_total")}
    assert {"invalid_json", "topic_kind"} <= reasons, reasons
