"""The MQTT section's rules: {host} in the client id, the lines subscribed to, and a
shared subscription refused unless each collector's filter names its own lines."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from wattline.contract.errors import ConfigError
from wattline.contract.topics import TopicTemplate
from wattline.ingest.config import check_config_file, settings_from_mapping
from wattline.ingest.config_mqtt import expand_client_id, parse_subscribe_lines
from wattline.ingest.sources.mqtt import subscription_filters


def test_host_in_the_client_id_is_this_machines_host_name() -> None:
    settings = settings_from_mapping({"client_id": "wattline-{host}",
                                      "persistent_session": True})
    assert settings.client_id == f"wattline-{socket.gethostname()}"
    assert settings.mqtt.client_id == settings.client_id
    assert expand_client_id("wl-{host}-{host}", "gw3") == "wl-gw3-gw3"
    assert expand_client_id("plain", "gw3") == "plain"


def test_subscribe_lines_are_site_line_pairs() -> None:
    assert parse_subscribe_lines(None) is None
    assert parse_subscribe_lines(" plant-a/eaf-1 ,plant-a/+, +/+,plant-a/eaf-1") == (
        ("plant-a", "eaf-1"), ("plant-a", "+"), ("+", "+"))
    assert parse_subscribe_lines("Werk Süd/Ofen 2") == (("Werk Süd", "Ofen 2"),)


@pytest.mark.parametrize("text", ["plant-a", "plant-a/eaf-1/x", "plant-a/", "a/b,",
                                  "a/#", "a/eaf+1", "./b", " /b"])
def test_a_subscribe_lines_entry_that_is_not_site_line_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"subscribe_lines": text})
    assert caught.value.key == "subscribe_lines"
    assert "is not site/line" in str(caught.value)


@pytest.mark.parametrize("lines", [None, "plant-a/+", "+/eaf-1", "plant-a/eaf-1,plant-b/+"])
def test_a_share_group_is_refused_unless_every_line_is_named(lines: str | None) -> None:
    values = {"mqtt_share_group": "wattline", "mqtt_protocol": "5", "subscribe_lines": lines}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(values)
    message = str(caught.value)
    assert caught.value.key == "mqtt_share_group"
    assert "\n" not in message
    assert "split" in message and "partial energy_intensity" in message
    assert "subscribe_lines" in message and "unset" in message


def test_a_share_group_over_named_lines_is_accepted() -> None:
    settings = settings_from_mapping({"mqtt_share_group": "g", "mqtt_protocol": "5",
                                      "subscribe_lines": "plant-a/eaf-1,plant-a/eaf-2"})
    assert settings.subscribed_lines == (("plant-a", "eaf-1"), ("plant-a", "eaf-2"))


def test_check_config_points_at_the_share_group_line(tmp_path: Path) -> None:
    path = tmp_path / "wattline.toml"
    path.write_text('qos = 1\nmqtt_share_group = "wattline"\n')
    with pytest.raises(ConfigError) as caught:
        check_config_file(str(path))
    assert str(caught.value).startswith(f"{path}:2: mqtt_share_group: ")


def test_subscription_filters() -> None:
    template = TopicTemplate()
    assert subscription_filters(template) == ["factory/+/+/+/+", "factory/+/+/+/+/meta"]
    assert subscription_filters(template, [("s", "l1"), ("s", "l2")], share_group="g") == [
        "$share/g/factory/s/l1/+/+", "$share/g/factory/s/l1/+/+/meta",
        "$share/g/factory/s/l2/+/+", "$share/g/factory/s/l2/+/+/meta"]
    moved = TopicTemplate("{prefix}/{line}/x/{site}/{kind}/{meter}", prefix="p/q")
    assert subscription_filters(moved, [("s", "+")]) == ["p/q/+/x/s/+/+", "p/q/+/x/s/+/+/meta"]
    sparkplug = subscription_filters(template, [("s", "l")], sparkplug=True)[2:]
    assert sparkplug == ["spBv1.0/s/NBIRTH/l", "spBv1.0/s/NDATA/l", "spBv1.0/s/NDEATH/l",
                         "spBv1.0/s/DBIRTH/l/+", "spBv1.0/s/DDATA/l/+", "spBv1.0/s/DDEATH/l/+"]
