"""The settings schema: one declaration per key, typed durations, one section per component,
and the example config checked against it."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

import wattline.ingest.config_schema as config_schema
from wattline.contract.durations import parse_duration_ms
from wattline.contract.errors import ConfigError
from wattline.ingest.config import (
    SCHEMA,
    SETTING_KEYS,
    Duration,
    MqttSettings,
    Settings,
    settings_from_mapping,
)
from wattline.ingest.config_schema import LEFT_OUT

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "wattline.example.toml"
SECTION_TITLES = {section.title: section.name for section in Settings.sections()}


def example_keys() -> list[tuple[int, str, str, str]]:
    """(line, heading, key, value text) of every key the example sets or shows commented
    out, above its first table."""
    found = []
    heading = ""
    for n, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("["):
            break
        m = re.match(r"^# --- (.+?) -+$", line)
        if m:
            heading = m.group(1)
            continue
        m = re.match(r"^#?\s*([a-z_]+)\s*=\s*(.+)$", line)
        if m:
            found.append((n, heading, m.group(1), m.group(2)))
    return found


def test_every_example_key_is_in_the_schema_under_its_heading_with_a_valid_value() -> None:
    by_name = {spec.name: spec for spec in SCHEMA}
    for n, heading, key, text in example_keys():
        assert heading in SECTION_TITLES, f"line {n}: heading {heading!r} is not a section"
        spec = by_name.get(key)
        assert spec is not None, f"line {n}: {key} is not a setting"
        assert spec.section == SECTION_TITLES[heading], \
            f"line {n}: {key} belongs under the {spec.section} heading, not {heading!r}"
        value = tomllib.loads(f"{key} = {text}")[key]
        spec.coerce(value)  # raises ConfigError if the example's value is not valid


def test_every_setting_appears_in_the_example_once() -> None:
    shown = [key for _, _, key, _ in example_keys()]
    assert sorted(set(shown)) == sorted(shown), "a key appears twice in the example"
    flat = {spec.name for spec in SCHEMA if not spec.is_table and spec.hint is not LEFT_OUT}
    assert flat - set(shown) == set(), "the example does not mention these keys"
    text = EXAMPLE.read_text(encoding="utf-8")
    for spec in SCHEMA:
        if spec.hint is LEFT_OUT:
            assert f"# {spec.name}: not set here" in text, spec.name
    for spec in SCHEMA:
        if spec.is_table:
            assert re.search(rf'^(\[{spec.name}\."|\[\[?{spec.name}\]\]?$)', text,
                             flags=re.MULTILINE), spec.name


def test_the_example_headings_follow_the_sections_in_order() -> None:
    headings = list(dict.fromkeys(h for _, h, _, _ in example_keys()))
    assert headings == [section.title for section in Settings.sections()]


def test_each_key_is_declared_once_in_exactly_one_section() -> None:
    names = [spec.name for spec in SCHEMA]
    assert len(names) == len(set(names))
    assert names == [f.name for f in dataclasses.fields(Settings)]
    assert tuple(names) == SETTING_KEYS
    for section in Settings.sections():
        assert [f.name for f in dataclasses.fields(section.cls)] == \
            [spec.name for spec in section.specs()]


def test_every_setting_has_help_that_says_nothing_about_how_it_was_written() -> None:
    for spec in SCHEMA:
        assert spec.help.endswith("."), spec.name
        assert not re.search(r"\b(stop|issue|section) \d|contract", spec.help, re.I), spec.name


def test_durations_are_parsed_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from_mapping({"emit_every": "30s", "windows": ["5m", "1h"], "stale_after": 90,
                               "store_retention": "400d", "surge_window": "2m"})

    def no_more_parsing(*args: object, **kwargs: object) -> int:
        raise AssertionError("a duration was parsed again after load")

    monkeypatch.setattr(config_schema, "parse_duration_ms", no_more_parsing)
    assert isinstance(s.emit_every, Duration) and s.emit_every == "30s"
    assert s.emit_every.ms == s.emit_every_ms == 30_000
    assert s.windows == ("5m", "1h") and s.windows_ms == (300_000, 3_600_000)
    assert s.stale_after == "90s" and s.stale_after_ms == 90_000
    assert s.store_retention_days == 400
    assert s.surge_window_ms == 120_000
    assert (s.allowed_lateness_ms, s.max_future_ms, s.max_past_ms) == (30_000, 300_000,
                                                                       30 * 86_400_000)
    assert (s.session_expiry_ms, s.checkpoint_every_ms, s.batch_max_wait_ms) == (
        3_600_000, 60_000, 200)
    assert s.spike_windows == ("5m", "1h") and s.level_window_name == "1h"


def test_every_duration_default_is_typed() -> None:
    s = settings_from_mapping({})
    for spec in SCHEMA:
        value = getattr(s, spec.name)
        if spec.kind is Duration and value is not None:
            assert isinstance(value, Duration) and value.ms == parse_duration_ms(value)
        if spec.kind is tuple:
            assert all(isinstance(v, Duration) for v in value)


def test_a_replaced_duration_stays_typed() -> None:
    """What a reload does: the new file's stale limit merged into the running settings."""
    current = settings_from_mapping({"stale_after": "1h"})
    merged = dataclasses.replace(current, stale_after=settings_from_mapping(
        {"stale_after": "2s"}).stale_after)
    assert merged.stale_after_ms == 2000 and merged.alerts.stale_after.ms == 2000
    assert dataclasses.replace(current, stale_after="3s").stale_after_ms == 3000


