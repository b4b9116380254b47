"""Names as plants write them, end to end: a daemon reading gateways that name their
site ``Plant A``, line ``EAF 1`` and meter ``Öfen-3`` (JSON), and a Sparkplug B edge
node ``EAF 1`` of group ``Sparkplug B Devices``, writes those names exactly to
VictoriaMetrics, the Parquet store and /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.real_names import (
    ARGS,
    GROUP,
    LINE,
    NODE,
    SITE,
    STEP_MS,
    STEPS,
    TICK_MS,
    json_readings,
    publish,
    sparkplug_readings,
    start_ms,
    wait_subscribed,
)
from tests.processes import Stack, wait_until

pytestmark = pytest.mark.e2e


def test_names_with_spaces_and_umlauts_from_json_and_sparkplug_are_written_exactly(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    tmp_path: Path,
) -> None:
    from wattline.ingest.sinks.parquet_store import read_store

    store = tmp_path / "store"
    stack = make_stack([*ARGS, "--sparkplug", "--store", str(store)])
    client = make_publisher(stack.broker)
    wait_subscribed(stack, client)
    start = start_ms()
    publish(client, json_readings(SITE, LINE, start))
    publish(client, sparkplug_readings(GROUP, NODE, start), qos=0)
    last_tick = start + STEPS * STEP_MS // TICK_MS * TICK_MS
    lines = {(SITE, LINE), (GROUP, NODE)}

    def selector(site: str, line: str) -> str:
        return f'energy_intensity_kwh_per_t{{site="{site}",line="{line}",window="1m"}}'

    for site, line in lines:
        wait_until(lambda s=site, ln=line: last_tick in stack.victoria.samples(selector(s, ln)),
                   timeout_s=60, interval_s=0.5, what=f"the last tick of {site}/{line}")
        # 4 kWh and 0.25 t per step: 16 kWh per tonne in every full window.
        assert stack.victoria.samples(selector(site, line))[last_tick] == [16.0]
    series = stack.victoria.export('{__name__=~"energy_intensity_.*"}')
    assert {(s["metric"]["site"], s["metric"]["line"]) for s in series} == lines
    assert all(set(s["metric"]) == {"__name__", "site", "line", "window"} for s in series)

    for site, line in lines:
        wait_until(lambda s=site, ln=line: last_tick in read_store(store, site=s, line=ln)[
            "time_ms"].to_pylist(), timeout_s=30, interval_s=0.5, what="the store's last tick")
    rows = read_store(store).to_pylist()
    assert {(r["site"], r["line"]) for r in rows} == lines
    assert sorted(p.name for p in store.glob("date=*/*")) == [
        "site=Plant A", "site=Sparkplug B Devices"]
    assert {p.name for p in store.glob("date=*/*/*")} == {"line=EAF 1"}

    for site, line in lines:
        assert stack.daemon.metric("wattline_line_last_reading_timestamp_seconds",
                                   {"site": site, "line": line}) is not None
        assert stack.daemon.metric("wattline_intensity_kwh_per_t",
                                   {"site": site, "line": line, "window": "1m"}) == 16.0
    assert stack.daemon.metric_sum("wattline_payload_errors_total") == 0
    assert stack.daemon.metric_sum("wattline_readings_dropped_total") == 0
