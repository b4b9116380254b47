"""Names as plants write them, end to end: a daemon reading gateways that name their
site ``Plant A``, line ``EAF 1`` and meter ``Öfen-3`` (JSON), and a Sparkplug B edge
node ``EAF 1`` of group ``Sparkplug B Devices``, writes those names exactly to
VictoriaMetrics, the Parquet store and /metrics, and the edge node's to a real
InfluxDB 1.6.7 (``--influx-api v1``) as well."""

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
from tests.processes import InfluxDB1, Mosquitto, Stack, Wattline, wait_until

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
    wait_subscribed(stack.daemon, client)
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


def test_a_sparkplug_edge_node_reaches_the_store_and_influxdb1_with_its_names_exactly(
    make_mosquitto: Callable[..., Mosquitto],
    make_influxdb1: Callable[..., InfluxDB1],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    tmp_path: Path,
) -> None:
    """Group ``Sparkplug B Devices`` (the site) and edge node ``EAF 1`` (the line) as
    tag values of a real InfluxDB 1.6.7, read back with InfluxQL, and every point's
    values those of the daemon's own store."""
    from wattline.ingest.sinks.parquet_store import read_store

    store = tmp_path / "store"
    broker, influx = make_mosquitto(), make_influxdb1(databases=("wattline",))
    daemon = wattline_daemon(["--mqtt-url", broker.url, "--influx-api", "v1",
                              "--influx-url", influx.url, "--influx-db", "wattline", *ARGS,
                              "--sparkplug", "--store", str(store)])
    client = make_publisher(broker)
    wait_subscribed(daemon, client)
    start = start_ms()
    publish(client, sparkplug_readings(GROUP, NODE, start), qos=0)
    last_tick = start + STEPS * STEP_MS // TICK_MS * TICK_MS
    query = (f"SELECT * FROM energy_intensity WHERE site = '{GROUP}' AND line = '{NODE}'")

    def written() -> list[dict]:
        rows = influx.query(query, "wattline")
        return rows if any(r["time"] == last_tick for r in rows) else []

    rows = wait_until(written, timeout_s=60, interval_s=0.5, what="the last tick in InfluxDB")
    tags = {(r["tagKey"]) for r in influx.query("SHOW TAG KEYS FROM energy_intensity",
                                                "wattline")}
    assert tags == {"site", "line", "window"}
    for key in ("site", "line"):
        values = influx.query(f'SHOW TAG VALUES FROM energy_intensity WITH KEY = "{key}"',
                              "wattline")
        assert [v["value"] for v in values] == [GROUP if key == "site" else NODE]
    by_tick = {(r["window"], r["time"]): r for r in rows}
    assert by_tick[("1m", last_tick)]["kwh_per_t"] == 16.0

    wait_until(lambda: last_tick in read_store(store, site=GROUP, line=NODE)[
        "time_ms"].to_pylist(), timeout_s=30, interval_s=0.5, what="the store's last tick")
    stored = read_store(store).to_pylist()
    assert {(r["site"], r["line"]) for r in stored} == {(GROUP, NODE)}
    fields = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")
    stored_ticks = {(r["window"], r["time_ms"]): r for r in stored}
    assert by_tick.keys() <= stored_ticks.keys()
    assert len(by_tick) == len(stored_ticks)
    for key, row in by_tick.items():
        assert {f: row[f] for f in fields} == {f: stored_ticks[key][f] for f in fields}, key
    assert daemon.metric_sum("wattline_payload_errors_total") == 0
