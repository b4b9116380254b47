"""``wattline bench ingest``: the collector against a bare MQTT client and a hand-written loop.

One broker (a Mosquitto started on a free port, or ``mqtt_url``), gateways in
separate publisher processes (``ingest_publisher``), and four loads: single
readings and 100-reading columnar batches, each at QoS 0 and QoS 1. On each
load, in one run:

- **bare**: a paho-mqtt 2.x subscriber that only counts messages, the ceiling
  any Python collector on paho can reach here;
- **collector**: the real ``Collector`` without sinks (topics, decoding,
  batching, the kernels), counted through its own metrics; ``collector / bare``
  is the figure to steer by;
- **naive**: the loop a user would write by hand: a paho callback doing
  ``json.loads`` and building one influxdb-client ``Point`` per reading,
  serialised to line protocol and thrown away (written to nowhere).

Each consumer subscribes afresh, is warmed up by a probe message on a line of
its own (which also loads the kernels' compiled code), then the publishers are
released together. The bare subscriber and the collector each get ``rounds``
floods of every load, in alternating order, and report their fastest: a flood of
5,000 batches lasts a fraction of a second, so a single one mostly measures what
else the machine was doing. The naive loop runs once. Rates run from that release
to the last message handled (the collector: to the end of the batch that held it).
Lost is expected minus handled; at QoS 1 it must be 0.

Latency, publish to kernel output, is measured after the collector's flood on
the same collector: one publisher sends fresh lines paced at ``latency_load``
of the flood rate for ``latency_seconds``, stamping each message's publish
time; a message's latency is from that stamp to the end of the batch that held
it. Under a flood the figure would be queueing behind the flood, not the
collector's delay; for that the flood's receipt-to-output quantiles (the
collector's ``wattline_end_to_end_latency_seconds`` histogram) are reported too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import paho.mqtt
import paho.mqtt.client as mqtt
import pyarrow as pa
from influxdb_client import Point, WritePrecision

from wattline.benchmarks.ingest_publisher import Load, publisher_process
from wattline.benchmarks.report import BenchResult, machine, rate
from wattline.ingest.app.broker import MosquittoBroker, find_mosquitto
from wattline.ingest.app.daemon import Collector
from wattline.ingest.config import MqttUrl, parse_mqtt_url, settings_from_mapping
from wattline.ingest.metrics import CollectorMetrics

LOADS = {"single": 1, "batch100": 100}
"""Payload forms measured, and the readings each message carries."""
CASES = (("single", 0), ("single", 1), ("batch100", 0), ("batch100", 1))
VARIANTS = ("bare", "collector", "naive")
PERIOD_MS = {"single": 1000, "batch100": 100}
"""Plant time between two readings of a meter: a 100-reading batch covers 10 s,
well inside the default allowed lateness, so no reading of the load is late."""
SITE = "bench"
WARMUP_LINE = "warmup"
"""The line the probe publishes on before each run."""
IDLE_S = 2.0
"""Once every publisher is done, a consumer that handles nothing for this long has
got everything it will get; the rest is lost."""
RUN_TIMEOUT_S = 600.0

log = logging.getLogger("wattline.bench")


# -- what one run measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One consumer on one load: what was sent, what it handled, and how long it took."""

    expected: int
    handled: int
    readings: int
    seconds: float
    """From the publishers' release to the last message handled."""
    publish_per_s: float
    """Messages per second the publishers got out (QoS 1: acknowledged by the broker)."""

    @property
    def msgs_per_s(self) -> float:
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.expected - self.handled


@dataclass(frozen=True)
class Counts:
    """A consumer's running totals: messages and readings handled, and when the last was."""

    messages: int = 0
    readings: int = 0
    last_s: float = 0.0  # perf_counter


