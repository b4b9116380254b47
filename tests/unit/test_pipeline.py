"""The pipeline's own logic (decode, meter registry, kernels, results batch) with a recording
sink; the real sinks and broker are covered by the end-to-end tests."""

from __future__ import annotations

import json

import pyarrow as pa

from wattline.ingest.config import settings_from_mapping
from wattline.ingest.pipeline import Message, Pipeline

T0 = 1_732_406_400_000


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def close(self) -> None:
        pass


def _messages(site: str, minutes: int) -> list[Message]:
    msgs = []
    for k in range(minutes * 6 + 1):
        ts = T0 + 10_000 * k
        for kind, meter, value in (("energy", "incomer", 100.0 * k),
                                   ("production", "scale", 0.25 * k)):
            payload = json.dumps({"ts": ts, "v": value}).encode()
            msgs.append(Message(f"factory/{site}/eaf-1/{kind}/{meter}", payload, ts / 1000))
    return msgs


def _run(settings: dict, msgs: list[Message]) -> pa.Table:
    sink = RecordingSink()
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", **settings}), [sink],
                        clock=lambda: T0 / 1000 + 3600)
    pipeline.process(msgs)
    return pa.concat_tables(sink.tables)


def test_window_tags_are_the_windows_as_configured() -> None:
    table = _run({}, _messages("s", 5))
    assert set(table["window"].to_pylist()) == {"15m", "1h", "24h"}


def test_a_producing_line_has_an_intensity_in_every_window() -> None:
    table = _run({"windows": "1m,24h"}, _messages("s", 5))
    last = table.filter(pa.compute.equal(table["time_ms"], pa.compute.max(table["time_ms"])))
    kwh_per_t = dict(zip(last["window"].to_pylist(), last["kwh_per_t"].to_pylist(), strict=True))
    assert kwh_per_t == {"1m": 400.0, "24h": 400.0}


def test_the_intensity_gauges_show_each_lines_newest_tick_of_a_batch() -> None:
    msgs = []
    for site, minutes in (("north", 5), ("south", 3)):
        for k in range(minutes * 6 + 1):  # energy per tonne rises tick after tick
            ts = T0 + 10_000 * k
            for kind, meter, value in (("energy", "incomer", 100.0 * k + k * k),
                                       ("production", "scale", 0.25 * k)):
                payload = json.dumps({"ts": ts, "v": value}).encode()
                msgs.append(Message(f"factory/{site}/eaf-1/{kind}/{meter}", payload, ts / 1000))
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "windows": "1m,24h"}),
                        [RecordingSink()], clock=lambda: T0 / 1000 + 3600)
    table = pipeline.process(msgs)
    gauge = pipeline.metrics.registry.get_sample_value
    for site in ("north", "south"):
        rows = table.filter(pa.compute.equal(table["site"], site))
        newest = rows.filter(pa.compute.equal(rows["time_ms"], pa.compute.max(rows["time_ms"])))
        assert newest.num_rows == 2
        assert len(set(rows.filter(pa.compute.equal(rows["window"], "1m"))["kgce_per_t"]
                       .to_pylist())) > 3  # so only the newest tick gives these values
        for window, expected in zip(newest["window"].to_pylist(),
                                    newest["kgce_per_t"].to_pylist(), strict=True):
            labels = {"site": site, "line": "eaf-1", "window": window}
            assert gauge("wattline_intensity_kgce_per_t", labels) == expected
        for window, expected in zip(newest["window"].to_pylist(),
                                    newest["co2_per_t"].to_pylist(), strict=True):
            labels = {"site": site, "line": "eaf-1", "window": window}
            assert expected is not None and expected > 0  # electricity at the grid factor
            assert gauge("wattline_intensity_co2_per_t", labels) == expected


def _fast_clock_stream(site: str) -> list[Message]:
    """A line whose second meter's clock runs 4 minutes fast, each message received when
    the good meter's reading is stamped."""
    msgs = []
    for k in range(60):
        ts = T0 + 2_000 * k
        for meter, stamp, value in (("incomer", ts, 10.0 * k), ("aux", ts + 240_000, 1.0 * k)):
            payload = json.dumps({"ts": stamp, "v": value}).encode()
            msgs.append(Message(f"factory/{site}/eaf-1/energy/{meter}", payload, ts / 1000))
    return msgs


def test_the_watermark_is_capped_by_each_batchs_receipt_time_not_the_time_it_is_processed(
) -> None:
    # Processed an hour after receipt (a replay after a crash does this): the readings are
    # judged against the clock they were received at, so no good reading becomes late.
    settings = settings_from_mapping({"max_past": "100000d", "emit_every": "2s",
                                      "windows": "10s,20s", "allowed_lateness": "5s"})
    msgs = _fast_clock_stream("s")
    pipeline = Pipeline(settings, [RecordingSink()], clock=lambda: T0 / 1000 + 3600)
    for k in range(0, len(msgs), 2):
        pipeline.process(msgs[k:k + 2])
    dropped = pipeline.metrics.registry.get_sample_value
    assert dropped("wattline_readings_dropped_total", {"reason": "late"}) is None
    assert pipeline.metrics.registry.get_sample_value(
        "wattline_readings_accepted_total") == len(msgs)


def test_the_pipeline_takes_no_batch_until_its_kernels_are_ready() -> None:
    import time

    sink = RecordingSink()
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "batch_max_wait": "10ms"}),
                        [sink], clock=lambda: T0 / 1000 + 3600)
    pipeline.kernels_ready.clear()  # as the collector does while its warm-up thread runs
    pipeline.start()
    try:
        for msg in _messages("s", 3):
            pipeline.submit(msg.topic, msg.payload)
        time.sleep(0.5)
        assert sink.tables == []
        assert pipeline.flowing(5.0)  # the loop keeps turning (the watchdog is fed)
        pipeline.kernels_ready.set()
        deadline = time.monotonic() + 10
        while not sink.tables and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.tables
    finally:
        pipeline.stop()
