"""The stream of the names tests (tests/e2e/test_real_names.py, the Sparkplug interop
test): a line with an electricity and a production counter read every 2 s, 4 kWh and
0.25 t per reading (16 kWh/t in every full window), named as plants name them."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from tests.processes import Wattline, wait_until

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


def wait_subscribed(daemon: Wattline, client: mqtt.Client) -> None:
    """Publish a meta message until the daemon counts one: its subscription is in place."""
    meta = json.dumps({"carrier": "electricity", "unit": "kWh"}).encode()
    topic = f"factory/{SITE}/{LINE}/energy/{METER}/meta"

    def counted() -> bool:
        client.publish(topic, meta, qos=1).wait_for_publish(5)
        return daemon.metric_sum("wattline_messages_received_total") >= 1

    wait_until(counted, timeout_s=30, interval_s=0.3, what="the daemon subscribed")


GROUP, NODE = "Sparkplug B Devices", "EAF 1"
"""The Sparkplug B edge node of the same stream (Tahu's default group id)."""


def sparkplug_readings(group: str, node: str, start: int) -> list[tuple[str, bytes]]:
    """The same stream from a Sparkplug B edge node: an NBIRTH naming both meters with
    aliases, then NDATA by alias, then the late energy reading."""
    from wattline.contract import sparkplug_b as spb

    def metric(alias: int, k: int, value: float, name: str | None = None) -> spb.Metric:
        return spb.Metric(name=name, alias=alias, timestamp=start + k * STEP_MS,
                          datatype=spb.DataType.DOUBLE if name else None, value=value)

    out = [(f"spBv1.0/{group}/NBIRTH/{node}", spb.encode([
        metric(1, 0, 1000.0, f"energy/{METER}"), metric(2, 0, 50.0, f"production/{SCALE}"),
        spb.Metric(name="bdSeq", datatype=spb.DataType.INT64, value=0)],
        timestamp=start, seq=0))]
    for k in range(1, STEPS + 1):
        out.append((f"spBv1.0/{group}/NDATA/{node}", spb.encode(
            [metric(1, k, 1000.0 + 4.0 * k), metric(2, k, 50.0 + 0.25 * k)],
            timestamp=start + k * STEP_MS, seq=k % 256)))
    late = spb.Metric(alias=1, timestamp=start + STEPS * STEP_MS + 20_000,
                      value=1000.0 + 4.0 * STEPS, datatype=None)
    out.append((f"spBv1.0/{group}/NDATA/{node}",
                spb.encode([late], timestamp=late.timestamp, seq=(STEPS + 1) % 256)))
    return out