def quantiles(values: np.ndarray, qs: Sequence[float] = (0.5, 0.99)) -> list[float | None]:
    """The given quantiles of ``values``, or None for each when there are none."""
    if len(values) == 0:
        return [None for _ in qs]
    return [float(np.quantile(values, q)) for q in qs]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile of a cumulative histogram ``[(upper bound, count), ...]``.

    Linear inside the bucket the quantile falls in, as ``histogram_quantile`` does;
    None when the histogram is empty; the highest finite bound if it falls in +Inf.
    """
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def message_latencies(publish_times: np.ndarray, handled_at: Sequence[tuple[float, int]],
                      base: int) -> np.ndarray:
    """Publish-to-output seconds of each message of a single publisher's paced run.

    ``handled_at`` holds, per batch the collector finished, its wall-clock end and
    the running count of messages handled; ``base`` is that count before the run.
    Message i (in publishing order, which is the order one connection delivers in)
    was output by the first batch whose count passes ``base + i``.
    """
    if not handled_at:
        return np.empty(0)
    ends = np.array([t for t, _ in handled_at], dtype=np.float64)
    done = np.array([n for _, n in handled_at], dtype=np.int64) - base
    n = min(len(publish_times), int(done.max()))
    if n <= 0:
        return np.empty(0)
    batch = np.searchsorted(done, np.arange(n), side="right")
    return ends[batch] - publish_times[:n]


# -- consumers --------------------------------------------------------------------------------


class Consumer(Protocol):
    def start(self) -> None: ...
    def counts(self) -> Counts: ...
    def stop(self) -> None: ...


class _PahoConsumer:
    """A paho-mqtt 2.x subscriber on the reading topics; subclasses say what a message costs."""

    def __init__(self, url: MqttUrl, topics: Sequence[str], qos: int) -> None:
        self.messages = 0
        self.readings = 0
        self.last_s = 0.0
        self.subscribed = threading.Event()
        self._url = url
        self._topics = [(t, qos) for t in topics]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wattline-bench-{uuid.uuid4().hex[:12]}",
                                  protocol=mqtt.MQTTv311)
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        client.subscribe(self._topics)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        self.subscribed.set()

    def start(self) -> None:
        self.client.connect(self._url.host, self._url.port, keepalive=60)
        self.client.loop_start()
        if not self.subscribed.wait(20):
            raise RuntimeError(f"no subscription acknowledged by {self._url.host}:{self._url.port}")

    def counts(self) -> Counts:
        return Counts(self.messages, self.readings, self.last_s)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BareCounter(_PahoConsumer):
    """The ceiling: a subscriber whose callback only counts (readings are inferred)."""

    def __init__(self, url: MqttUrl, topics: Sequence[str], qos: int) -> None:
        super().__init__(url, topics, qos)
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        self.messages += 1
        self.last_s = time.perf_counter()


class NaiveLoop(_PahoConsumer):
    """The hand-written loop: ``json.loads``, one influxdb-client ``Point`` per reading."""

    def __init__(self, url: MqttUrl, topics: Sequence[str], qos: int) -> None:
        super().__init__(url, topics, qos)
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        _, site, line, kind, meter = message.topic.split("/")
        body = json.loads(message.payload)
        ts, v = body["ts"], body["v"]
        if not isinstance(ts, list):
            ts, v = [ts], [v]
        written = []  # to nowhere
        for t, x in zip(ts, v, strict=True):
            point = (Point(kind).tag("site", site).tag("line", line).tag("meter", meter)
                     .field("value", float(x)).time(t, WritePrecision.MS))
            written.append(point.to_line_protocol())
        self.readings += len(written)
        self.messages += 1
        self.last_s = time.perf_counter()


class CollectorConsumer:
    """The real ``Collector``, counted through its metrics after each batch.

    Without sinks unless ``settings`` (more settings, as the config file names them)
    ask for some: with ``influx_url`` or ``state_dir`` the collector builds its sinks,
    spool and write-ahead log as ``wattline run`` does.
    """

    def __init__(self, url: str, qos: int, prefix: str,
                 settings: dict[str, Any] | None = None) -> None:
        extra = dict(settings or {})
        built = settings_from_mapping({"mqtt_url": url, "qos": qos, "topic_prefix": prefix,
                                       "client_id": f"wattline-bench-{uuid.uuid4().hex[:12]}",
                                       **extra})
        built = dataclasses.replace(built, metrics_port=None)
        self.metrics = CollectorMetrics()
        self.handled_at: list[tuple[float, int]] = []
        """Per finished batch: wall-clock end and running count of messages handled."""
        self._counts = Counts()
        wants_sinks = bool(extra.get("influx_url") or extra.get("store"))
        self.collector = Collector(built, sinks=None if wants_sinks else [],
                                   metrics=self.metrics, on_results=self._on_results)

    def _on_results(self, table: pa.Table) -> None:
        registry = self.metrics.registry
        messages = int(registry.get_sample_value("wattline_messages_received_total",
                                                 {"topic_kind": "reading"}) or 0)
        readings = int(registry.get_sample_value("wattline_readings_received_total") or 0)
        self.handled_at.append((time.time(), messages))
        self._counts = Counts(messages, readings, time.perf_counter())

    def start(self) -> None:
        self.collector.start()

    def counts(self) -> Counts:
        return self._counts

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return float(self.metrics.registry.get_sample_value(name, labels or {}) or 0.0)

    def dropped(self) -> int:
        """Readings and messages the collector dropped, for any reason."""
        registry = self.metrics.registry
        total = 0.0
        for family in registry.collect():
            if family.name in ("wattline_readings_dropped", "wattline_payload_errors"):
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return int(total)

    def receipt_to_output(self) -> list[float | None]:
        """p50 and p99 of the collector's own receipt-to-output histogram."""
        buckets = []
        for family in self.metrics.registry.collect():
            if family.name == "wattline_end_to_end_latency_seconds":
                buckets = [(float(s.labels["le"]), s.value) for s in family.samples
                           if s.name.endswith("_bucket")]
        return [histogram_quantile(q, buckets) for q in (0.5, 0.99)]

    def stop(self) -> None:
        self.collector.stop()