def test_each_component_gets_only_its_section() -> None:
    s = settings_from_mapping({"mqtt_url": "mqtt://broker:1884", "stale_after": "2m"})
    assert isinstance(s.mqtt, MqttSettings) and s.mqtt.mqtt_url == "mqtt://broker:1884"
    assert not hasattr(s.mqtt, "stale_after")
    assert s.alerts.stale_after_ms == 120_000
    assert s.semantics.windows_ms == s.windows_ms
    assert s.durability.resolved_spool_dir is None
    assert s.mqtt is s.mqtt  # built once


@pytest.mark.parametrize("attribute", [
    # flat names other modules read
    "alert_topic", "allowed_lateness_ms", "batch_max_messages", "batch_max_wait_ms",
    "checkpoint_every_ms", "client_id", "emit_every_ms", "influx_bucket", "influx_org",
    "influx_url", "level_window_name", "lines", "log_level", "max_future_ms", "max_past_ms",
    "max_payload_bytes", "meters", "metrics_host", "metrics_port", "min_production_t",
    "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file", "mqtt_protocol", "mqtt_share_group",
    "mqtt_url", "persistent_session", "qos", "queue_max_messages", "resolved_dead_letter_dir",
    "resolved_influx_token", "resolved_mqtt_password", "resolved_spool_dir",
    "session_expiry_ms", "sparkplug", "spike_windows", "spool_max_bytes", "stale_after_ms",
    "state_dir", "store", "store_retention_days", "surge_window_ms", "topic_prefix",
    "topic_template", "windows", "windows_ms",
])
def test_the_flat_attributes_other_modules_read_still_exist(attribute: str) -> None:
    getattr(settings_from_mapping({}), attribute)


