"""The gateways of ``wattline bench ingest``: publisher processes that flood the broker.

Each publisher stands for one gateway owning a few lines of a benchmark plant.
A line has one production meter (``out``, a tonnes totaliser) and energy meters
(``e1``, ``e2``, ... electricity counters), and every meter reads once per
``period_ms`` of plant time. The gateway publishes its meters round-robin in
plant-time order, so each line's readings only ever move forward and the
collector's kernels accept every one (none is late, none a duplicate).

A message carries one reading (``{"ts": .., "v": ..}``) or a columnar batch of
a meter's next readings (``{"ts": [..], "v": [..]}``), on the contract topics
``{prefix}/{site}/{line}/{kind}/{meter}``. Payloads are built before the start
signal, so publishing is only ``client.publish`` in a loop.

Lifecycle of a publisher process (``publisher_process``, started with the
``spawn`` method): it connects, answers ``("up", n)``, then serves commands from
its queue until ``("quit",)``:

- ``("prepare", load, qos, rate)``: build (or reuse) the load's messages and
  answer ``("ready", n)``; ``rate`` is messages per second, or None for as fast
  as possible;
- ``("go",)``: publish them all, wait until the last one is out (QoS 0) or
  acknowledged (QoS 1), and answer ``("done", n, started_s, finished_s, times)``
  where ``times`` holds each message's wall-clock publish time
  (``time.time()``, as ``array('d')`` bytes).
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from wattline.ingest.config import MqttUrl

INFLIGHT = 100
"""QoS 1 messages a publisher keeps unacknowledged; paho slows down with many more."""
PRODUCTION_T_PER_READING = 0.02
"""Tonnes the production totaliser advances per reading."""
ENERGY_KWH_PER_READING = 1.25
"""kWh an energy meter advances per reading (plus a little per meter number)."""


@dataclass(frozen=True)
class Load:
    """One gateway's share of a benchmark load: its lines, meters and messages."""

    prefix: str
    site: str
    line_prefix: str
    """Line names are ``{line_prefix}{j}``; gateways use different prefixes."""
    lines: int
    meters_per_line: int
    messages: int
    readings_per_message: int
    t0_ms: int
    """Plant time of every meter's first reading."""
    period_ms: int
    """Plant time between two readings of one meter."""

    @property
    def meters(self) -> int:
        """Meters of all the gateway's lines together."""
        return self.lines * self.meters_per_line

    @property
    def steps(self) -> int:
        """Rounds of messages (one per meter each) the load needs, the last maybe partial."""
        return -(-self.messages // self.meters)

    @property
    def span_ms(self) -> int:
        """Plant time from the first reading to the last."""
        return (self.steps * self.readings_per_message - 1) * self.period_ms


def meter_topic(load: Load, line: int, meter: int) -> str:
    """The topic of a line's meter: meter 0 is the production totaliser, the rest energy."""
    kind, name = ("production", "out") if meter == 0 else ("energy", f"e{meter}")
    return f"{load.prefix}/{load.site}/{load.line_prefix}{line}/{kind}/{name}"


def message_slots(load: Load) -> Iterator[tuple[int, int, int]]:
    """(step, line, meter) of each message, in publishing order."""
    for k in range(load.messages):
        step, rest = divmod(k, load.meters)
        line, meter = divmod(rest, load.meters_per_line)
        yield step, line, meter


def build_messages(load: Load) -> list[tuple[str, bytes]]:
    """Every (topic, payload) of the load, in publishing order."""
    topics = [[meter_topic(load, j, m) for m in range(load.meters_per_line)]
              for j in range(load.lines)]
    r = load.readings_per_message
    out: list[tuple[str, bytes]] = []
    for step, line, meter in message_slots(load):
        per_reading = (PRODUCTION_T_PER_READING if meter == 0
                       else ENERGY_KWH_PER_READING + 0.01 * meter)
        first = step * r
        if r == 1:
            body: dict[str, Any] = {"ts": load.t0_ms + first * load.period_ms,
                                    "v": round(1000.0 + first * per_reading, 3)}
        else:
            idx = range(first, first + r)
            body = {"ts": [load.t0_ms + i * load.period_ms for i in idx],
                    "v": [round(1000.0 + i * per_reading, 3) for i in idx]}
        out.append((topics[line][meter], orjson.dumps(body)))
    return out


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]], qos: int,
                rate: float | None = None) -> tuple[float, float, array]:
    """Publish every message (paced to ``rate`` per second if given) and wait until all are out.

    Returns the wall-clock start and end and each message's publish time.
    """
    times = array("d", bytes(8 * len(messages)))
    infos = []
    started = time.time()
    began = time.perf_counter()
    publish = client.publish
    for i, (topic, payload) in enumerate(messages):
        if rate is not None:
            ahead = began + i / rate - time.perf_counter()
            if ahead > 0.001:
                time.sleep(ahead)
        times[i] = time.time()
        infos.append(publish(topic, payload, qos))
    for info in infos:
        info.wait_for_publish(timeout=120)
    return started, time.time(), times


def publisher_process(n: int, url: MqttUrl, commands: Any, replies: Any) -> None:
    """Body of one publisher process: connect, then serve prepare/go/quit commands."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"wattline-bench-pub-{os.getpid()}-{n}",
                         protocol=mqtt.MQTTv311)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    try:
        client.connect(url.host, url.port, keepalive=60)
    except OSError:
        replies.put(("up", n, False))
        return
    client.loop_start()
    cache: dict[Load, list[tuple[str, bytes]]] = {}
    messages: list[tuple[str, bytes]] = []
    qos, rate = 0, None
    try:
        deadline = time.monotonic() + 20
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        replies.put(("up", n, client.is_connected()))
        while True:
            cmd = commands.get()
            if cmd[0] == "quit":
                return
            if cmd[0] == "prepare":
                _, load, qos, rate = cmd
                if load not in cache:
                    if len(cache) >= 2:  # a run's flood load and its paced latency load
                        del cache[next(iter(cache))]
                    cache[load] = build_messages(load)
                messages = cache[load]
                replies.put(("ready", n))
            elif cmd[0] == "go":
                started, finished, times = publish_all(client, messages, qos, rate)
                replies.put(("done", n, started, finished, times.tobytes()))
    finally:
        client.disconnect()
        client.loop_stop()
