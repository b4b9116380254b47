"""Credentials are never shown: URLs, free text, log records, config errors and the
systemd status all go through ingest/redact.py."""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattline.contract.errors import ConfigError
from wattline.ingest.app.systemd import notify
from wattline.ingest.config_schema import parse_mqtt_url
from wattline.ingest.redact import RedactingFormatter, redact_text, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtt://user:pass@host:1883", "mqtt://user:***@host:1883"),
    ("mqtts://gateway:s3cr%40t@broker.plant:8883", "mqtts://gateway:***@broker.plant:8883"),
    ("mqtt://user@host:1883", "mqtt://user@host:1883"),
    ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
    ("mqtt://u:p/a@s:s@host:1", "mqtt://u:***@host:1"),
    ("http://admin:pw@influx:8086/api/v2/write", "http://admin:***@influx:8086/api/v2/write"),
    ("http://influx:8086/write?db=e&token=abc123&org=o",
     "http://influx:8086/write?db=e&token=***&org=o"),
    ("http://influx:8086/query?u=me&p=x&password=hunter2", "http://influx:8086/query?u=me&p=x&password=***"),
    ("http://host/a@b", "http://host/a@b"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(st.text(min_size=1))
def test_no_password_survives_redact_url(password: str) -> None:
    assert redact_url(f"mqtt://gateway:{password}@broker:1883") == "mqtt://gateway:***@broker:1883"


_PLAIN = st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="'\"<>()[]{}"),
                 min_size=1)


@given(_PLAIN)
def test_no_password_survives_redact_text(password: str) -> None:
    text = f"collecting from mqtt://gateway:{password}@broker:1883 now"
    assert redact_text(text) == "collecting from mqtt://gateway:***@broker:1883 now"


def test_redact_text_hides_urls_tokens_and_authorization_values() -> None:
    text = ("cannot reach http://a:b@influx:8086 (from 'mqtt://u:pw@h:1'); "
            "header Authorization: Token abcdefgh12345678, Bearer eyJhbGciOi.x.y; "
            "url http://h/w?token=t0k3n")
    assert redact_text(text) == (
        "cannot reach http://a:***@influx:8086 (from 'mqtt://u:***@h:1'); "
        "header Authorization: Token ***, Bearer ***; url http://h/w?token=***")
    assert redact_text("nothing secret here: 3 tokens") == "nothing secret here: 3 tokens"


def test_log_lines_and_tracebacks_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("wattline.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("connecting to %s", "mqtt://u:hunter2@h:1883")
        try:
            raise RuntimeError("http://x:hunter2@influx:8086 refused")
        except RuntimeError:
            logger.exception("write failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2" not in out
    assert "mqtt://u:***@h:1883" in out and "http://x:***@influx:8086 refused" in out


@pytest.mark.parametrize("url", [
    "http://gateway:hunter2@127.0.0.1:1883",     # not an MQTT scheme
    "mqtt://gateway:hun/ter2@127.0.0.1:1883",    # bare / in the password: "port" hun
    "mqtt://gateway:hunter2@:1883",              # no host
    "mqtt://gateway:hunter2@127.0.0.1:99999",    # port out of range
])
def test_a_bad_mqtt_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mqtt_url(url)
    message = str(caught.value)
    assert "mqtt_url" in message
    assert "hunter2" not in message and "ter2" not in message and "hun" not in message


def test_the_systemd_status_is_redacted(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        assert notify("READY=1\nSTATUS=collecting from mqtt://gw:hunter2@10.0.0.5:1883",
                      {"NOTIFY_SOCKET": path})
        assert sock.recv(4096) == b"READY=1\nSTATUS=collecting from mqtt://gw:***@10.0.0.5:1883"


def test_the_influxdb_sink_names_its_server_without_the_password() -> None:
    """Its errors end up in health checks and dead-letter files, not only in the log."""
    from tests.processes import free_port
    from wattline.ingest.sinks.base import SinkError
    from wattline.ingest.sinks.influx import InfluxSink

    sink = InfluxSink(f"http://writer:hunter2@127.0.0.1:{free_port()}", "o", "b", "tok",
                      timeout_s=1.0)
    assert sink.url.startswith("http://writer:***@127.0.0.1:")
    with pytest.raises(SinkError) as caught:
        sink.check()
    assert "writer:***@" in str(caught.value) and "hunter2" not in str(caught.value)


def test_the_influxdb1_sink_shows_neither_its_password_nor_its_authorization() -> None:
    from tests.processes import free_port
    from wattline.ingest.sinks.base import SinkError
    from wattline.ingest.sinks.influx_v1 import InfluxV1Sink

    sink = InfluxV1Sink(f"http://127.0.0.1:{free_port()}", "db", username="writer",
                        password="hunter2", timeout_s=1.0)
    for call in (sink.check, lambda: sink._send(b"m f=1 1\n")):
        with pytest.raises(SinkError) as caught:
            call()
        assert "hunter2" not in str(caught.value) and "Basic" not in str(caught.value)
    assert sink._hide("Authorization: " + sink._headers["Authorization"]) == "Authorization: ***"
    sink.close()
