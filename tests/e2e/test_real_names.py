"""Names as plants write them, end to end: a daemon reading gateways that name their
site ``Plant A``, line ``EAF 1`` and meter ``Öfen-3`` writes those names exactly to
VictoriaMetrics, the Parquet store and /metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Stack, wait_until

pytestmark = pytest.mark.e2e

TICK_MS = 10_000
STEP_MS = 2_000
STEPS = 45
ARGS = ("--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s")
SITE, LINE, METER, SCALE = "Plant A", "EAF 1", "Öfen-3", "Pfanne, \"neu\" = 1\\2"


def start_ms() -> int:
    return (int(time.time() * 1000) - 10 * 60_000) // TICK_MS * TICK_MS


def json_readings(site: str, line: str, start: int) -> list[tuple[str, bytes]]:
    """An electricity counter and a production counter read every 2 s, then one late
    energy reading that moves the watermark past the last tick."""
    out = []
    for k in range(STEPS + 1):
        ts = start + k * STEP_MS
        out.append((f"factory/{site}/{line}/energy/{METER}",
                    json.dumps({"ts": ts, "v": 1000.0 + 4.0 * k}).encode()))
        out.append((f"factory/{site}/{line}/production/{SCALE}",
                    json.dumps({"ts": ts, "v": 50.0 + 0.25 * k}).encode()))
    out.append((f"factory/{site}/{line}/energy/{METER}",
                json.dumps({"ts": start + STEPS * STEP_MS + 20_000,
                            "v": 1000.0 + 4.0 * STEPS}).encode()))
    return out


def publish(client: mqtt.Client, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def wait_subscribed(stack: Stack, client: mqtt.Client) -> None:
    """Publish a meta message until the daemon counts one: its subscription is in place."""
    meta = json.dumps({"carrier": "electricity", "unit": "kWh"}).encode()
    topic = f"factory/{SITE}/{LINE}/energy/{METER}/meta"

    def counted() -> bool:
        client.publish(topic, meta, qos=1).wait_for_publish(5)
        return stack.daemon.metric_sum("wattline_messages_received_total") >= 1

    wait_until(counted, timeout_s=30, interval_s=0.3, what="the daemon subscribed")


def test_a_site_line_and_meter_with_spaces_and_umlauts_are_written_exactly(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    tmp_path: Path,
) -> None:
    from wattline.ingest.sinks.parquet_store import read_store

    store = tmp_path / "store"
    stack = make_stack([*ARGS, "--store", str(store)])
    client = make_publisher(stack.broker)
    wait_subscribed(stack, client)
    start = start_ms()
    publish(client, json_readings(SITE, LINE, start))
    last_tick = start + STEPS * STEP_MS // TICK_MS * TICK_MS
    selector = f'energy_intensity_kwh_per_t{{site="{SITE}",line="{LINE}",window="1m"}}'

    wait_until(lambda: last_tick in stack.victoria.samples(selector), timeout_s=60,
               interval_s=0.5, what="the last tick in VictoriaMetrics")
    series = stack.victoria.export('{__name__=~"energy_intensity_.*"}')
    assert {(s["metric"]["site"], s["metric"]["line"]) for s in series} == {(SITE, LINE)}
    assert all(set(s["metric"]) == {"__name__", "site", "line", "window"} for s in series)
    # 4 kWh and 0.25 t per step: 16 kWh per tonne in every full window.
    assert stack.victoria.samples(selector)[last_tick] == [16.0]

    wait_until(lambda: last_tick in read_store(store, site=SITE, line=LINE)["time_ms"]
               .to_pylist(), timeout_s=30, interval_s=0.5, what="the last tick in the store")
    rows = read_store(store).to_pylist()
    assert {(r["site"], r["line"]) for r in rows} == {(SITE, LINE)}
    assert [p.name for p in store.glob("date=*/*")] == ["site=Plant A"]
    assert [p.name for p in store.glob("date=*/*/*")] == ["line=EAF 1"]

    assert stack.daemon.metric("wattline_line_last_reading_timestamp_seconds",
                               {"site": SITE, "line": LINE}) is not None
    assert stack.daemon.metric("wattline_intensity_kwh_per_t",
                               {"site": SITE, "line": LINE, "window": "1m"}) == 16.0
    assert stack.daemon.metric_sum("wattline_payload_errors_total") == 0
