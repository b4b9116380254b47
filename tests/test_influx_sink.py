"""InfluxSink against a real /api/v2/write server (VictoriaMetrics), and its error mapping."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pyarrow as pa
import pytest

from tests.processes import VictoriaMetrics, free_port
from wattline.ingest.results import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.influx import InfluxSink

T0 = 1_732_406_400_000


def _batch(site: str) -> pa.Table:
    return pa.table({
        "site": [site] * 3, "line": ["eaf-1", "eaf-1", "eaf-1"], "window": ["15m", "1h", "15m"],
        "time_ms": [T0, T0, T0 + 10_000], "energy_kgce": [61.25, 250.5, 0.0],
        "electricity_kwh": [420.0, 1700.75, 0.0], "production_t": [1.0, 4.0, 0.0],
        "kgce_per_t": [61.25, 62.625, None], "kwh_per_t": [420.0, 425.1875, None],
    }, schema=INTENSITY_SCHEMA)


def test_points_arrive_as_contract_series_with_ms_times(victoria: VictoriaMetrics,
                                                        site: str) -> None:
    sink = InfluxSink(victoria.url, "plant", "energy", "unused-token")
    sink.open()
    sink.write(_batch(site))
    sink.close()
    kgce = victoria.samples(f'energy_intensity_kgce_per_t{{site="{site}",window="15m"}}')
    assert kgce == {T0: [61.25]}  # the idle tick has no intensity field
    energy = victoria.samples(f'energy_intensity_energy_kgce{{site="{site}",window="15m"}}')
    assert energy == {T0: [61.25], T0 + 10_000: [0.0]}
    series = victoria.export(f'energy_intensity_kwh_per_t{{site="{site}"}}')
    labels = sorted((s["metric"]["line"], s["metric"]["window"]) for s in series)
    assert labels == [("eaf-1", "15m"), ("eaf-1", "1h")]
    assert victoria.samples(f'energy_intensity_kwh_per_t{{site="{site}",window="1h"}}') == {
        T0: [425.1875]}


def test_a_server_that_is_down_gives_a_retryable_error() -> None:
    sink = InfluxSink(f"http://127.0.0.1:{free_port()}", "plant", "energy", "t", timeout_s=2)
    sink.open()  # logs, does not fail: the pipeline retries writes
    with pytest.raises(SinkError) as err:
        sink.write(_batch("down"))
    assert err.value.retryable
    assert "cannot reach" in str(err.value)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 500
    headers_out: ClassVar[dict[str, str]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        for key, value in self.headers_out.items():
            self.send_header(key, value)
        body = b'{"code":"x","message":"server says no"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def answering_server(request: pytest.FixtureRequest) -> Iterator[str]:
    status, headers = request.param
    handler = type("Handler", (_Answer,), {"status": status, "headers_out": headers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("answering_server", [(503, {}), (429, {"Retry-After": "7"})],
                         indirect=True)
def test_overload_and_server_errors_are_retryable(answering_server: str) -> None:
    sink = InfluxSink(answering_server, "plant", "energy", "t")
    with pytest.raises(SinkError) as err:
        sink.write(_batch("x"))
    assert err.value.retryable
    assert "server says no" in str(err.value)
    if "429" in str(err.value):
        assert err.value.retry_after_s == 7.0


@pytest.mark.parametrize("answering_server", [(400, {}), (401, {}), (404, {})], indirect=True)
def test_refused_data_is_not_retried_and_says_why(answering_server: str) -> None:
    sink = InfluxSink(answering_server, "plant", "energy", "t")
    with pytest.raises(SinkError) as err:
        sink.write(_batch("x"))
    assert not err.value.retryable
    assert "server says no" in str(err.value)
