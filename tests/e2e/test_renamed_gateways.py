"""The config file's [rename] table end to end: gateways publishing through a real
Mosquitto under their own names (JSON ``Plant A``/``EAF 1``/``Öfen-3``, a Sparkplug B
edge node of group ``Sparkplug B Devices``), and a daemon writing the names the table
gives to a real InfluxDB 1.6.7, its Parquet store, /metrics and its log; a gateway
publishing under a name the table gives another is refused and counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.real_names import (
    ARGS,
    GROUP,
    LINE,
    METER,
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
from tests.processes import InfluxDB1, Mosquitto, Wattline, wait_until

pytestmark = pytest.mark.e2e

DB = "wattline"
CONFIG = f"""\
[rename]
"{SITE}" = "plant-a"
"{SITE}/{LINE}" = "eaf-1"
"{SITE}/{LINE}/energy/{METER}" = "furnace"
"{GROUP}" = "plant-b"

[meters."plant-a/eaf-1/energy/furnace"]
carrier = "electricity"
unit = "kWh"
"""
RENAMED = {("plant-a", "eaf-1"), ("plant-b", NODE)}


def test_renamed_gateways_reach_influxdb1_the_store_metrics_and_logs_by_their_new_names(
    make_mosquitto: Callable[..., Mosquitto],
    make_influxdb1: Callable[..., InfluxDB1],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    tmp_path: Path,
) -> None:
    from wattline.ingest.sinks.parquet_store import read_store

    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG, encoding="utf-8")
    store = tmp_path / "store"
    broker, influx = make_mosquitto(), make_influxdb1(databases=(DB,))
    daemon = wattline_daemon(["--config", str(config), "--mqtt-url", broker.url,
                              "--influx-api", "v1", "--influx-url", influx.url,
                              "--influx-db", DB, *ARGS, "--sparkplug", "--store", str(store)])
    client = make_publisher(broker)
    wait_subscribed(daemon, client)
    start = start_ms()
    publish(client, json_readings(SITE, LINE, start))
    publish(client, sparkplug_readings(GROUP, NODE, start), qos=0)
    # A gateway of its own publishing as plant-a: refused, whichever came first.
    publish(client, [("factory/plant-a/eaf-1/energy/furnace",
                      json.dumps({"ts": start, "v": 1.0}).encode())])
    last_tick = start + STEPS * STEP_MS // TICK_MS * TICK_MS

    query = f"SELECT * FROM energy_intensity WHERE time = {last_tick}ms AND window = '1m'"
    rows = wait_until(lambda: (r := influx.query(query, DB)) and len(r) == 2 and r,
                      timeout_s=60, interval_s=0.5, what="both lines' last tick in InfluxDB")
    assert {(r["site"], r["line"]) for r in rows} == RENAMED
    assert all(r["kwh_per_t"] == 16.0 for r in rows)
    for key, names in (("site", {"plant-a", "plant-b"}), ("line", {"eaf-1", NODE})):
        values = influx.query(f'SHOW TAG VALUES FROM energy_intensity WITH KEY = "{key}"', DB)
        assert {v["value"] for v in values} == names

    for site, line in RENAMED:
        wait_until(lambda s=site, ln=line: last_tick in read_store(store, site=s, line=ln)[
            "time_ms"].to_pylist(), timeout_s=30, interval_s=0.5, what="the store's last tick")
    assert {(r["site"], r["line"]) for r in read_store(store).to_pylist()} == RENAMED
    assert sorted(p.name for p in store.glob("date=*/*")) == ["site=plant-a", "site=plant-b"]

    for site, line in RENAMED:
        assert daemon.metric("wattline_intensity_kwh_per_t",
                             {"site": site, "line": line, "window": "1m"}) == 16.0
    exposed = daemon.scrape()
    assert f'site="{SITE}"' not in exposed and f'site="{GROUP}"' not in exposed
    assert daemon.metric("wattline_payload_errors_total", {"reason": "name_taken"}) == 1
    log = daemon.log_text()
    assert "first reading of meter plant-a/eaf-1/energy/furnace" in log
    assert "first reading of line plant-b/EAF 1" in log
    assert "name_taken" in log and "[rename] gives another" in log