class SharedCollectors:
    """Several ``wattline run`` processes in one MQTT 5 share group, counted through their
    /metrics, each subscribed to its own share of the plant's lines (``--subscribe-lines``,
    dealt out in turn; the warm-up line goes to the first): a share group over every line
    would split a line's meters between them, which the daemon refuses.

    The way past one interpreter's limit (paho's thread and the pipeline share the
    GIL): each process has its own.
    """

    def __init__(self, url: str, qos: int, prefix: str, processes: int,
                 lines: Sequence[str]) -> None:
        self._args = (url, qos, prefix)
        self.processes = processes
        every = [f"{SITE}/{WARMUP_LINE}", *(line for line in lines
                                             if line != f"{SITE}/{WARMUP_LINE}")]
        self.lines = [every[i::processes] for i in range(processes)]
        if not all(self.lines):
            raise ValueError(f"{processes} collectors need at least {processes} lines")
        self._ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._last = Counts()

    def start(self) -> None:
        url, qos, prefix = self._args
        group = f"bench{uuid.uuid4().hex[:8]}"
        for i in range(self.processes):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self._ports.append(port)
            self._procs.append(subprocess.Popen(
                [sys.executable, "-m", "wattline.ingest", "run", "--mqtt-url", url,
                 "--qos", str(qos), "--topic-prefix", prefix, "--mqtt-protocol", "5",
                 "--mqtt-share-group", group, "--subscribe-lines", ",".join(self.lines[i]),
                 "--client-id", f"{group}-{i}",
                 "--metrics-port", str(port), "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not all(self._scrape(p).get("wattline_mqtt_connected") == 1.0
                      for p in self._ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self._procs):
                self.stop()
                raise RuntimeError("the shared-subscription collectors did not connect")
            time.sleep(0.2)

    @staticmethod
    def _scrape(port: int) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            for name in ('wattline_messages_received_total{topic_kind="reading"}',
                         "wattline_readings_received_total", "wattline_mqtt_connected"):
                if line.startswith(name + " "):
                    out[name.split("{")[0]] = float(line.rsplit(" ", 1)[1])
        return out

    def counts(self) -> Counts:
        scraped = [self._scrape(p) for p in self._ports]
        messages = int(sum(x.get("wattline_messages_received_total", 0) for x in scraped))
        readings = int(sum(x.get("wattline_readings_received_total", 0) for x in scraped))
        if messages != self._last.messages:
            self._last = Counts(messages, readings, time.perf_counter())
        return self._last

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- publishers -------------------------------------------------------------------------------


class Publishers:
    """Publisher processes (spawned), driven over queues; see ``ingest_publisher``."""

    def __init__(self, count: int, url: MqttUrl) -> None:
        ctx = mp.get_context("spawn")
        self.replies: Any = ctx.Queue()
        self.commands: list[Any] = [ctx.Queue() for _ in range(count)]
        self.processes = [
            ctx.Process(target=publisher_process, args=(n, url, q, self.replies),
                        name=f"wattline-bench-publisher-{n}", daemon=True)
            for n, q in enumerate(self.commands)
        ]
        for p in self.processes:
            p.start()
        try:
            for reply in self._replies("up", count, 60):
                if not reply[2]:
                    raise RuntimeError(f"publisher {reply[1]} could not connect to the broker "
                                       f"at {url.host}:{url.port}")
        except BaseException:
            self.close()
            raise

    def _replies(self, kind: str, count: int, timeout_s: float) -> list[tuple[Any, ...]]:
        got = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            try:
                reply = self.replies.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                if time.monotonic() >= deadline or not all(p.is_alive() for p in self.processes):
                    raise RuntimeError(f"publishers did not answer {kind!r} in time") from None
                continue
            if reply[0] != kind:
                raise RuntimeError(f"publisher answered {reply[0]!r}, expected {kind!r}")
            got.append(reply)
        return got

    def prepare(self, loads: Sequence[Load], qos: int, per_s: float | None = None) -> None:
        """Have publisher i build ``loads[i]``'s messages (fewer loads: fewer publishers)."""
        for q, load in zip(self.commands, loads, strict=False):
            q.put(("prepare", load, qos, per_s))
        self._replies("ready", len(loads), 120)

    def go(self, count: int) -> list[tuple[Any, ...]]:
        """Release the first ``count`` publishers; their ``done`` replies, by publisher."""
        for q in self.commands[:count]:
            q.put(("go",))
        return sorted(self._replies("done", count, RUN_TIMEOUT_S), key=lambda r: r[1])

    def close(self) -> None:
        for q in self.commands:
            q.put(("quit",))
        for p in self.processes:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)


# -- one run ----------------------------------------------------------------------------------


class Probe:
    """Publishes a reading on the warm-up line until a consumer has handled it."""

    def __init__(self, url: MqttUrl, prefix: str) -> None:
        self.topic = f"{prefix}/{SITE}/{WARMUP_LINE}/energy/probe"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wattline-bench-probe-{uuid.uuid4().hex[:12]}")
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        try:
            self.client.connect(url.host, url.port, keepalive=60)
        except OSError as err:
            raise RuntimeError(f"cannot connect to the broker at {url.host}:{url.port}: "
                               f"{err}") from None
        self.client.loop_start()
        self._n = 0

    def warm(self, consumer: Consumer, timeout_s: float = 120.0) -> None:
        """Probe until ``consumer`` counts a message, then let stragglers arrive."""
        before = consumer.counts().messages
        deadline = time.monotonic() + timeout_s
        while consumer.counts().messages == before:
            if time.monotonic() > deadline:
                raise RuntimeError("the consumer handled no probe message: is it subscribed?")
            self._n += 1
            payload = json.dumps({"ts": int(time.time() * 1000), "v": float(self._n)})
            self.client.publish(self.topic, payload, qos=1).wait_for_publish(5)
            wait_until = time.monotonic() + 0.3
            while consumer.counts().messages == before and time.monotonic() < wait_until:
                time.sleep(0.01)
        time.sleep(0.2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_handled(consumer: Consumer, target: int, timeout_s: float = RUN_TIMEOUT_S) -> Counts:
    """Wait until ``consumer`` handled ``target`` messages in all, or stopped moving."""
    deadline = time.monotonic() + timeout_s
    last = consumer.counts()
    moved = time.monotonic()
    while last.messages < target and time.monotonic() < deadline:
        time.sleep(0.02)
        now = consumer.counts()
        if now.messages != last.messages:
            moved = time.monotonic()
        elif time.monotonic() - moved > IDLE_S:
            break
        last = now
    return consumer.counts()


def flood(publishers: Publishers, consumer: Consumer, loads: Sequence[Load], qos: int) -> Run:
    """Release every publisher at once on a warmed-up consumer and time it to the last message."""
    publishers.prepare(loads, qos)
    base = consumer.counts()
    released = time.perf_counter()
    done = publishers.go(len(loads))
    expected = sum(load.messages for load in loads)
    end = wait_handled(consumer, base.messages + expected)
    seconds = end.last_s - released if end.messages > base.messages else 0.0
    publish_s = max(r[3] for r in done) - min(r[2] for r in done)
    readings = end.readings - base.readings
    if isinstance(consumer, BareCounter):  # counts messages only
        readings = (end.messages - base.messages) * loads[0].readings_per_message
    return Run(expected=expected, handled=end.messages - base.messages, readings=readings,
               seconds=seconds, publish_per_s=expected / publish_s if publish_s > 0 else 0.0)


def paced(publishers: Publishers, consumer: CollectorConsumer, load: Load, qos: int,
          per_s: float) -> tuple[np.ndarray, int]:
    """One publisher sends ``load`` at ``per_s``; publish-to-output seconds per message, lost."""
    publishers.prepare([load], qos, per_s)
    base = consumer.counts().messages
    (done,) = publishers.go(1)
    end = wait_handled(consumer, base + load.messages)
    times = np.frombuffer(done[4], dtype=np.float64)
    latencies = message_latencies(times, list(consumer.handled_at), base)
    return latencies, load.messages - (end.messages - base)


# -- the benchmark ----------------------------------------------------------------------------


@contextmanager
def broker_url(mqtt_url: str | None) -> Iterator[tuple[str, str]]:
    """The broker to use (its URL and what it is): ``mqtt_url``, or a Mosquitto of our own."""
    if mqtt_url:
        yield mqtt_url, "given"
        return
    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("Mosquitto is not installed (apt-get install mosquitto); or give "
                           "--mqtt-url: the in-process broker is far too slow to measure with")
    broker = MosquittoBroker(binary)
    try:
        yield broker.url, "mosquitto (own, max_queued_messages 100000)"
    finally:
        broker.stop()


def plant_loads(load_name: str, messages: int, publishers: int, lines: int, meters: int,
                prefix: str, line_prefix: str, now_ms: int) -> list[Load]:
    """The gateways' shares of ``messages``: publisher n owns lines ``{line_prefix}{n}-{j}``.

    Plant time starts far enough back that the last reading is a minute old, so
    every reading is inside the collector's accepted time range.
    """
    share = [messages // publishers + (1 if n < messages % publishers else 0)
             for n in range(publishers)]
    r, period = LOADS[load_name], PERIOD_MS[load_name]
    loads = []
    for n, count in enumerate(share):
        if count == 0:
            continue
        draft = Load(prefix, SITE, f"{line_prefix}{n}-", lines, meters, count, r, 0, period)
        t0 = (now_ms - draft.span_ms - 60_000) // 10_000 * 10_000
        if now_ms - t0 > 29 * 86_400_000:
            raise ValueError(f"{messages:,} messages span more than 29 days of plant time; "
                             "give more lines or meters")
        loads.append(dataclasses.replace(draft, t0_ms=t0))
    return loads


def load_lines(loads: Sequence[Load]) -> list[str]:
    """Every ``site/line`` the loads publish on."""
    return [f"{load.site}/{load.line_prefix}{j}" for load in loads for j in range(load.lines)]


def run_ingest_bench(
    *,
    mqtt_url: str | None = None,
    messages: int = 50_000,
    batch_messages: int = 5_000,
    publishers: int = 2,
    lines_per_publisher: int = 5,
    meters_per_line: int = 5,
    latency_seconds: float = 2.0,
    latency_load: float = 0.5,
    topic_prefix: str = "factory",
    shared_collectors: int = 0,
    rounds: int = 3,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Every consumer on every load (single/batch100 x QoS 0/1) against one broker.

    With ``shared_collectors`` N > 0, also N ``wattline run`` processes in one MQTT 5
    share group, each subscribed to its own share of the lines (the "shared" rows).

    ``messages`` single-reading messages and ``batch_messages`` 100-reading ones
    per run, split over ``publishers`` processes. With ``mqtt_url``, use a topic
    prefix no running daemon subscribes to. The publishers are spawned processes, so
    a script calling this needs the usual ``if __name__ == "__main__":`` guard.
    """
    if messages <= 0 or batch_messages <= 0 or publishers <= 0 or rounds <= 0:
        raise ValueError("messages, batch_messages, publishers and rounds must be positive")
    began = time.perf_counter()
    now_ms = int(time.time() * 1000)
    sizes = {"single": messages, "batch100": batch_messages}
    flood_loads = {name: plant_loads(name, sizes[name], publishers, lines_per_publisher,
                                     meters_per_line, topic_prefix, "p", now_ms)
                   for name in LOADS}
    runs: dict[tuple[str, str, int], list[Run]] = {}
    latency: dict[tuple[str, int], dict[str, Any]] = {}
    drops: dict[tuple[str, int], int] = {}
    collector_log = logging.getLogger("wattline.collector")
    saved_level = collector_log.level
    collector_log.setLevel(logging.ERROR)  # "no sink configured" is the point here
    warm_kernels(progress)
    with broker_url(mqtt_url) as (url_text, broker_kind):
        url = parse_mqtt_url(url_text)
        topics = [f"{topic_prefix}/+/+/+/+"]
        progress(f"broker {url.host}:{url.port} ({broker_kind}); starting {publishers} "
                 "publisher process(es) ...")
        probe = Probe(url, topic_prefix)  # first: says plainly when the broker is not there
        try:
            pubs = Publishers(publishers, url)
        except BaseException:
            probe.close()
            raise
        try:
            for load_name, qos in CASES:
                loads = flood_loads[load_name]
                expected = sum(x.messages for x in loads)
                for round_no in range(rounds):
                    # Bare and collector every round, in alternating order (the machine's
                    # drift falls on both); the slow naive loop and shared collectors once.
                    variants = ["bare", "collector"] if round_no % 2 == 0 \
                        else ["collector", "bare"]
                    if round_no == 0:
                        variants += ["naive"] + (["shared"] if shared_collectors else [])
                    for variant in variants:
                        progress(f"{load_name} QoS {qos}, {variant}, round {round_no + 1}: "
                                 f"{expected:,} messages ...")
                        consumer: Consumer
                        if variant == "shared":
                            consumer = SharedCollectors(url_text, qos, topic_prefix,
                                                        shared_collectors, load_lines(loads))
                        elif variant == "bare":
                            consumer = BareCounter(url, topics, qos)
                        elif variant == "naive":
                            consumer = NaiveLoop(url, topics, qos)
                        else:
                            consumer = CollectorConsumer(url_text, qos, topic_prefix)
                        consumer.start()
                        try:
                            probe.warm(consumer)
                            run = flood(pubs, consumer, loads, qos)
                            runs.setdefault((variant, load_name, qos), []).append(run)
                            progress(f"  {run.msgs_per_s:,.0f} msg/s, "
                                     f"{run.readings_per_s:,.0f} readings/s, lost {run.lost:,} "
                                     f"(publishers {run.publish_per_s:,.0f} msg/s)")
                            if isinstance(consumer, CollectorConsumer):
                                drops[(load_name, qos)] = drops.get((load_name, qos), 0) \
                                    + consumer.dropped()
                                if round_no == rounds - 1:
                                    latency[(load_name, qos)] = _latency_phase(
                                        pubs, consumer, load_name, qos, run, latency_seconds,
                                        latency_load, lines_per_publisher, meters_per_line,
                                        topic_prefix, progress)
                        finally:
                            consumer.stop()
        finally:
            probe.close()
            pubs.close()
            collector_log.setLevel(saved_level)
    progress(f"done in {time.perf_counter() - began:.0f} s")
    params = {
        "messages": messages, "batch_messages": batch_messages,
        "readings_per_batch": LOADS["batch100"], "publishers": publishers,
        "lines": publishers * lines_per_publisher, "meters_per_line": meters_per_line,
        "latency_seconds": latency_seconds, "latency_load": latency_load,
        "broker": broker_kind, "paho_mqtt": paho.mqtt.__version__,
        "shared_collectors": shared_collectors, "rounds": rounds, **machine(),
    }
    return _result(runs, latency, drops, params)


def warm_kernels(progress: Callable[[str], None]) -> None:
    """Load (or compile) the collector's kernels before any clock starts."""
    from wattline.ingest.warmup import warm_up_kernels

    progress("loading (or compiling) the kernels ...")
    progress(f"  ready in {warm_up_kernels():.1f} s")


def _latency_phase(pubs: Publishers, consumer: CollectorConsumer, load_name: str, qos: int,
                   run: Run, seconds: float, share: float, lines: int, meters: int, prefix: str,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    """Paced publish-to-output latency on the flooded collector, plus its flood histogram."""
    flood_p50, flood_p99 = consumer.receipt_to_output()
    per_s = max(50.0, share * run.msgs_per_s)
    count = max(10, int(per_s * seconds))
    (load,) = plant_loads(load_name, count, 1, lines, meters, prefix, "lat",
                          int(time.time() * 1000))
    progress(f"  latency: {count:,} messages paced at {per_s:,.0f} msg/s ...")
    latencies, lost = paced(pubs, consumer, load, qos, per_s)
    p50, p99 = quantiles(latencies)
    progress(f"  publish to output p50 {_seconds(p50)}, p99 {_seconds(p99)}; flood receipt to "
             f"output p50 {_seconds(flood_p50)}, p99 {_seconds(flood_p99)}")
    return {"p50": p50, "p99": p99, "samples": len(latencies), "per_s": per_s, "lost": lost,
            "flood_p50": flood_p50, "flood_p99": flood_p99}


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:,.1f} ms"


def _per_s(value: float, unit: str) -> str:
    """``16.4 k msg/s`` style."""
    return f"{rate(value)[:-2].rstrip()} {unit}/s"


def _figure(run: Run, readings_per_message: int) -> str:
    if readings_per_message == 1:
        return _per_s(run.msgs_per_s, "msg")
    return f"{_per_s(run.readings_per_s, 'readings')}, {_per_s(run.msgs_per_s, 'msg')}"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _result(all_runs: dict[tuple[str, str, int], list[Run]],
            latency: dict[tuple[str, int], dict[str, Any]],
            drops: dict[tuple[str, int], int], params: dict[str, Any]) -> BenchResult:
    """The table rows, notes and JSON figures of one run: each consumer's fastest round,
    and the messages it lost in all its rounds together."""
    runs = {key: _best(rounds) for key, rounds in all_runs.items()}
    result = BenchResult()
    figures: dict[str, Any] = {}
    cases = []
    for load_name, qos in CASES:
        key = f"qos{qos}_{load_name}"
        r = LOADS[load_name]
        bare, coll, naive = (runs[(v, load_name, qos)] for v in VARIANTS)
        lat = latency[(load_name, qos)]
        for variant, run in zip(VARIANTS, (bare, coll, naive), strict=True):
            figures[f"{variant}_{key}_msgs_per_s"] = run.msgs_per_s
            figures[f"{variant}_{key}_readings_per_s"] = run.readings_per_s
            figures[f"{variant}_{key}_lost"] = run.lost
            figures[f"publish_{variant}_{key}_msgs_per_s"] = run.publish_per_s
        over_bare = _ratio(coll.readings_per_s, bare.readings_per_s)
        over_naive = _ratio(coll.readings_per_s, naive.readings_per_s)
        figures[f"collector_over_bare_{key}"] = over_bare
        figures[f"collector_over_naive_{key}"] = over_naive
        figures[f"latency_{key}_p50_s"] = lat["p50"]
        figures[f"latency_{key}_p99_s"] = lat["p99"]
        figures[f"latency_{key}_samples"] = lat["samples"]
        figures[f"latency_{key}_paced_msgs_per_s"] = lat["per_s"]
        figures[f"latency_{key}_lost"] = lat["lost"]
        figures[f"flood_receipt_to_output_{key}_p50_s"] = lat["flood_p50"]
        figures[f"flood_receipt_to_output_{key}_p99_s"] = lat["flood_p99"]
        figures[f"collector_{key}_dropped"] = drops[(load_name, qos)]
        cases.append({
            "payload": load_name, "qos": qos,
            "bare_readings_per_s": bare.readings_per_s,
            "collector_readings_per_s": coll.readings_per_s,
            "naive_readings_per_s": naive.readings_per_s,
            "bare_msgs_per_s": bare.msgs_per_s, "collector_msgs_per_s": coll.msgs_per_s,
            "naive_msgs_per_s": naive.msgs_per_s,
            "collector_over_bare": over_bare, "collector_over_naive": over_naive,
            "lost": coll.lost, "bare_lost": bare.lost, "naive_lost": naive.lost,
            "latency_p50_s": lat["p50"], "latency_p99_s": lat["p99"],
        })
        name = f"{load_name} QoS {qos}"
        shared = runs.get(("shared", load_name, qos))
        if shared is not None:
            over = _ratio(shared.readings_per_s, bare.readings_per_s)
            figures[f"shared_{key}_msgs_per_s"] = shared.msgs_per_s
            figures[f"shared_{key}_readings_per_s"] = shared.readings_per_s
            figures[f"shared_{key}_lost"] = shared.lost
            figures[f"shared_over_bare_{key}"] = over
            cases[-1]["shared_readings_per_s"] = shared.readings_per_s
            cases[-1]["shared_over_bare"] = over
            cases[-1]["shared_lost"] = shared.lost
            result.row(f"{name} {params['shared_collectors']} collectors, shared sub.",
                       _figure(shared, r), f"bare: {_fmt_ratio(over)}")
        result.row(f"{name} collector", _figure(coll, r), "1.00")
        result.row(f"{name} bare paho", _figure(bare, r), _fmt_ratio(over_bare), "ceiling")
        result.row(f"{name} naive json+Point", _figure(naive, r), _fmt_ratio(over_naive, "x"))
        result.row(f"{name} latency p50/p99", f"{_seconds(lat['p50'])} / {_seconds(lat['p99'])}")
        result.row(f"{name} lost bare/coll/naive",
                   f"{bare.lost:,} / {coll.lost:,} / {naive.lost:,}",
                   agree="yes" if qos == 0 or bare.lost == coll.lost == naive.lost == 0 else "NO")
    for qos in (0, 1):
        figures[f"lost_qos{qos}"] = (
            sum(run.lost for (_, _, q), run in runs.items() if q == qos)
            + sum(lat["lost"] for (_, q), lat in latency.items() if q == qos))
    p50s = [c["latency_p50_s"] for c in cases if c["latency_p50_s"] is not None]
    p99s = [c["latency_p99_s"] for c in cases if c["latency_p99_s"] is not None]
    figures["latency_p50_s"] = max(p50s) if p50s else None
    figures["latency_p99_s"] = max(p99s) if p99s else None
    figures["cases"] = cases
    figures.update(params)
    result.figures = figures
    result.notes += _notes(figures, cases, params)
    return result


def _best(rounds: list[Run]) -> Run:
    """The fastest round, carrying the losses of every round (lost = expected - handled)."""
    best = max(rounds, key=lambda run: run.msgs_per_s)
    lost = sum(run.lost for run in rounds)
    return dataclasses.replace(best, expected=best.handled + lost)


def _fmt_ratio(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}{suffix}" if suffix else f"{value:.2f}"


def _notes(figures: dict[str, Any], cases: list[dict[str, Any]],
           params: dict[str, Any]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "yes" if ok else "NO"

    def at_least(value: float | None, floor: float) -> bool:
        return value is not None and value >= floor

    notes = [
        f"load: {params['messages']:,} single-reading and {params['batch_messages']:,} "
        f"{params['readings_per_batch']}-reading messages per run, from {params['publishers']} "
        f"publisher process(es), {params['lines']} lines x {params['meters_per_line']} meters; "
        f"broker {params['broker']}",
        "rates: from the publishers' release to the last message handled (collector: to the "
        f"end of its batch); bare and collector: the fastest of {params['rounds']} alternating "
        "floods, the naive loop: one; lost: over all floods; ratio column = collector "
        "readings/s over the row's",
        "latency: publish call to the end of the collector batch that held the message, with "
        f"one publisher paced at {params['latency_load']:.0%} of the collector's flood rate "
        f"for {params['latency_seconds']:g} s; flood receipt-to-output quantiles from "
        "wattline_end_to_end_latency_seconds are in the JSON",
        "naive: paho callback, json.loads, one influxdb-client Point per reading serialised to "
        "line protocol and discarded; no intensity computed",
    ]
    for c in cases:
        single = c["payload"] == "single"
        floor = 0.8 if single else 0.6
        notes.append(
            f"target {c['payload']} QoS {c['qos']}: collector/bare >= {floor}: "
            f"{verdict(at_least(c['collector_over_bare'], floor))}; collector/naive >= 10: "
            f"{verdict(at_least(c['collector_over_naive'], 10.0))}")
        publish = figures[f"publish_bare_qos{c['qos']}_{c['payload']}_msgs_per_s"]
        if c["bare_msgs_per_s"] >= 0.9 * publish:
            notes.append(f"ceiling {c['payload']} QoS {c['qos']}: the bare subscriber kept up "
                         f"with the publishers ({publish:,.0f} msg/s out): its true ceiling may "
                         "be higher")
    notes.append(f"lost at QoS 1 (all runs, latency runs too): {figures['lost_qos1']:,} "
                 f"(must be 0): {verdict(figures['lost_qos1'] == 0)}; "
                 f"at QoS 0: {figures['lost_qos0']:,}")
    return notes

