"""SIGHUP: a running daemon re-reads its config file, applies what may change live,
names what needs a restart, survives a broken file, and keeps its MQTT session."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.ingest.app.reload import plan_reload
from wattline.ingest.config import settings_from_mapping


def test_a_reload_applies_alert_settings_and_keeps_kernel_settings() -> None:
    current = settings_from_mapping({"windows": "1m,2m", "stale_after": "1h"})
    new = settings_from_mapping({"windows": "1m,5m", "stale_after": "2s", "spike_ratio": 2.0})
    plan = plan_reload(current, new)
    assert sorted(plan.applied) == ["spike_ratio", "stale_after"]
    assert plan.needs_restart == ("windows",)
    assert plan.settings.windows == ("1m", "2m") and plan.settings.stale_after == "2s"


def _publish_readings(url: str, site: str) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(host, int(port))
    client.loop_start()
    try:
        now_ms = int(time.time() * 1000)
        for i in range(5):
            for kind, meter in (("energy", "power"), ("production", "steel")):
                payload = json.dumps({"ts": now_ms - 60_000 + i * 10_000, "v": float(i)})
                client.publish(f"factory/{site}/eaf-1/{kind}/{meter}", payload,
                               qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.e2e
def test_sighup_applies_the_new_stale_limit_without_dropping_the_session(
    mosquitto: Mosquitto, connected_daemon: Callable[..., Wattline], site: str, tmp_path: Path,
) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(f'mqtt_url = "{mosquitto.url}"\nclient_id = "wl-{site}"\n'
                      'windows = ["1m", "2m"]\nstale_after = "1h"\n')
    daemon = connected_daemon(["--config", str(config)])
    _publish_readings(mosquitto.url, site)
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= 10,
               timeout_s=20)

    config.write_text("this is [not toml\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "not valid, nothing changed" in daemon.log_text(), timeout_s=10)
    assert daemon.running

    config.write_text(f'mqtt_url = "{mosquitto.url}"\nclient_id = "wl-{site}"\n'
                      'windows = ["1m", "5m"]\nstale_after = "2s"\n')
    daemon.process.send_signal(signal.SIGHUP)
    labels = {"site": site, "line": "eaf-1", "rule": "stale"}
    wait_until(lambda: daemon.metric("wattline_alert_active", labels) == 1.0, timeout_s=15,
               what="the stale alert under the reloaded limit")
    log = daemon.log_text()
    assert "windows changed in the file but needs a restart" in log
    assert "reload: applying stale_after" in log
    assert daemon.metric("wattline_mqtt_connects_total") == 1.0
