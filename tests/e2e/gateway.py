"""A gateway stand-in for the end-to-end tests: an MQTT client that publishes readings
to a test broker and waits for its acknowledgements.

``connect_publisher`` connects (over TLS or with a username when asked) and starts
the client's network loop; ``close_publisher`` ends both. The ``make_publisher``
fixture (tests/e2e/conftest.py) closes its clients after the test.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from tests.e2e.credentials import Certificates
from tests.e2e.eaf_stream import ENERGY_METER, LINE
from tests.processes import Wattline


def connect_publisher(
    port: int,
    *,
    certificates: Certificates | None = None,
    credentials: tuple[str, str] | None = None,
) -> mqtt.Client:
    """An MQTT 3.1.1 client connected to 127.0.0.1:``port``, looping; over TLS with the
    client certificate of ``certificates``, or logged in with ``credentials``, when given."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(50)
    if certificates is not None:
        client.tls_set(ca_certs=str(certificates.ca), certfile=str(certificates.client_cert),
                       keyfile=str(certificates.client_key), cert_reqs=ssl.CERT_REQUIRED)
    if credentials is not None:
        client.username_pw_set(*credentials)
    connected = client.connect("127.0.0.1", port)
    assert connected == mqtt.MQTT_ERR_SUCCESS
    client.loop_start()
    return client


def close_publisher(client: mqtt.Client) -> None:
    client.disconnect()  # before loop_stop, which otherwise waits out paho's select
    client.loop_stop()


def publish_all(client: mqtt.Client, messages: list[tuple[str, Any]], timeout_s: float) -> None:
    """Publish (topic, JSON-able payload) messages at QoS 1; wait for every acknowledgement."""
    infos = [client.publish(topic, json.dumps(payload), qos=1) for topic, payload in messages]
    deadline = time.monotonic() + timeout_s
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "the broker did not acknowledge every reading"


def publish_once(port: int, messages: list[tuple[str, Any]], timeout_s: float = 30) -> None:
    """Connect a publisher to the MQTT listener on ``port``, publish ``messages`` (as
    ``publish_all``), and disconnect."""
    client = connect_publisher(port)
    try:
        publish_all(client, messages, timeout_s=timeout_s)
    finally:
        close_publisher(client)


def wait_until_subscribed(
    daemon: Wattline, client: mqtt.Client, site: str, timeout_s: float
) -> None:
    """Publish the meter's (default) meta until the daemon counts a message: it has subscribed.

    The daemon uses a clean session, so anything published before its SUBSCRIBE
    lands would be lost; its connected gauge is set before the broker's SUBACK.
    """
    meta_topic = f"factory/{site}/{LINE}/energy/{ENERGY_METER}/meta"
    meta = json.dumps({"carrier": "electricity", "unit": "kWh", "mode": "counter"})
    deadline = time.monotonic() + timeout_s
    while daemon.metric_sum("wattline_messages_received_total") < 1:
        assert daemon.running, "the daemon exited"
        assert time.monotonic() < deadline, "the daemon never received a message"
        client.publish(meta_topic, meta, qos=1).wait_for_publish(5)
        time.sleep(0.3)


def publish_stream(daemon: Wattline, broker_port: int, site: str,
                   messages: list[tuple[str, Any]]) -> None:
    """As a gateway: once ``daemon`` has subscribed, publish ``messages`` at QoS 1 and
    wait for the broker's acknowledgements."""
    client = connect_publisher(broker_port)
    try:
        wait_until_subscribed(daemon, client, site, timeout_s=30)
        publish_all(client, messages, timeout_s=30)
    finally:
        close_publisher(client)
