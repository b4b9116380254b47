"""Gateways' own documents through a real Mosquitto and the daemon, read by the shipped
[[payloads]] mappings (deploy/mappings/): a Kepware IoT Gateway and a Node-RED flow
carrying the known eaf-1 stream give exactly its energy_intensity points in
VictoriaMetrics, and a document neither mapping can read is counted as ``mapping``."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    ENERGY_METER,
    FINAL_OFFSET_MS,
    KERNEL_ARGS,
    LAST_STEP,
    LINE,
    PRODUCTION_METER,
    STEP_MS,
    assert_every_expected_point,
    electricity_register,
    production_register,
    recent_start_ms,
)
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

MAPPINGS = Path(__file__).resolve().parents[2] / "deploy" / "mappings"
KEPWARE_TOPIC = "iotgateway"
PER_DOCUMENT = 5  # steps of the stream in one document


def config_file(tmp_path: Path, kepware_site: str) -> Path:
    """The shipped mappings, the Kepware one with tags of this test's site."""
    kepware = (MAPPINGS / "kepware-iot-gateway.toml").read_text()
    table = kepware[:kepware.index("\n[payloads.tags]") + 1]
    tags = (f'[payloads.tags]\n"Channel1.EAF1.Incomer" = "{kepware_site}/{LINE}/energy/'
            f'{ENERGY_METER}"\n"Channel1.EAF1.LadleScale" = "{kepware_site}/{LINE}/'
            f'production/{PRODUCTION_METER}"\n')
    path = tmp_path / "wattline.toml"
    path.write_text(table + tags + "\n" + (MAPPINGS / "node-red.toml").read_text())
    tomllib.loads(path.read_text())  # valid TOML, or the test is wrong
    return path


def steps(start_ms: int) -> list[list[tuple[int, float, float | None]]]:
    """The stream as (ts, kWh register, t register or None) per step, PER_DOCUMENT steps
    to a document; the last one moves the watermark past the checked ticks."""
    rows: list[tuple[int, float, float | None]] = [
        (start_ms + k * STEP_MS, electricity_register(k), production_register(k))
        for k in range(LAST_STEP + 1)]
    chunks = [rows[i:i + PER_DOCUMENT] for i in range(0, len(rows), PER_DOCUMENT)]
    chunks.append([(start_ms + FINAL_OFFSET_MS, electricity_register(LAST_STEP) + 4.0, None)])
    return chunks


def kepware_documents(start_ms: int) -> list[tuple[str, Any]]:
    docs = []
    for chunk in steps(start_ms):
        values = []
        for ts, kwh, tonnes in chunk:
            values.append({"id": "Channel1.EAF1.Incomer", "v": kwh, "q": True, "t": ts})
            if tonnes is not None:
                values.append({"id": "Channel1.EAF1.LadleScale", "v": tonnes, "q": True,
                               "t": ts})
                # a bad-quality read of the same tag, which must not count
                values.append({"id": "Channel1.EAF1.LadleScale", "v": 0.0, "q": False,
                               "t": ts + 1})
        docs.append((KEPWARE_TOPIC, {"timestamp": chunk[-1][0], "values": values}))
    return docs


def node_red_documents(site: str, start_ms: int) -> list[tuple[str, Any]]:
    def rfc3339(ts: int) -> str:
        return datetime.fromtimestamp(ts / 1000, tz=UTC).isoformat(timespec="milliseconds")

    docs = []
    for chunk in steps(start_ms):
        readings = []
        for ts, kwh, tonnes in chunk:
            readings.append({"meter": ENERGY_METER, "kind": "energy", "value": kwh,
                             "time": rfc3339(ts)})
            if tonnes is not None:
                readings.append({"meter": PRODUCTION_METER, "kind": "production",
                                 "value": tonnes, "time": rfc3339(ts)})
        docs.append((f"node-red/{site}/{LINE}", {"site": site, "line": LINE,
                                                 "readings": readings}))
    return docs


@pytest.mark.e2e
def test_kepware_and_node_red_documents_give_exactly_the_streams_points(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    kepware_site, node_red_site = f"{site}-kep", f"{site}-nr"
    stack = make_stack([*KERNEL_ARGS, "--config", str(config_file(tmp_path, kepware_site))])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    kepware = kepware_documents(start_ms)
    node_red = node_red_documents(node_red_site, start_ms)
    publish_all(client, kepware[:10] + node_red[:10], timeout_s=30)
    # Documents the mappings cannot read: counted, and the good ones around them flow.
    publish_all(client, [(KEPWARE_TOPIC, {"temperature": 21.5}),
                         (f"node-red/{site}/x", {"site": "s", "line": "l", "data": [1]}),
                         (KEPWARE_TOPIC, {"values": "none"})], timeout_s=30)
    publish_all(client, kepware[10:] + node_red[10:], timeout_s=30)

    last_tick = start_ms + CHECKED_TICKS_MS[-1]
    for name in (kepware_site, node_red_site):
        wait_until(lambda name=name: last_tick in victoria.samples(
            f'energy_intensity_electricity_kwh{{site="{name}",line="{LINE}",window="2m"}}'),
            timeout_s=60, what=f"the last tick of {name}")
    assert_every_expected_point(victoria, kepware_site, start_ms)
    assert_every_expected_point(victoria, node_red_site, start_ms)

    assert daemon.metric_sum("wattline_payload_errors_total", {"reason": "mapping"}) == 3
    assert daemon.metric_sum("wattline_messages_received_total",
                             {"topic_kind": "mapped"}) == len(kepware) + len(node_red) + 3
    bad_quality = sum(1 for chunk in steps(start_ms) for *_, t in chunk if t is not None)
    assert daemon.metric_sum("wattline_readings_dropped_total",
                             {"reason": "quality"}) == bad_quality
    series = victoria.export('{__name__=~"energy_intensity_.*"}')
    assert {(s["metric"]["site"], s["metric"]["line"]) for s in series} == {
        (kepware_site, LINE), (node_red_site, LINE)}
    log = daemon.log_text()
    assert sum(KEPWARE_TOPIC in line and "mapping" in line
               for line in log.splitlines()) == 1  # logged once a minute per topic
