"""A reloaded configuration reaches the pipeline between batches; the stale check's clock."""

from __future__ import annotations

import pyarrow as pa

from wattline.contract.schemas import ALERT_SCHEMA
from wattline.contract.topics import TopicTemplate
from wattline.ingest.app.reload import plan_reload
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline
from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink
from wattline.ingest.staleness import StaleLineCheck


class Store:
    name = "store"
    retention_days = 30

    def open(self) -> None: ...
    def write(self, table) -> None: ...
    def close(self) -> None: ...


def test_a_requested_reload_is_applied_at_the_next_turn_only() -> None:
    settings = settings_from_mapping({"stale_after": "5m", "checkpoint_every": "30s"})
    store = Store()
    alert_topic = MqttAlertSink(lambda t, p: None, TopicTemplate(settings.topic_template,
                                prefix=settings.topic_prefix), lambda only: [])
    pipeline = Pipeline(settings, [store, alert_topic], CollectorMetrics())
    old_alerts = pipeline.alerts
    new = plan_reload(settings, settings_from_mapping({
        "stale_after": "1m", "checkpoint_every": "10s", "store_retention": "7d",
        "alert_topic": False})).settings
    pipeline.request_reload(new)
    assert pipeline.settings is settings  # nothing changes before the pipeline's turn
    pipeline._reload.apply_pending(pipeline)
    assert pipeline.settings is new and pipeline.decoder.settings is new
    assert pipeline.alerts is not old_alerts and pipeline.alerts.settings is new
    assert pipeline.alerts.state is old_alerts.state
    assert pipeline.durability.checkpoint_every_s == 10.0
    assert store.retention_days == 7
    assert alert_topic.enabled is False
    pipeline._reload.apply_pending(pipeline)  # applied once
    assert pipeline.alerts.settings is new


class CountingAlerts:
    def __init__(self) -> None:
        self.asked: list[float] = []

    def check_stale(self, now_s, sites, lines):
        self.asked.append(now_s)
        return ALERT_SCHEMA.empty_table() if len(self.asked) < 3 else pa.Table.from_pylist(
            [{"site": "s", "line": "l", "rule": "stale", "time_ms": 1, "state": 1,
              "value": 1.0, "threshold": 1.0, "message": "m"}], schema=ALERT_SCHEMA)


class Lines:
    line_sites = ("s",)
    line_names = ("l",)


def test_the_stale_check_runs_at_most_once_a_second_of_its_clock() -> None:
    now = [100.0]
    check, alerts = StaleLineCheck(lambda: now[0]), CountingAlerts()
    assert check(alerts, Lines()) is None  # asked, none stale
    now[0] += 0.5
    assert check(alerts, Lines()) is None and alerts.asked == [100.0]  # not due
    now[0] += 0.5
    assert check(alerts, Lines()) is None and alerts.asked == [100.0, 101.0]
    now[0] += 1.0
    started = check(alerts, Lines())
    assert started is not None and started.num_rows == 1
