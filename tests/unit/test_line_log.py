"""What the log says while data flows: first readings of lines and meters, summaries."""

from __future__ import annotations

import json
import logging
import re

import pytest

from wattline.ingest.config import settings_from_mapping
from wattline.ingest.line_log import LineLog
from wattline.ingest.pipeline import Message, Pipeline

T0 = 1_732_406_400_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NullSink:
    name = "null"

    def open(self) -> None:
        pass

    def write(self, table: object) -> None:
        pass

    def close(self) -> None:
        pass


def _messages(line: str, ticks: range) -> list[Message]:
    msgs = []
    for k in ticks:
        ts = T0 + 10_000 * k
        for kind, meter, value in (("energy", "incomer", 100.0 * k),
                                   ("production", "scale", 0.25 * k)):
            payload = json.dumps({"ts": ts, "v": value}).encode()
            msgs.append(Message(f"factory/s/{line}/{kind}/{meter}", payload, ts / 1000))
    return msgs


def _pipeline(clock: Clock, **settings: object) -> Pipeline:
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "windows": "1m,24h",
                                               **settings}),
                        [NullSink()], clock=lambda: T0 / 1000 + 3600)
    pipeline.line_log = LineLog(pipeline.registry, pipeline.window_names, pipeline.metrics,
                                pipeline.settings.summary_every_ms / 1000.0, clock=clock)
    return pipeline


def _infos(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


def test_the_first_reading_of_each_line_and_meter_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = _pipeline(Clock())
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        pipeline.process(_messages("eaf-1", range(0, 3)))
        pipeline.process(_messages("eaf-1", range(3, 6)) + _messages("eaf-2", range(0, 2)))
        pipeline.process(_messages("eaf-2", range(2, 4)))
    firsts = [m for m in _infos(caplog) if m.startswith("first reading")]
    assert firsts == [
        "first reading of meter s/eaf-1/energy/incomer",
        "first reading of meter s/eaf-1/production/scale",
        "first reading of line s/eaf-1",
        "first reading of meter s/eaf-2/energy/incomer",
        "first reading of meter s/eaf-2/production/scale",
        "first reading of line s/eaf-2",
    ]


def test_first_meter_lines_stop_at_max_meters(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = _pipeline(Clock(), max_meters=3)
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        pipeline.process(_messages("eaf-1", range(0, 3)) + _messages("eaf-2", range(0, 3)))
    meters = [m for m in _infos(caplog) if m.startswith("first reading of meter")]
    assert len(meters) == 3


def test_the_summary_gives_each_lines_readings_newest_intensity_and_the_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    pipeline = _pipeline(clock)
    pipeline.process(_messages("eaf-1", range(0, 13)) + _messages("eaf-2", range(0, 4)))
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        pipeline.line_log.tick()
        assert not [m for m in _infos(caplog) if "last 5 min" in m]  # not due yet
        repeat = _messages("eaf-1", range(12, 13))  # already in: two duplicates
        pipeline.process([*repeat, Message("factory/s/eaf-1/energy/incomer", b"{", 0.0)])
        clock.now += 300
        pipeline.line_log.tick()
        clock.now += 100
        pipeline.line_log.tick()  # not due again for another 200 s
    gauge = pipeline.metrics.registry.get_sample_value
    kgce = {w: gauge("wattline_intensity_kgce_per_t",
                     {"site": "s", "line": "eaf-1", "window": w}) for w in ("1m", "24h")}
    summaries = [m for m in _infos(caplog) if m.startswith(("line ", "last "))]
    assert summaries == [
        f"line s/eaf-1, last 5 min: 28 readings; newest kgce/t 1m={kgce['1m']:.1f} "
        f"24h={kgce['24h']:.1f}",
        "line s/eaf-2, last 5 min: 8 readings; newest kgce/t 1m=- 24h=-",
        "last 5 min: dropped or refused: duplicate 2, invalid_json 1",
    ]
    assert re.search(r"1m=\d", summaries[0])  # a producing line has a level


def test_the_next_summary_counts_only_what_came_since(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    pipeline = _pipeline(clock)
    pipeline.process(_messages("eaf-1", range(0, 3)))
    clock.now += 300
    pipeline.line_log.tick()
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        clock.now += 300
        pipeline.line_log.tick()
    assert [m for m in _infos(caplog) if m.startswith(("line ", "last "))] == [
        "line s/eaf-1, last 5 min: 0 readings; newest kgce/t 1m=- 24h=-",
        "last 5 min: nothing dropped or refused",
    ]


def test_summary_every_zero_turns_the_summaries_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pipeline = _pipeline(clock, summary_every="0")
    pipeline.process(_messages("eaf-1", range(0, 3)))
    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        clock.now += 86_400
        pipeline.line_log.tick()
    assert not [m for m in _infos(caplog) if m.startswith(("line ", "last "))]


def test_warming_the_kernels_up_logs_no_first_reading(caplog: pytest.LogCaptureFixture) -> None:
    from wattline.ingest.warmup import warm_up_kernels

    with caplog.at_level(logging.INFO, logger="wattline.pipeline"):
        warm_up_kernels()
    assert not [m for m in _infos(caplog) if m.startswith("first reading")]
