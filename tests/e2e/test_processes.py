"""The test harness itself: real Mosquitto and VictoriaMetrics start, answer, stop and restart."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.conftest import missing_component
from tests.processes import (
    ComponentMissing,
    Mosquitto,
    VictoriaMetrics,
    Wattline,
    free_port,
    port_accepts,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _client(broker: Mosquitto, client_id: str = "", clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    client.connect("127.0.0.1", broker.port)
    return client


def _receive_one(broker: Mosquitto, topic: str, publish: Callable[[], None] | None = None) -> bytes:
    """Subscribe to ``topic``, optionally publish, and return the first payload seen."""
    got: list[bytes] = []
    arrived = threading.Event()
    subscribed = threading.Event()
    client = _client(broker)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        arrived.set()

    client.on_message = on_message
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5), "no SUBACK from the broker"
        if publish is not None:
            publish()
        assert arrived.wait(5), f"nothing arrived on {topic}"
    finally:
        client.disconnect()  # before loop_stop, which otherwise waits out paho's 1 s select
        client.loop_stop()
    return got[0]


def _publish(broker: Mosquitto, topic: str, payload: bytes, retain: bool = False) -> None:
    client = _client(broker)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()  # before loop_stop, which otherwise waits out paho's 1 s select
        client.loop_stop()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_accepts(port)


def test_mosquitto_delivers_a_published_reading(mosquitto: Mosquitto, site: str) -> None:
    topic = f"factory/{site}/eaf-1/energy/incomer"
    payload = b'{"ts": 1732406400000, "v": 1.5}'
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    received = _receive_one(mosquitto, topic, lambda: _publish(mosquitto, topic, payload))
    assert received == payload


def test_mosquitto_restart_keeps_port_and_retained_meta(
    make_mosquitto: Callable[..., Mosquitto], site: str
) -> None:
    broker = make_mosquitto(persistence=True)
    port = broker.port
    topic = f"factory/{site}/kiln-1/energy/gas/meta"
    meta = b'{"carrier": "natural_gas", "unit": "m3"}'
    _publish(broker, topic, meta, retain=True)
    broker.restart()
    assert broker.port == port and broker.running
    assert _receive_one(broker, topic) == meta


def test_mosquitto_kill_closes_the_port(make_mosquitto: Callable[..., Mosquitto]) -> None:
    broker = make_mosquitto()
    broker.kill()
    assert not broker.running
    assert wait_until(lambda: not port_accepts(broker.port), 5, what="the port to close")


def test_victoria_reads_back_a_line_protocol_point(victoria: VictoriaMetrics, site: str) -> None:
    ts_ms = (int(time.time()) - 60) * 1000
    point = (
        Point("energy_intensity")
        .tag("site", site)
        .tag("line", "eaf-1")
        .tag("window", "15m")
        .field("kgce_per_t", 61.25)
        .time(ts_ms, WritePrecision.MS)
    )
    with InfluxDBClient(url=victoria.url, token="test", org="test") as client:
        client.write_api(write_options=SYNCHRONOUS).write("test", "test", point)
    series = victoria.export(f'energy_intensity_kgce_per_t{{site="{site}"}}')
    assert series == [
        {
            "metric": {
                "__name__": "energy_intensity_kgce_per_t",
                "site": site,
                "line": "eaf-1",
                "window": "15m",
            },
            "values": [61.25],
            "timestamps": [ts_ms],
        }
    ]
    assert victoria.samples(f'energy_intensity_kgce_per_t{{site="{site}"}}') == {ts_ms: [61.25]}


def test_victoria_keeps_points_across_stop_and_start(
    make_victoria: Callable[[], VictoriaMetrics], site: str
) -> None:
    server = make_victoria()
    ts_ms = (int(time.time()) - 60) * 1000
    line = f"energy_intensity,site={site},line=kiln-1,window=1h production_t=12.5 {ts_ms}"
    with InfluxDBClient(url=server.url, token="test", org="test") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            "test", "test", line, write_precision=WritePrecision.MS
        )
    port = server.port
    server.stop()
    server.start()
    assert server.port == port
    assert server.samples(f'energy_intensity_production_t{{site="{site}"}}') == {ts_ms: [12.5]}


_FAKE_EXPORTER = """
import sys, time
from prometheus_client import Counter, start_http_server
port = int(sys.argv[sys.argv.index("--metrics-port") + 1])
Counter("wattline_messages_received_total", "msgs", ["topic_kind"]).labels("energy").inc(3)
start_http_server(port, addr="127.0.0.1")
print("serving", sys.argv[1:], flush=True)
while True:
    time.sleep(0.1)
"""


def test_daemon_runner_scrapes_metrics_and_stops(
    wattline_daemon: Callable[..., Wattline],
) -> None:
    daemon = wattline_daemon(
        ["--store", "x"], program=[sys.executable, "-c", _FAKE_EXPORTER], ready_timeout_s=20
    )
    assert daemon.metric("wattline_messages_received_total", {"topic_kind": "energy"}) == 3.0
    assert daemon.metric("wattline_messages_received_total", {"topic_kind": "production"}) is None
    assert daemon.metric("wattline_no_such_metric") is None
    assert daemon.metric_sum("wattline_messages_received_total") == 3.0
    assert daemon.metric_sum("wattline_payload_errors_total") == 0.0
    assert "serving ['--store', 'x', '--metrics-port'," in daemon.log_text()
    assert daemon.stop() is not None
    assert not daemon.running


def test_missing_component_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make setup"):
        missing_component(ComponentMissing("victoria-metrics"))


def test_missing_component_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make setup"):
        missing_component(ComponentMissing("victoria-metrics"))
