"""Reconnect backoff: capped, exponential, jittered, reset by a successful connection."""

from __future__ import annotations

from wattline.ingest.config import parse_mqtt_url
from wattline.ingest.sources.mqtt import RECONNECT_MAX_S, MqttSource


def _source() -> MqttSource:
    return MqttSource(parse_mqtt_url("mqtt://127.0.0.1:1"), ["factory/+/+/+/+"],
                      lambda topic, payload: None)


def test_each_failed_attempt_doubles_the_ceiling_and_draws_in_its_upper_half() -> None:
    source = _source()
    seen = []
    for attempt in range(1, 9):
        source._connect_failed(None, None)
        ceiling = min(RECONNECT_MAX_S, 2.0 ** attempt)
        assert ceiling / 2 <= source.next_reconnect_delay_s <= ceiling
        seen.append(source.next_reconnect_delay_s)
    assert max(seen) <= RECONNECT_MAX_S


def test_two_collectors_that_lost_the_same_broker_wait_different_times() -> None:
    a, b = _source(), _source()
    for _ in range(4):
        a._connect_failed(None, None)
        b._connect_failed(None, None)
    assert a.next_reconnect_delay_s != b.next_reconnect_delay_s
