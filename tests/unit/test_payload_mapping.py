"""[[payloads]] mappings: what a mapping reads from a gateway's own document (pure), and
that mapped readings meet the same rules and give the same points as JSON readings."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest

from wattline.contract.errors import PayloadError
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.config_payloads import parse_payloads
from wattline.ingest.decode.mapping import PayloadMapper, filter_matches
from wattline.ingest.pipeline import Message, Pipeline

MAPPINGS = Path(__file__).resolve().parents[2] / "deploy" / "mappings"
NOW = 1_796_637_600_000  # 2026-12-07T10:00:00Z
LIMITS = {"max_future_ms": 300_000, "max_past_ms": 86_400_000, "max_bytes": 1 << 20}


def shipped(name: str) -> list[dict[str, Any]]:
    return tomllib.loads((MAPPINGS / name).read_text())["payloads"]


def read(tables: list[dict[str, Any]], topic: str, doc: Any) -> Any:
    mapper = PayloadMapper(parse_payloads(tables))
    mapping = mapper.match(topic)
    assert mapping is not None
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return mapper.read(mapping, topic, payload, now_ms=NOW, **LIMITS)


def as_lists(result: Any) -> list[tuple[tuple[str, ...], list[int], list[float]]]:
    """The parts of a mapped document: per run of one meter, its times and values."""
    return [(name, ts.tolist(), v.tolist()) for name, ts, v in result.parts]


KEPWARE_DOC = {"timestamp": NOW, "values": [
    {"id": "Channel1.EAF1.MainIncomer", "v": 41234.5, "q": True, "t": NOW - 130},
    {"id": "Channel1.EAF1.TappedSteel", "v": 120, "q": True, "t": NOW - 120},
    {"id": "Channel1.EAF1.MainIncomer", "v": 41240.0, "q": False, "t": NOW - 20},
    {"id": "Channel1.EAF1.Temperature", "v": 1650.0, "q": True, "t": NOW - 10},
]}


def test_kepware_values_become_readings_of_their_tags_meters() -> None:
    result = read(shipped("kepware-iot-gateway.toml"), "iotgateway", KEPWARE_DOC)
    assert as_lists(result) == [
        (("plant-a", "eaf-1", "energy", "main-incomer"), [NOW - 130], [41234.5]),
        (("plant-a", "eaf-1", "production", "tapped-steel"), [NOW - 120], [120.0]),
    ]
    # q false is not good; a tag without a meter in the table is the mapping's drop
    assert result.dropped == {"quality": 1, "mapping": 1}
    assert result.received == 4 and result.refused == []


NODE_RED_DOC = {"site": "Plant A", "line": "EAF 1", "readings": [
    {"meter": "main-incomer", "kind": "energy", "value": 41234.5,
     "time": "2026-12-07T09:59:50.000Z"},
    {"meter": "main-incomer", "kind": "energy", "value": 41236.0,
     "time": "2026-12-07T10:59:55+01:00"},
    {"meter": "tapped-steel", "kind": "production", "value": 12.5,
     "time": "2026-12-07T09:59:50Z"},
]}


def test_node_red_readings_take_their_names_from_the_document_in_time_order() -> None:
    result = read(shipped("node-red.toml"), "node-red/plant-a/eaf-1", NODE_RED_DOC)
    energy = ("Plant A", "EAF 1", "energy", "main-incomer")
    assert as_lists(result) == [
        (energy, [NOW - 10_000], [41234.5]),
        (("Plant A", "EAF 1", "production", "tapped-steel"), [NOW - 10_000], [12.5]),
        (energy, [NOW - 5_000], [41236.0]),  # 10:59:55+01:00
    ]
    assert result.dropped == {} and result.received == 3


BY_TOPIC = {"topic": "gw/+/+/+", "readings": "[document]", "site": "topic[1]",
            "line": "topic[2]", "kind": "'energy'", "meter": "topic[3]",
            "value": "reading.kwh", "time": "reading.ts", "time_format": "epoch_s"}


def test_names_from_topic_levels_and_constants_and_times_in_epoch_seconds() -> None:
    result = read([BY_TOPIC], "gw/north/kiln-2/feeder 3", {"kwh": 7.25, "ts": NOW / 1000 - 1.5})
    assert as_lists(result) == [(("north", "kiln-2", "energy", "feeder 3"), [NOW - 1500],
                                 [7.25])]


@pytest.mark.parametrize(("reading", "reason"), [
    ({"ts": NOW / 1000}, "mapping"),  # no value
    ({"kwh": 1.0}, "mapping"),  # no time
    ({"kwh": "12.5", "ts": NOW / 1000}, "value_type"),
    ({"kwh": "NaN", "ts": NOW / 1000}, "value_not_finite"),
    ({"kwh": 1e300, "ts": NOW / 1000}, "value_range"),
    ({"kwh": True, "ts": NOW / 1000}, "value_type"),
    ({"kwh": 1.0, "ts": "2026-12-07T10:00:00Z"}, "ts_invalid"),  # not epoch seconds
    ({"kwh": 1.0, "ts": NOW / 1000 + 3600}, "ts_out_of_range"),
    ({"kwh": 1.0, "ts": 631_152_000}, "ts_out_of_range"),  # 1990
])
def test_a_mapped_reading_meets_the_rules_of_every_json_reading(reading: dict,
                                                               reason: str) -> None:
    result = read([BY_TOPIC], "gw/s/l/m", reading)
    assert result.parts == [] and result.dropped == {reason: 1} and result.received == 1


def test_quality_is_compared_by_type_and_absent_quality_is_good() -> None:
    table = {**BY_TOPIC, "readings": "document.r", "quality": "reading.q", "good": [True, 192]}
    doc = {"r": [{"kwh": 1.0, "ts": NOW / 1000, "q": q} for q in (True, 1, 192.0, 0, "good")]
           + [{"kwh": 2.0, "ts": NOW / 1000}]}
    result = read([table], "gw/s/l/m", doc)
    assert as_lists(result) == [(("s", "l", "energy", "m"), [NOW] * 3, [1.0, 1.0, 2.0])]
    assert result.dropped == {"quality": 3}


def test_a_document_without_the_readings_list_is_refused_as_mapping() -> None:
    kepware = shipped("kepware-iot-gateway.toml")
    for doc in ({"temperature": 21.5}, {"values": {"id": "x"}}, [1, 2]):
        with pytest.raises(PayloadError) as info:
            read(kepware, "iotgateway", doc)
        assert info.value.reason == "mapping"
    with pytest.raises(PayloadError) as info:
        read(kepware, "iotgateway", b"{not json")
    assert info.value.reason == "invalid_json"
    with pytest.raises(PayloadError) as info:
        read(kepware, "iotgateway", b'{"values": [], "values": []}')
    assert info.value.reason == "duplicate_key"


def test_names_that_are_no_names_are_refused_like_their_topics_once_per_document() -> None:
    doc = {"site": "s", "line": "l", "readings": [
        {"meter": "m ", "kind": "energy", "value": 1.0, "time": "2026-12-07T10:00:00Z"},
        {"meter": "m ", "kind": "energy", "value": 2.0, "time": "2026-12-07T10:00:01Z"},
        {"meter": "m", "kind": "water", "value": 2.0, "time": "2026-12-07T10:00:01Z"},
        {"meter": 7, "kind": "energy", "value": 2.0, "time": "2026-12-07T10:00:01Z"},
    ]}
    result = read(shipped("node-red.toml"), "node-red/x", doc)
    assert result.parts == []
    assert sorted(r for r, _ in result.refused) == ["topic_kind", "topic_name"]
    assert result.dropped == {"mapping": 1}  # a meter that is a number is no string


def test_a_function_given_the_wrong_type_finds_nothing() -> None:
    table = {**BY_TOPIC, "value": "to_number(reading.kwh)", "meter": "upper(reading.kwh)"}
    result = read([table], "gw/s/l/m", {"kwh": 3.5, "ts": NOW / 1000})
    assert result.dropped == {"mapping": 1}


@pytest.mark.parametrize(("mqtt_filter", "topic", "matches"), [
    ("iotgateway", "iotgateway", True),
    ("iotgateway", "iotgateway/x", False),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/d", False),
    ("a/+", "a", False),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("#", "$SYS/broker", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/broker", True),
])
def test_topic_filters_match_as_mqtt_brokers_do(mqtt_filter: str, topic: str,
                                               matches: bool) -> None:
    assert filter_matches(tuple(mqtt_filter.split("/")), topic) is matches


def test_the_first_mapping_whose_filter_matches_reads_the_topic() -> None:
    mapper = PayloadMapper(parse_payloads([{**BY_TOPIC, "topic": "gw/special/+/+"}, BY_TOPIC]))
    assert mapper.match("gw/special/l/m").number == 1  # type: ignore[union-attr]
    assert mapper.match("gw/other/l/m").number == 2  # type: ignore[union-attr]
    assert mapper.match("factory/s/l/energy/m") is None


# -- through the pipeline: the same points as JSON readings ---------------------------------


T0 = 1_796_630_400_000  # a tick, 2026-12-07T08:00:00Z
KEPWARE_TAGS = {"Channel1.EAF1.MainIncomer": "plant-a/eaf-1/energy/main-incomer",
                "Channel1.EAF1.TappedSteel": "plant-a/eaf-1/production/tapped-steel"}


def kepware_settings() -> dict[str, Any]:
    (table,) = shipped("kepware-iot-gateway.toml")
    return {"max_past": "100000d", "windows": "1m,2m", "payloads": [{**table,
                                                                      "tags": KEPWARE_TAGS}]}


def stream(n: int = 30) -> list[tuple[int, float, float]]:
    """(ts, kWh register, t register) every 5 s."""
    return [(T0 + 5_000 * k, 1000.0 + 12.5 * k * (1 + k % 3), 3.0 * k) for k in range(n)]


def test_kepware_documents_give_exactly_the_points_of_the_same_json_readings() -> None:
    clock = lambda: T0 / 1000 + 3600  # noqa: E731
    mapped = Pipeline(settings_from_mapping(kepware_settings()), [], clock=clock)
    plain = Pipeline(settings_from_mapping({"max_past": "100000d", "windows": "1m,2m"}), [],
                     clock=clock)
    docs, messages = [], []
    for ts, kwh, t in stream():
        doc = {"timestamp": ts, "values": [
            {"id": "Channel1.EAF1.MainIncomer", "v": kwh, "q": True, "t": ts},
            {"id": "Channel1.EAF1.TappedSteel", "v": t, "q": True, "t": ts}]}
        docs.append(Message("iotgateway", json.dumps(doc).encode(), ts / 1000))
        for kind, meter, v in (("energy", "main-incomer", kwh),
                               ("production", "tapped-steel", t)):
            messages.append(Message(f"factory/plant-a/eaf-1/{kind}/{meter}",
                                    json.dumps({"ts": ts, "v": v}).encode(), ts / 1000))
    got = mapped.process(docs)
    want = plain.process(messages)
    assert got.num_rows > 0
    assert got.to_pylist() == want.to_pylist()
    sample = mapped.metrics.registry.get_sample_value
    assert sample("wattline_messages_received_total", {"topic_kind": "mapped"}) == len(docs)
    assert sample("wattline_readings_received_total") == 2 * len(docs)


def test_json_topics_still_decode_beside_mappings_and_a_bad_document_is_counted_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    pipeline = Pipeline(settings_from_mapping(kepware_settings()), [],
                        clock=lambda: T0 / 1000 + 3600)
    ts = T0
    batch = [Message("factory/plant-a/eaf-1/energy/other", b'{"ts": %d, "v": 1.0}' % ts,
                     ts / 1000)] + [Message("iotgateway", b'{"temperature": 21.5}', ts / 1000)
                                    for _ in range(3)]
    with caplog.at_level(logging.WARNING):
        pipeline.process(batch)
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_payload_errors_total", {"reason": "mapping"}) == 3
    assert sample("wattline_messages_received_total", {"topic_kind": "reading"}) == 1
    assert pipeline.registry.n_meters == 1
    warnings = [r.getMessage() for r in caplog.records if "mapping" in r.getMessage()]
    assert len(warnings) == 1 and "iotgateway" in warnings[0]


def test_readings_of_mapped_meters_beyond_the_limits_are_dropped_as_meter_limit() -> None:
    settings = settings_from_mapping({**kepware_settings(), "max_meters": 1})
    pipeline = Pipeline(settings, [], clock=lambda: T0 / 1000 + 3600)
    ts, kwh, t = stream(1)[0]
    doc = {"values": [{"id": "Channel1.EAF1.MainIncomer", "v": kwh, "q": True, "t": ts},
                      {"id": "Channel1.EAF1.TappedSteel", "v": t, "q": True, "t": ts}]}
    pipeline.process([Message("iotgateway", json.dumps(doc).encode(), ts / 1000)])
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_readings_dropped_total", {"reason": "meter_limit"}) == 1
    assert pipeline.registry.n_meters == 1



def test_a_document_spanning_more_than_the_lateness_loses_no_reading_to_it() -> None:
    """Several meters over 20 s in one document, allowed lateness 5 s: taken in time
    order, none is late, as if each had come in a message of its own."""
    settings = settings_from_mapping({**kepware_settings(), "allowed_lateness": "5s"})
    pipeline = Pipeline(settings, [], clock=lambda: T0 / 1000 + 3600)
    rows = stream(5)
    doc = {"values": [{"id": "Channel1.EAF1.MainIncomer", "v": kwh, "q": True, "t": ts}
                      for ts, kwh, _ in rows]
           + [{"id": "Channel1.EAF1.TappedSteel", "v": t, "q": True, "t": ts}
              for ts, _, t in rows]}
    pipeline.process([Message("iotgateway", json.dumps(doc).encode(), T0 / 1000)])
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_readings_accepted_total") == 10
    assert sample("wattline_readings_dropped_total", {"reason": "late"}) is None
