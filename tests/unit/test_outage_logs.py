"""A broker or database that stays down: a line when it fails, at most one a minute while
it lasts, and one when it is back."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pyarrow as pa
import pytest

from wattline.ingest.config import parse_mqtt_url
from wattline.ingest.log_limit import Outage
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.fanout import FanOut
from wattline.ingest.sources.mqtt import MqttSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_an_outage_says_start_then_still_at_most_once_a_minute_then_how_long() -> None:
    clock = Clock()
    outage = Outage(clock=clock)
    said = []
    for second in range(0, 181, 5):
        clock.now = float(second)
        said.append(outage.failed())
    assert [s for s in said if s] == ["start", "still", "still", "still"]
    clock.now = 200.0
    assert outage.recovered() == (200.0, len(said))
    assert outage.recovered() is None and outage.failed() == "start"


def test_a_broker_that_stays_down_is_logged_once_a_minute_and_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    source = MqttSource(parse_mqtt_url("mqtt://127.0.0.1:1"), ["factory/+/+/+/+"],
                        lambda topic, payload: None, clock=clock)
    with caplog.at_level(logging.INFO, logger="wattline.mqtt"):
        for second in range(0, 150, 15):  # an attempt every 15 s for 2.5 min
            clock.now = float(second)
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError:
                source._connect_failed(None, None)
        clock.now = 160.0
        success = SimpleNamespace(is_failure=False)
        client = SimpleNamespace(subscribe=lambda topics: None)
        source._connected(client, None, SimpleNamespace(session_present=False), success, None)
    lines = _messages(caplog)
    assert [line.split(":")[0] for line in lines] == [
        "cannot connect to 127.0.0.1", "still cannot connect to 127.0.0.1",
        "still cannot connect to 127.0.0.1", "broker 127.0.0.1", "connected to 127.0.0.1"]
    assert "after 60 s (5 attempts)" in lines[1] and "after 120 s (9 attempts)" in lines[2]
    assert lines[3] == "broker 127.0.0.1:1 is back after 160 s without it (10 failed attempts)"


class FailingSink:
    name = "db"

    def __init__(self, failures: int, clock: Clock) -> None:
        self.failures = failures
        self.clock = clock

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        if self.failures:
            self.failures -= 1
            self.clock.now += 20.0  # each failed write and its wait take 20 s
            raise SinkError("connection refused", retryable=True)


def test_a_sink_that_keeps_failing_is_logged_once_a_minute_and_when_it_writes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sink = FailingSink(failures=7, clock=clock)
    fanout = FanOut([sink], CollectorMetrics())
    fanout._outages["db"] = Outage(clock=clock)
    fanout._stopping.wait = lambda delay: False  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        fanout.write(pa.table({"v": [1.0]}))
    lines = _messages(caplog)
    assert [line.split(" (")[0].split(" after")[0] for line in lines] == [
        "sink db failed", "sink db still failing", "sink db still failing",
        "sink db is writing again"]
    assert lines[-1] == "sink db is writing again after 120 s (7 failed writes)"
