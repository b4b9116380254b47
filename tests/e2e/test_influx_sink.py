"""InfluxSink against a real /api/v2/write server (VictoriaMetrics), and its error mapping."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from tests.processes import VictoriaMetrics, free_port
from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.sinks.base import IntensitySink, SinkError
from wattline.ingest.sinks.influx import InfluxSink

T0 = 1_732_406_400_000


def _batch(site: str, line: str = "eaf-1") -> pa.Table:
    """Two ticks of one line: 15m and 1h windows producing, then an idle 15m window."""
    return pa.table({
        "site": [site] * 3, "line": [line] * 3, "window": ["15m", "1h", "15m"],
        "time_ms": [T0, T0, T0 + 10_000], "energy_kgce": [61.25, 250.5, 0.0],
        "electricity_kwh": [420.0, 1700.75, 0.0], "production_t": [1.0, 4.0, 0.0],
        "kgce_per_t": [61.25, 62.625, None], "kwh_per_t": [420.0, 425.1875, None],
        "co2_direct_t": [0.125, 0.5, 0.0], "co2_indirect_t": [0.25, 0.875, 0.0],
        "co2_per_t": [0.375, 0.34375, None],
    }, schema=INTENSITY_SCHEMA)


def test_the_sink_is_an_intensity_sink_named_influxdb() -> None:
    sink = InfluxSink("http://127.0.0.1:1", "plant", "energy", "t")
    assert isinstance(sink, IntensitySink)
    assert sink.name == "influxdb"
    sink.close()


@pytest.mark.parametrize("gzip", [True, False])
def test_points_arrive_as_contract_series_with_ms_times(victoria: VictoriaMetrics, site: str,
                                                        gzip: bool) -> None:
    sink = InfluxSink(victoria.url, "plant", "energy", "unused-token", gzip=gzip)
    sink.open()
    sink.write(_batch(site))
    sink.close()
    rows = _batch(site).to_pylist()
    for field in ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t",
                  "co2_direct_t", "co2_indirect_t", "co2_per_t"):
        series = victoria.export(f'energy_intensity_{field}{{site="{site}"}}')
        got = {(s["metric"]["window"], t, v) for s in series
               for t, v in zip(s["timestamps"], s["values"], strict=True)}
        want = {(r["window"], r["time_ms"], r[field]) for r in rows if r[field] is not None}
        assert got == want, field
        for s in series:
            assert s["metric"] == {"__name__": f"energy_intensity_{field}", "site": site,
                                   "line": "eaf-1", "window": s["metric"]["window"]}
    # The idle tick wrote its sums but no intensity.
    assert victoria.samples(f'energy_intensity_kgce_per_t{{site="{site}",window="15m"}}') == {
        T0: [61.25]}


def test_tag_values_with_commas_equals_spaces_and_backslashes_arrive_intact(
        victoria: VictoriaMetrics, site: str) -> None:
    line = "kiln 2,hall=B\\east"
    sink = InfluxSink(victoria.url, "plant", "energy", "t")
    sink.write(_batch(site, line=line))
    sink.close()
    series = victoria.export(f'energy_intensity_energy_kgce{{site="{site}"}}')
    assert {s["metric"]["line"] for s in series} == {line}


def test_a_server_that_is_down_gives_a_retryable_error() -> None:
    sink = InfluxSink(f"http://127.0.0.1:{free_port()}", "plant", "energy", "t", timeout_s=2)
    with pytest.raises(SinkError) as err:
        sink.write(_batch("down"))
    assert err.value.retryable
    assert "cannot reach" in str(err.value)
    sink.close()


def test_open_logs_a_server_that_is_down_and_check_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sink = InfluxSink(url, "plant", "energy", "t", timeout_s=2)
    with caplog.at_level(logging.WARNING, logger="wattline.ingest.sinks.influx"):
        sink.open()  # the daemon may start before its database
    assert url in caplog.text and "retried" in caplog.text
    with pytest.raises(SinkError) as err:
        sink.check()
    assert err.value.retryable
    sink.close()


def test_check_passes_when_the_server_answers(victoria: VictoriaMetrics) -> None:
    sink = InfluxSink(victoria.url, "plant", "energy", "t")
    sink.check()
    sink.close()


def test_a_server_that_never_answers_gives_a_retryable_error_within_the_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (in the kernel), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        sink = InfluxSink(f"http://127.0.0.1:{listener.getsockname()[1]}", "plant", "energy",
                          "t", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(SinkError) as err:
            sink.write(_batch("hang"))
        assert time.monotonic() - started < 5
        sink.close()
    assert err.value.retryable
    assert "did not answer within 0.5 s" in str(err.value)


def test_the_health_check_of_a_server_that_never_answers_fails_within_its_own_timeout(
        ) -> None:
    with socket.socket() as listener:  # accepts connections (in the kernel), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        sink = InfluxSink(f"http://127.0.0.1:{listener.getsockname()[1]}", "plant", "energy",
                          "t", timeout_s=30, health_timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(SinkError) as err:
            sink.check()
        assert time.monotonic() - started < 10  # far below the write timeout
        sink.close()
    assert err.value.retryable
    assert "does not answer /ping within 0.3 s" in str(err.value)


def test_a_batch_line_protocol_cannot_carry_is_refused_without_a_request() -> None:
    # A server that is down would make any request fail as retryable.
    sink = InfluxSink(f"http://127.0.0.1:{free_port()}", "plant", "energy", "t")
    with pytest.raises(SinkError) as err:
        sink.write(_batch("bad", line="two\nlines"))
    assert not err.value.retryable
    assert "line break" in str(err.value)
    sink.write(INTENSITY_SCHEMA.empty_table())  # nothing to send, so no request either
    sink.close()


class _VictoriaWithAuth(VictoriaMetrics):
    """VictoriaMetrics asking for HTTP basic auth on writes: a token is refused with 401."""

    def command(self) -> list[str]:
        return [*super().command(), "-httpAuth.username=plant", "-httpAuth.password=secret"]


@pytest.fixture()
def victoria_with_auth(victoria: VictoriaMetrics, tmp_path: Path) -> Iterator[VictoriaMetrics]:
    # ``victoria`` first: it skips (or fails in CI) when the program is missing.
    server = _VictoriaWithAuth(tmp_path / "victoria-auth")
    server.start()
    yield server
    server.stop()


def test_a_real_server_refusing_the_token_is_not_retried(
        victoria_with_auth: VictoriaMetrics) -> None:
    sink = InfluxSink(victoria_with_auth.url, "plant", "energy", "wrong-token")
    sink.check()  # /ping needs no credentials
    with pytest.raises(SinkError) as err:
        sink.write(_batch("auth"))
    sink.close()
    assert not err.value.retryable
    assert "HTTP 401" in str(err.value) and "token" in str(err.value)


@pytest.mark.parametrize("answering_server", [(503, {}), (500, {}), (408, {}),
                                              (429, {"Retry-After": "7"})], indirect=True)
def test_overload_and_server_errors_are_retryable(answering_server: str) -> None:
    sink = InfluxSink(answering_server, "plant", "energy", "t")
    with pytest.raises(SinkError) as err:
        sink.write(_batch("x"))
    sink.close()
    assert err.value.retryable
    assert "server says no" in str(err.value)
    assert err.value.retry_after_s == (7.0 if "HTTP 429" in str(err.value) else None)


@pytest.mark.parametrize("answering_server", [(400, {}), (401, {}), (404, {}), (413, {})],
                         indirect=True)
def test_refused_data_is_not_retried_and_says_why(answering_server: str) -> None:
    sink = InfluxSink(answering_server, "plant", "energy", "t")
    with pytest.raises(SinkError) as err:
        sink.write(_batch("x"))
    sink.close()
    assert not err.value.retryable
    assert "server says no" in str(err.value)