@pytest.mark.parametrize(("values", "key", "message"), [
    ({"qos": 3}, "qos", "must be 0, 1 or 2, got 3"),
    ({"mqtt_protocol": "4"}, "mqtt_protocol", "must be 3.1.1 or 5, got '4'"),
    ({"log_level": "loud"}, "log_level", "must be debug, info, warning or error"),
    ({"qos": True}, "qos", "expected int, got True"),
    ({"spike_ratio": "x"}, "spike_ratio", "expected a number"),
    ({"spike_ratio": -1}, "spike_ratio", "must be a positive number, got -1"),
    ({"batch_max_messages": 0}, "batch_max_messages", "must be positive"),
    ({"min_production_t": -1}, "min_production_t", "must not be negative"),
    ({"alert_topic": "maybe"}, "alert_topic", "expected true or false"),
    ({"emit_every": [1]}, "emit_every", "expected str or int or float"),
    ({"emit_every": "soon"}, "emit_every", "expected a duration"),
    ({"windows": []}, "windows", "expected a list like 15m,1h,24h"),
    ({"store_retention": "36h"}, "store_retention", "give whole days"),
    ({"topic_prefix": 5}, "topic_prefix", "expected str, got 5"),
    ({"metrics_port": 70000}, "metrics_port", "must be a TCP port"),
    ({"influx_url": "http://x"}, "influx_bucket", "go together"),
    ({"influx_url": "htp://x:8086", "influx_bucket": "b"}, "influx_url",
     "expected http://host:port or https://host:port, got 'htp://x:8086'"),
    ({"influx_url": "http://:8086", "influx_bucket": "b"}, "influx_url", "no host in"),
    ({"influx_url": "http://db:80866", "influx_bucket": "b"}, "influx_url", "bad port in"),
    ({"influx_url": "https://u:secret@db:x", "influx_bucket": "b"}, "influx_url",
     "bad port in 'https://u:***@db:x'"),
    ({"mqtt_url": "htp://broker:1883"}, "mqtt_url", "expected mqtt://host:port"),
    ({"mqtt_url": "mqtt://:1883"}, "mqtt_url", "no host in 'mqtt://:1883'"),
    ({"mqtt_url": "mqtt://broker:1883/factory"}, "mqtt_url", "unexpected path '/factory'"),
    ({"influx_api": "v1", "influx_url": "http://x"}, "influx_db", "go together"),
    ({"influx_api": "v1", "influx_url": "mqtt://x", "influx_db": "d"}, "influx_url",
     "expected http://host:port or https://host:port"),
    ({"influx_api": "v1", "influx_url": "http://u:secret@x", "influx_db": "d"}, "influx_url",
     "holds credentials"),
    ({"influx_api": "v1", "influx_url": "http://x", "influx_db": "d", "influx_bucket": "b"},
     "influx_bucket", "is a setting of the v2 API"),
    ({"influx_url": "http://x", "influx_bucket": "b", "influx_db": "d"}, "influx_db",
     "is a setting of the v1 API"),
    ({"influx_api": "v3"}, "influx_api", "must be v1 or v2"),
    ({"spike_short_window": "2h"}, "spike_short_window", "is not one of the windows"),
    ({"spike_clear_ratio": 2.0}, "spike_clear_ratio", "is above the start ratio"),
    ({"windows_typo": "1m"}, "windows_typo", "unknown key"),
])
def test_a_bad_value_is_named_by_its_key(values: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(values)
    assert err.value.key == key
    assert message in err.value.message
    assert "secret" not in str(err.value)


def test_the_influxdb1_password_comes_from_its_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1 = {"influx_api": "v1", "influx_url": "http://x", "influx_db": "d", "influx_user": "u"}
    monkeypatch.delenv("WATTLINE_INFLUX_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="has no password"):
        settings_from_mapping(v1)
    monkeypatch.setenv("WATTLINE_INFLUX_PASSWORD", "from-env")
    assert settings_from_mapping(v1).resolved_influx_password() == "from-env"
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    settings = settings_from_mapping({**v1, "influx_password_file": str(secret)})
    assert settings.resolved_influx_password() == "from-file"
    assert "from-" not in repr(settings)


def test_values_from_flags_and_the_environment_arrive_as_strings() -> None:
    s = settings_from_mapping({"qos": "0", "spike_ratio": "2.5", "alert_topic": "off",
                               "windows": "1m, 5m", "min_production_t": "0.5"})
    assert (s.qos, s.spike_ratio, s.alert_topic, s.windows, s.min_production_t) == (
        0, 2.5, False, ("1m", "5m"), 0.5)


def test_the_example_config_is_the_one_the_schema_writes() -> None:
    from wattline.ingest.config_example import example_config

    assert EXAMPLE.read_text(encoding="utf-8") == example_config(), (
        "deploy/wattline.example.toml is out of date: regenerate it with "
        "`wattline check-config --example > deploy/wattline.example.toml`")


def test_the_example_config_shows_a_setting_best_left_unset_commented_out() -> None:
    from wattline.ingest.config_example import example_config

    text = example_config()
    assert '\n# influx_url = "http://127.0.0.1:8086"\n' in text
    assert '\nstate_dir = "/var/lib/wattline/state"\n' in text
    assert "# Default: none, windows restart empty.\n" in text
    assert tomllib.loads(text)["meters"]  # the tables parse as TOML tables
