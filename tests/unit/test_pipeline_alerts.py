"""Alerts through the pipeline's own logic: rules per line from the config, the
energy_alert rows handed to sinks, the retained payloads, restart from a checkpoint,
and the stale-line rule on an injected clock."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from wattline.contract.schemas import ALERT_SCHEMA
from wattline.contract.topics import TopicTemplate
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Message, Pipeline
from wattline.ingest.sinks.line_protocol import encode_alerts
from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink

T0 = 1_732_406_400_000
SITE = "s1"
LINE = "eaf-1"


class AlertRecorder:
    name = "recording"

    def __init__(self) -> None:
        self.alerts: list[pa.Table] = []

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        pass

    def write_alerts(self, table: pa.Table) -> None:
        self.alerts.append(table)

    def close(self) -> None:
        pass

    def rows(self) -> list[dict]:
        return pa.concat_tables(self.alerts).to_pylist() if self.alerts else []


def _messages(first_step: int, steps: int, kwh_per_step) -> list[Message]:
    """One reading per meter every 10 s; the energy register grows by kwh_per_step(k)."""
    msgs = []
    energy = sum(kwh_per_step(k) for k in range(1, first_step + 1))
    for k in range(first_step, first_step + steps):
        if k > first_step:
            energy += kwh_per_step(k)
        ts = T0 + 10_000 * k
        msgs.append(Message(f"factory/{SITE}/{LINE}/energy/power",
                            json.dumps({"ts": ts, "v": energy}).encode(), ts / 1000))
        msgs.append(Message(f"factory/{SITE}/{LINE}/production/steel",
                            json.dumps({"ts": ts, "v": 0.1 * k}).encode(), ts / 1000))
    return msgs


def spike_profile(k: int) -> float:
    """50 kWh per 10 s, tripled from step 120 to 179."""
    return 150.0 if 120 <= k < 180 else 50.0


def _pipeline(tmp_path: Path, sink: AlertRecorder, published: list, clock=None) -> Pipeline:
    """A pipeline writing alerts to ``sink`` and, through an MQTT alert sink, publishing
    the retained payloads to ``published`` (the alert sink is ``pipeline.sinks[-1]``)."""
    settings = settings_from_mapping({
        "max_past": "100000d", "windows": "1m,10m", "state_dir": str(tmp_path / "state"),
        "surge_window": "1m", "surge_k": 1000.0,  # keep this test to the spike rule
        "lines": {f"{SITE}/{LINE}": {"spike_ratio": 1.4, "alert_for": 2}},
    })
    alert_topic = MqttAlertSink(lambda topic, payload: published.append((topic, payload)),
                                TopicTemplate(settings.topic_template,
                                              prefix=settings.topic_prefix),
                                lambda only: pipeline.alerts.retained_payloads(only))
    pipeline = Pipeline(settings, [sink, alert_topic], CollectorMetrics(),
                        clock=clock or (lambda: T0 / 1000 + 7200))
    return pipeline


def test_a_spike_starts_and_ends_with_per_line_settings_and_retained_payloads(tmp_path):
    sink, published = AlertRecorder(), []
    pipeline = _pipeline(tmp_path, sink, published)
    for first in range(0, 300, 10):  # batches of 100 s, as a live daemon would take them
        pipeline.process(_messages(first, 10, spike_profile))
    rows = [r for r in sink.rows() if r["rule"] == "spike"]
    assert [r["state"] for r in rows] == [1, 0]
    start, end = rows
    assert T0 + 1_200_000 < start["time_ms"] <= T0 + 1_200_000 + 60_000 + 30_000
    assert start["value"] > start["threshold"]
    assert start["message"].startswith("1m intensity")
    topics = {t for t, _ in published}
    assert topics == {f"factory/{SITE}/{LINE}/alerts"}
    states = [json.loads(p) for _, p in published]
    assert [a["rule"] for a in states[0]["active"]] == ["spike"]
    assert states[-1]["active"] == [] and states[-1]["time_ms"] == end["time_ms"]
    assert states[0]["active"][0]["since_ms"] == start["time_ms"]
    body = encode_alerts(pa.Table.from_pylist(rows, schema=ALERT_SCHEMA)).decode()
    assert body.startswith(f"energy_alert,site={SITE},line={LINE},rule=spike state=1i,value=")


def test_an_alert_active_at_a_checkpoint_stays_active_after_a_restart(tmp_path):
    sink, published = AlertRecorder(), []
    first = _pipeline(tmp_path, sink, published)
    first.process(_messages(0, 150, spike_profile))  # into the spike
    assert [r["state"] for r in sink.rows() if r["rule"] == "spike"] == [1]
    assert first.checkpoint()

    sink2, published2 = AlertRecorder(), []
    second = _pipeline(tmp_path, sink2, published2)
    second.sinks[-1].republish()  # what a reconnect does
    assert [a["rule"] for a in json.loads(published2[0][1])["active"]] == ["spike"]
    second.process(_messages(150, 150, spike_profile))
    # No second start after the restart, and the end still comes.
    assert [r["state"] for r in sink2.rows() if r["rule"] == "spike"] == [0]


def test_a_quiet_line_goes_stale_and_a_reading_ends_it(tmp_path):
    now = [T0 / 1000 + 7200]
    sink, published = AlertRecorder(), []
    pipeline = _pipeline(tmp_path, sink, published, clock=lambda: now[0])
    pipeline.process(_messages(0, 10, spike_profile))
    pipeline.check_stale_lines()
    now[0] += 299
    pipeline.check_stale_lines()
    assert [r for r in sink.rows() if r["rule"] == "stale"] == []
    now[0] += 2
    pipeline.check_stale_lines()
    now[0] += 30
    pipeline.check_stale_lines()  # still stale: no second start
    pipeline.process(_messages(10, 1, spike_profile))
    stale = [r for r in sink.rows() if r["rule"] == "stale"]
    assert [r["state"] for r in stale] == [1, 0]
    assert stale[0]["value"] == 301.0 and stale[0]["threshold"] == 300.0
    assert stale[1]["value"] is None
