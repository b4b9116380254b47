"""The MQTT source is a Source (the protocol of wattline.ingest.sources.base)."""

from __future__ import annotations

from wattline.ingest.config import parse_mqtt_url
from wattline.ingest.sources.base import Source
from wattline.ingest.sources.mqtt import MqttSource


def test_the_mqtt_source_satisfies_the_source_protocol() -> None:
    source: Source = MqttSource(parse_mqtt_url("mqtt://127.0.0.1:1"), ["factory/+/+/+/+"],
                                lambda topic, payload, ack=None: None, manual_ack=True)
    assert isinstance(source, Source)
    source.ack(None)  # a message that needed no acknowledgement: nothing to do
    source.ack((-1, 1, 1))  # a token from an older connection is ignored


def test_a_class_missing_part_of_the_lifecycle_is_not_a_source() -> None:
    class StartOnly:
        def __init__(self) -> None:
            self.on_connect: list = []

        def start(self) -> None: ...

    assert not isinstance(StartOnly(), Source)
