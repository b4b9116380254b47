"""Both InfluxDB writers escape tag values the one way InfluxDB's parser reads them
(tests/influx_line_protocol.py, found against InfluxDB 1.6.7 in tests/e2e/test_influx_v1.py):
a value runs up to the first ``,`` or space not directly after a backslash, then ``\\,``
``\\=`` and ``\\ `` lose their backslash and every other backslash stays. Any accepted
name must read back as itself from what either writer sends, and cannot end its value
early; a name ending in a backslash is refused by both, alone."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.influx_line_protocol import parse_line, read_tag_value
from tests.property.test_names import lp_name_lists
from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.influx import InfluxSink
from wattline.ingest.sinks.influx_v1 import InfluxV1Sink
from wattline.ingest.sinks.line_protocol import escape_tag_value

_NAMES = st.text(st.sampled_from(list("a\\,= \"é東")), min_size=1).filter(
    lambda v: not v.endswith("\\"))


@given(_NAMES)
def test_a_tag_value_reads_back_as_itself_and_ends_where_it_should(value: str) -> None:
    assert read_tag_value(escape_tag_value(value) + ",line=x") == (value, ",line=x")


@pytest.mark.parametrize("value", ["a\\", "C:\\plant\\\\", ""])
def test_a_tag_value_influxdb_cannot_read_back_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        escape_tag_value(value)


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append(body)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def capturing_server() -> Iterator[tuple[str, list[bytes]]]:
    """A server that answers every write 204 and keeps the (unzipped) bodies."""
    bodies: list[bytes] = []
    handler = type("Handler", (_Capture,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def _rows(sites: list[str]) -> pa.Table:
    lines = sites[1:] + sites[:1]
    return pa.Table.from_pylist([
        {"site": s, "line": ln, "window": "15m", "time_ms": 1_000 + i, "energy_kgce": 1.5,
         "electricity_kwh": 2.0, "production_t": 0.5, "kgce_per_t": 3.0, "kwh_per_t": 4.0}
        for i, (s, ln) in enumerate(zip(sites, lines, strict=True))], schema=INTENSITY_SCHEMA)


def _sinks(url: str) -> list[InfluxSink | InfluxV1Sink]:
    return [InfluxSink(url, "o", "b", "t"), InfluxV1Sink(url, "db")]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lp_name_lists)
def test_any_name_reads_back_from_what_both_writers_send(
    capturing_server: tuple[str, list[bytes]], sites: list[str],
) -> None:
    url, bodies = capturing_server
    table = _rows(sites)
    for sink in _sinks(url):
        bodies.clear()
        sink.write(table)
        sink.close()
        (body,) = bodies
        points = [parse_line(line) for line in body.decode().splitlines()]
        assert [(m, t) for m, t, _, _ in points] == [
            ("energy_intensity", {"site": r["site"], "line": r["line"], "window": "15m"})
            for r in table.to_pylist()]


def test_both_writers_send_the_same_bytes_and_refuse_a_trailing_backslash_alone(
    capturing_server: tuple[str, list[bytes]],
) -> None:
    url, bodies = capturing_server
    table = _rows(["ok", "C:\\plant\\", "a\\b,c"])
    sent = []
    for sink in _sinks(url):
        bodies.clear()
        with pytest.raises(SinkError) as err:
            sink.write(table)
        sink.close()
        assert not err.value.retryable and list(err.value.rejected or {}) == [0, 1]
        assert "ending in a backslash" in str(err.value)
        (body,) = bodies
        sent.append(body)
    assert sent[0] == sent[1]
    assert sent[0].count(b"\n") == 1  # the lines are rotated: row 2 alone is whole
    assert sent[0].startswith(b"energy_intensity,site=a\\b\\,c,line=ok,")
