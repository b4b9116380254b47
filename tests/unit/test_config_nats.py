"""The NATS source's settings and subject layout (ingest/config_nats.py,
ingest/sources/nats_layout.py)."""

from __future__ import annotations

import pytest

from wattline.contract.errors import ConfigError
from wattline.contract.topics import TopicTemplate
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.sources.nats_layout import server_mappings, topic_of_subject


def test_the_source_is_mqtt_unless_a_nats_url_is_given() -> None:
    assert settings_from_mapping({}).nats.nats_url is None
    url = settings_from_mapping({"source": "nats://10.0.0.5"}).nats.nats_url
    assert url is not None and (url.host, url.port) == ("10.0.0.5", 4222)


@pytest.mark.parametrize(("values", "key"), [
    ({"source": "kafka://x:9092"}, "source"),
    ({"source": "nats://u:p@x:4222"}, "source"),
    ({"source": "nats://x:4222", "partitions": 0}, "partitions"),
    ({"source": "nats://x:4222", "lease_ttl": "1s"}, "lease_ttl"),
    ({"nats_stream": "a.b"}, "nats_stream"),
])
def test_bad_nats_settings_are_refused_naming_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(values)
    assert err.value.key == key


def test_the_mapping_partitions_readings_and_meta_by_the_site_and_line_levels() -> None:
    template = TopicTemplate("{prefix}/{line}/{kind}/{site}/{meter}", prefix="plant")
    mappings = server_mappings(template, "ws", 8)
    assert mappings == {
        "plant.*.*.*.*": "ws.{{partition(8,3,1)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}."
                         "{{wildcard(3)}}.{{wildcard(4)}}",
        "plant.*.*.*.*.meta": "ws.{{partition(8,3,1)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}."
                              "{{wildcard(3)}}.{{wildcard(4)}}.meta",
    }


def test_a_partitioned_subject_gives_back_the_mqtt_topic_dots_included() -> None:
    assert topic_of_subject("ws.3.factory.plant-a.line//2.energy.m1") == \
        "factory/plant-a/line.2/energy/m1"
