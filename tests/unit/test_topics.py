"""Topic parsing: which meter a topic names, and which names are refused (topic_name)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.contract.errors import ConfigError, TopicError
from wattline.contract.topics import MeterTopic, TopicTemplate, subscriptions, valid_name


@pytest.fixture
def factory() -> TopicTemplate:
    return TopicTemplate()


def reason_of(template: TopicTemplate, topic: str) -> str:
    with pytest.raises(TopicError) as info:
        template.parse(topic)
    assert info.value.topic == topic
    return info.value.reason


def test_reading_topic_names_site_line_kind_meter(factory: TopicTemplate) -> None:
    assert factory.parse("factory/plant-1/hot_strip.2/energy/MV-feeder_07") == MeterTopic(
        "plant-1", "hot_strip.2", "energy", "MV-feeder_07", is_meta=False
    )


def test_meta_suffix_marks_a_meter_description(factory: TopicTemplate) -> None:
    topic = factory.parse("factory/s/kiln1/production/clinker/meta")
    assert topic == MeterTopic("s", "kiln1", "production", "clinker", is_meta=True)


def test_a_meter_called_meta_is_still_a_reading_topic(factory: TopicTemplate) -> None:
    assert factory.parse("factory/s/l/energy/meta").is_meta is False


def test_repeated_topic_is_served_from_the_cache(factory: TopicTemplate) -> None:
    first = factory.parse("factory/s/l/energy/m")
    assert factory.parse("factory/s/l/energy/m") is first


@pytest.mark.parametrize(
    "topic",
    [
        "factory/s/l/energy",                 # too few levels
        "factory/s/l/energy/m/x",             # extra level that is not meta
        "factory/s/l/energy/m/meta/meta",     # too many levels
        "plant/s/l/energy/m",                 # prefix mismatch
        "Factory/s/l/energy/m",               # prefix is case-sensitive
        "/factory/s/l/energy/m",              # leading slash adds an empty level
        "#/s/l/energy/m",                     # wildcard where the prefix belongs
        "",
    ],
)
def test_wrong_layout_is_topic_layout(factory: TopicTemplate, topic: str) -> None:
    assert reason_of(factory, topic) == "topic_layout"


@pytest.mark.parametrize("kind", ["power", "Energy", "", "energy ", "+"])
def test_unknown_kind_is_topic_kind(factory: TopicTemplate, kind: str) -> None:
    assert reason_of(factory, f"factory/s/l/{kind}/m") == "topic_kind"


@pytest.mark.parametrize(
    "name",
    ["a\nb", "a\rb", "a\x00b", "a\tb", "a\x1bb", "a\x7fb", "a\x85b", "a\x9fb", "end\n",
     "", "x" * 65, ".", "..", " a", "a ", "\u00a0a", "a\u3000", "\u2028", "a\ud800"],
)
@pytest.mark.parametrize("position", ["site", "line", "meter"])
def test_control_characters_white_space_at_an_end_and_dot_names_are_topic_name(
    factory: TopicTemplate, name: str, position: str
) -> None:
    levels = {"site": "s", "line": "l", "meter": "m"} | {position: name}
    topic = f"factory/{levels['site']}/{levels['line']}/energy/{levels['meter']}"
    assert reason_of(factory, topic) == "topic_name"
    assert not valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["Plant A", "EAF 1", "Öfen-3", "Sparkplug B Devices", "a,b", "a=b", 'a"b', "a'b",
     "a\\b", "trailing\\", "mètre", "米", "一号电弧炉", "a+b", "a#", "...", ".hidden",
     "%2F", "a\u00a0b", "😀" * 64, "x" * 64],
)
def test_names_as_gateways_write_them_are_kept_exactly(factory: TopicTemplate,
                                                       name: str) -> None:
    topic = factory.parse(f"factory/{name}/{name}/energy/{name}")
    assert (topic.site, topic.line, topic.meter) == (name, name, name)
    assert valid_name(name)


def test_names_of_64_characters_are_accepted(factory: TopicTemplate) -> None:
    name = "A" * 32 + "z9_.- " + "b" * 26
    assert len(name) == 64
    assert factory.parse(f"factory/{name}/{name}/energy/{name}").meter == name


_ALLOWED = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))


@settings(max_examples=300, deadline=None)
@given(st.text(_ALLOWED, min_size=1, max_size=64))
def test_the_rule_is_what_it_says(name: str) -> None:
    expected = (not name[0].isspace() and not name[-1].isspace() and name not in {".", ".."})
    assert valid_name(name) is expected


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=80))
def test_no_name_with_a_control_character_or_over_64_characters_is_valid(name: str) -> None:
    if any(0x00 <= ord(c) <= 0x1F or 0x7F <= ord(c) <= 0x9F for c in name) or not (
            1 <= len(name) <= 64):
        assert not valid_name(name)


def test_rejected_topics_are_not_cached(factory: TopicTemplate) -> None:
    for i in range(100):
        with pytest.raises(TopicError):
            factory.parse(f"factory/s/l/energy/bad meter {i} ")
    assert len(factory._cache) == 0  # private: the bound is the behaviour under test


def test_cache_stays_bounded_and_still_parses_after_eviction() -> None:
    template = TopicTemplate(cache_size=3)
    for i in range(10):
        assert template.parse(f"factory/s/l/energy/m{i}").meter == f"m{i}"
    assert len(template._cache) == 3
    assert template.parse("factory/s/l/energy/m0").meter == "m0"


def test_prefix_may_span_levels() -> None:
    template = TopicTemplate(prefix="plant/north")
    assert template.parse("plant/north/s/l/energy/m").site == "s"
    assert reason_of(template, "plant/s/l/energy/m") == "topic_layout"


def test_template_may_reorder_fields_and_hold_fixed_levels() -> None:
    template = TopicTemplate("{prefix}/v1/{kind}/{site}/{line}/{meter}", prefix="f")
    assert template.parse("f/v1/production/s/l/m/meta") == MeterTopic(
        "s", "l", "production", "m", is_meta=True
    )
    assert reason_of(template, "f/v2/production/s/l/m") == "topic_layout"


def test_topic_builds_what_parse_reads() -> None:
    template = TopicTemplate("{prefix}/{kind}/{site}/{line}/{meter}", prefix="a/b")
    topic = template.topic("s", "l", "energy", "m", meta=True)
    assert topic == "a/b/energy/s/l/m/meta"
    assert template.parse(topic) == MeterTopic("s", "l", "energy", "m", is_meta=True)


def test_subscriptions_for_default_layout() -> None:
    assert subscriptions() == ["factory/+/+/+/+", "factory/+/+/+/+/meta"]


def test_subscriptions_take_a_prefix_or_a_template() -> None:
    assert subscriptions("plant/north") == ["plant/north/+/+/+/+", "plant/north/+/+/+/+/meta"]
    template = TopicTemplate("{prefix}/v1/{site}/{line}/{kind}/{meter}", prefix="f")
    assert subscriptions(template) == ["f/v1/+/+/+/+", "f/v1/+/+/+/+/meta"]


@pytest.mark.parametrize("prefix", ["", "a//b", "a/+", "#", "fac{tory", "/factory"])
def test_bad_prefix_is_a_config_error_naming_topic_prefix(prefix: str) -> None:
    with pytest.raises(ConfigError) as info:
        TopicTemplate(prefix=prefix)
    assert info.value.key == "topic_prefix"


@pytest.mark.parametrize(
    "template",
    [
        "{prefix}/{site}/{line}/{kind}",                 # no meter
        "{prefix}/{site}/{site}/{line}/{kind}/{meter}",  # site twice
        "{prefix}/{site}/{line}/{kind}/{meter}/{unit}",  # unknown field
        "{prefix}/{site}-{line}/{kind}/{meter}",         # field not a whole level
        "{prefix}//{site}/{line}/{kind}/{meter}",        # empty level
    ],
)
def test_bad_template_is_a_config_error_naming_topic_template(template: str) -> None:
    with pytest.raises(ConfigError) as info:
        TopicTemplate(template)
    assert info.value.key == "topic_template"


def test_topic_error_message_says_what_to_do(factory: TopicTemplate) -> None:
    with pytest.raises(TopicError) as info:
        factory.parse("factory/s/l/energy/a\tb")
    message = str(info.value)
    assert "topic_name" in message and "control characters" in message


@pytest.mark.e2e
def test_a_daemon_with_its_own_topic_template_reads_gateways_of_that_layout(
        mosquitto, wattline_daemon, site: str) -> None:
    import json
    import time

    import paho.mqtt.client as mqtt

    from tests.processes import wait_until

    daemon = wattline_daemon(["--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}",
                              "--topic-prefix", f"plant/{site}",
                              "--topic-template", "{prefix}/{site}/area/{line}/{kind}/{meter}"])
    wait_until(lambda: daemon.metric("wattline_mqtt_connected") == 1.0, timeout_s=30)
    time.sleep(0.5)
    host, port = mosquitto.url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(host, int(port))
    client.loop_start()
    try:
        now = int(time.time() * 1000)
        # The second is the contract's layout, which this daemon does not subscribe to.
        for topic in (f"plant/{site}/s1/area/eaf-1/energy/power",
                      f"plant/{site}/s1/eaf-1/energy/power"):
            client.publish(topic, json.dumps({"ts": now, "v": 1.0}), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    wait_until(lambda: daemon.metric("wattline_line_last_reading_timestamp_seconds",
                                     {"site": "s1", "line": "eaf-1"}) is not None, timeout_s=10)
    time.sleep(0.5)
    assert daemon.metric_sum("wattline_readings_received_total") == 1.0


def test_a_bad_topic_template_is_a_config_error_naming_the_key() -> None:
    from wattline.contract.errors import ConfigError
    from wattline.ingest.config import settings_from_mapping

    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"topic_template": "{prefix}/{site}/{kind}/{meter}"})
    assert err.value.key == "topic_template" and "{line}" in str(err.value)
