"""``wattline bench ingest --source nats``: readings per second through 1, 2 and 3
``wattline run --source nats://...`` processes sharing one partitioned JetStream
stream, each with its own interpreter, and one MQTT collector on a Mosquitto of its
own as the baseline, in the same run on the same load.

Each round starts the daemons first and waits until each holds its fair share of the
partitions, then publishes the whole load (single-reading messages over 60 lines of 10
meters) into NATS through the subject mapping, and times from the first publish until
the daemons together have received every reading. The MQTT baseline publishes the
same messages at QoS 1 with paho and times the same way. Publishing shares the
machine's cores with the daemons and the servers, so on a small machine the figures
are what the whole chain does, not a daemon alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wattline.benchmarks.ingest_publisher import Load, build_messages
from wattline.benchmarks.report import BenchResult, machine, rate, sig
from wattline.contract.topics import TopicTemplate
from wattline.ingest.sources.nats_layout import consumer_name, server_config_block

__all__ = ["run_nats_bench"]

STREAM = "wattline"
LINES = 60
METERS = 10
TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _received(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        for name in ("wattline_readings_received_total", "wattline_nats_partitions_owned",
                     "wattline_mqtt_connected"):
            if line.startswith(name + " "):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values  # type: ignore[return-value]


class _Daemons:
    """``wattline run`` processes, counted through their /metrics."""

    def __init__(self, args_of: Callable[[int], list[str]], n: int) -> None:
        self.ports = [_free_port() for _ in range(n)]
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "wattline.ingest", "run", *args_of(i),
             "--metrics-port", str(port), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, port in enumerate(self.ports)]

    def scrape(self) -> list[dict[str, float]]:
        return [_received(p) or {} for p in self.ports]  # type: ignore[misc]

    def wait(self, ready: Callable[[list[dict[str, float]]], bool], what: str,
             timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready(self.scrape()):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"the daemons did not get ready: {what}")
            time.sleep(0.05)

    def received(self) -> list[float]:
        return [s.get("wattline_readings_received_total", 0.0) for s in self.scrape()]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _balanced(scraped: list[dict[str, float]], n: int, partitions: int) -> bool:
    """Every one of the ``n`` daemons holds its fair share and every partition is held."""
    owned = [x.get("wattline_nats_partitions_owned", 0) for x in scraped]
    return len(owned) == n and min(owned) >= partitions // n and sum(owned) == partitions


def _load(messages: int) -> Load:
    draft = Load("factory", "bench", "l", LINES, METERS, messages, 1, 0, 1000)
    now_ms = int(time.time() * 1000)
    t0 = (now_ms - draft.span_ms - 60_000) // 10_000 * 10_000
    return Load("factory", "bench", "l", LINES, METERS, messages, 1, t0, 1000)


def _timed_drain(daemons: _Daemons, publish: Callable[[], float], total: int) -> tuple[
        float, float, list[float]]:
    """(seconds to publish, seconds until every reading was received, each one's share)."""
    started = time.perf_counter()
    published = publish() - started
    deadline = started + TIMEOUT_S
    while True:
        got = daemons.received()
        if sum(got) >= total:
            return published, time.perf_counter() - started, got
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {sum(got):,.0f} of {total:,} readings arrived")
        time.sleep(0.01)


async def _publish_nats(url: str, messages: list[tuple[str, bytes]]) -> float:
    import nats

    nc = await nats.connect(url)
    try:
        for topic, payload in messages:
            await nc.publish(topic.replace("/", "."), payload)
        await nc.flush(timeout=60)
        js = nc.jetstream(timeout=30)
        while (await js.stream_info(STREAM)).state.messages < len(messages):
            await asyncio.sleep(0.01)
        return time.perf_counter()
    finally:
        await nc.close()


async def _reset(url: str, partitions: int) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        await js.purge_stream(STREAM)
        for p in range(partitions):
            try:
                await js.delete_consumer(STREAM, consumer_name(STREAM, p))
            except Exception:  # noqa: BLE001 - not made yet
                continue
    finally:
        await nc.close()


def run_nats_bench(*, messages: int, daemons: Sequence[int], partitions: int,
                   progress: Callable[[str], None]) -> BenchResult:
    """The figures and table of ``bench ingest --source nats``; see the module doc."""
    binary = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                             if os.path.exists("/usr/sbin/nats-server") else None)
    if binary is None:
        raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
    load = _load(messages)
    msgs = build_messages(load)
    total = len(msgs)
    result = BenchResult()
    figures: dict[str, Any] = {"messages": total, "lines": LINES, "partitions": partitions,
                               "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="wattline-bench-nats-") as tmp:
        port, mqtt_port = _free_port(), _free_port()
        conf = Path(tmp) / "nats.conf"
        conf.write_text(
            f"server_name: bench\nlisten: 127.0.0.1:{port}\n"
            f"jetstream {{ store_dir: \"{tmp}/js\" }}\nmqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n"
            + server_config_block(TopicTemplate("{prefix}/{site}/{line}/{kind}/{meter}",
                                                prefix="factory"), STREAM, partitions))
        server = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"nats://127.0.0.1:{port}"
        try:
            time.sleep(1.0)
            common = ["--source", url, "--partitions", str(partitions), "--lease-ttl", "6s"]
            for n in daemons:
                progress(f"NATS: {n} daemon(s), {total:,} messages")
                group = _Daemons(lambda i: [*common, "--client-id", f"bench{i}"], n)
                try:
                    group.wait(lambda s, n=n: _balanced(s, n, partitions), "fair shares held")
                    pub_s, all_s, got = _timed_drain(
                        group, lambda: asyncio.run(_publish_nats(url, msgs)), total)
                finally:
                    group.stop()
                asyncio.run(_reset(url, partitions))
                per = [g / all_s for g in got]
                figures[f"nats_{n}_readings_per_s"] = sig(total / all_s)
                figures[f"nats_{n}_per_daemon_readings_per_s"] = [sig(x) for x in per]
                figures[f"nats_{n}_publish_s"] = sig(pub_s)
                result.row(f"NATS, {n} daemon(s): all", rate(total / all_s))
                result.row(f"NATS, {n} daemon(s): each", ", ".join(rate(x) for x in per))
        finally:
            server.terminate()
            server.wait(20)
    figures.update(_mqtt_baseline(msgs, total, result, progress))
    result.figures = figures
    result.notes.append(
        f"{total:,} single-reading messages over {LINES} lines x {METERS} meters; NATS "
        f"stream with {partitions} partitions; publishing into NATS took "
        + ", ".join(f"{figures[f'nats_{n}_publish_s']:g} s" for n in daemons)
        + f"; this machine has {os.cpu_count()} CPUs, shared by the publisher, the "
        "servers and every daemon: past as many daemons as cores, more daemons only "
        "share the same CPU time (and each acknowledges every message on its own).")
    return result


def _mqtt_baseline(msgs: list[tuple[str, bytes]], total: int, result: BenchResult,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    import paho.mqtt.client as mqtt

    from wattline.benchmarks.ingest import broker_url
    from wattline.benchmarks.ingest_publisher import publish_all

    progress(f"MQTT baseline: 1 collector, {total:,} messages at QoS 1")
    with broker_url(None) as (url, _):
        group = _Daemons(lambda i: ["--mqtt-url", url, "--qos", "1"], 1)
        try:
            group.wait(lambda s: bool(s) and s[0].get("wattline_mqtt_connected") == 1.0,
                       "connected")
            time.sleep(0.5)
            host, port = url.rsplit("//", 1)[1].split(":")
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="",
                                 protocol=mqtt.MQTTv311)
            client.max_inflight_messages_set(100)
            client.connect(host, int(port))
            client.loop_start()

            def publish() -> float:
                publish_all(client, msgs, qos=1)
                return time.perf_counter()

            try:
                _, all_s, _ = _timed_drain(group, publish, total)
            finally:
                client.loop_stop()
                client.disconnect()
        finally:
            group.stop()
    result.row("MQTT collector (baseline)", rate(total / all_s))
    return {"mqtt_1_readings_per_s": sig(total / all_s)}
