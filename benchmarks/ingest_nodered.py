"""``wattline bench ingest --peer node-red``: the daemon against Node-RED 4, message for message.

What many plants build today: Node-RED with an ``mqtt in`` node (QoS 1, JSON) into a
function node doing the per-meter deltas and 15m/1h/24h sums (``nodered_flow``). Both
consumers are processes of their own on the same Mosquitto, fed the same loads by the
same publisher processes (``ingest_publisher``): single-reading messages and 100-reading
messages, at QoS 1. For each load the two take turns, ``rounds`` times, each starting
fresh (a new process, warmed by a probe message), and each reports its fastest round.

Per round: msg/s and readings/s (from the publishers' release to the last message
counted), the process's CPU seconds during the flood over the messages handled
(user + system, /proc/PID/stat), and its peak RSS (VmHWM). The daemon is ``wattline
run`` without sinks, counted through its /metrics; Node-RED through the function's
``/wattline/counts`` endpoint. Both are polled every 20 ms, which each pays for.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattline.benchmarks.ingest import (
    Counts,
    Probe,
    Publishers,
    Run,
    SharedCollectors,
    broker_url,
    flood,
    plant_loads,
    warm_kernels,
)
from wattline.benchmarks.nodered_flow import build_flow
from wattline.benchmarks.nodered_peer import (
    DEFAULT_CACHE,
    NodeRed,
    PeerMissing,
    cpu_seconds,
    ensure_node_red,
    peak_rss_bytes,
)
from wattline.benchmarks.report import BenchResult, machine
from wattline.ingest.config import parse_mqtt_url

LOADS = (("single", 1), ("batch100", 100))
"""The loads, each at QoS 1, and the readings each message carries."""
QOS = 1
PEERS = ("wattline", "node-red")
TARGETS = {"single": (1.5, 0.5), "batch100": (3.0, None)}
"""The targets: wattline / Node-RED msg/s at least, and CPU per message at most (or None)."""


@dataclasses.dataclass(frozen=True)
class Round:
    """One consumer's flood: the run, its CPU seconds during it, its peak RSS after it."""

    run: Run
    cpu_s: float
    peak_rss: int
    dropped: int = 0
    """Readings (and malformed messages) the consumer dropped, for any reason."""

    @property
    def cpu_per_message_s(self) -> float:
        return self.cpu_s / self.run.handled if self.run.handled else 0.0


class DaemonProcess:
    """``wattline run`` without sinks in a process of its own, counted through /metrics."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url, self._prefix = url, prefix
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self._port = s.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self._last = Counts()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wattline.ingest", "run", "--mqtt-url", self._url,
             "--qos", str(QOS), "--topic-prefix", self._prefix,
             "--client-id", f"wattline-bench-{uuid.uuid4().hex[:12]}",
             "--metrics-port", str(self._port), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while SharedCollectors._scrape(self._port).get("wattline_mqtt_connected") != 1.0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the wattline daemon did not connect to the broker")
            time.sleep(0.1)

    def counts(self) -> Counts:
        scraped = SharedCollectors._scrape(self._port)
        messages = int(scraped.get("wattline_messages_received_total", 0))
        if messages != self._last.messages:
            readings = int(scraped.get("wattline_readings_received_total", 0))
            self._last = Counts(messages, readings, time.perf_counter())
        return self._last

    def dropped(self) -> int:
        """Readings dropped and payload errors, summed over their labels (/metrics)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/metrics",
                                        timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return -1
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(("wattline_readings_dropped_total",
                                           "wattline_payload_errors_total"))))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class NodeRedProcess:
    """Node-RED running the peer flow on the bench's broker, counted through its endpoint."""

    def __init__(self, cache: Path, host: str, port: int, prefix: str) -> None:
        self._cache = cache
        self._flow = build_flow(host, port, f"{prefix}/+/+/+/+", QOS,
                                f"wattline-bench-nr-{uuid.uuid4().hex[:8]}")
        self._peer: NodeRed | None = None
        self._last = Counts()

    @property
    def pid(self) -> int:
        assert self._peer is not None
        return self._peer.pid

    def start(self) -> None:
        self._peer = NodeRed(self._cache, self._flow)
        try:
            self._peer.wait_ready()
        except BaseException:
            self._peer.stop()
            raise

    def counts(self) -> Counts:
        assert self._peer is not None
        try:
            got = self._peer.get("counts")
        except OSError:
            return self._last
        if got["messages"] != self._last.messages:
            self._last = Counts(int(got["messages"]), int(got["readings"]), time.perf_counter())
        return self._last

    def dropped(self) -> int:
        """Readings the function dropped (late, duplicate, implausible) and messages it
        could not read."""
        assert self._peer is not None
        return int(sum(self._peer.get("counts")["dropped"].values()))

    def stop(self) -> None:
        if self._peer is not None:
            self._peer.stop()


def run_nodered_bench(
    *,
    mqtt_url: str | None = None,
    messages: int = 50_000,
    batch_messages: int = 5_000,
    publishers: int = 2,
    lines_per_publisher: int = 5,
    meters_per_line: int = 5,
    topic_prefix: str = "factory",
    rounds: int = 3,
    peer_cache: Path = DEFAULT_CACHE,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """The daemon and Node-RED, alternating, on single and 100-reading messages at QoS 1.

    Without node or npm (or when the install fails), only the daemon is measured and
    the notes say why Node-RED was skipped.
    """
    if messages <= 0 or batch_messages <= 0 or publishers <= 0 or rounds <= 0:
        raise ValueError("messages, batch_messages, publishers and rounds must be positive")
    peers = list(PEERS)
    skipped = None
    version = None
    try:
        progress(f"Node-RED: installing into {peer_cache} unless it is there ...")
        version = ensure_node_red(peer_cache)
        progress(f"  Node-RED {version}")
    except PeerMissing as err:
        skipped = str(err)
        peers.remove("node-red")
        progress(f"Node-RED skipped: {skipped}")
    warm_kernels(progress)
    now_ms = int(time.time() * 1000)
    sizes = {"single": messages, "batch100": batch_messages}
    results: dict[tuple[str, str], list[Round]] = {}
    with broker_url(mqtt_url) as (url_text, broker_kind):
        url = parse_mqtt_url(url_text)
        probe = Probe(url, topic_prefix)
        try:
            pubs = Publishers(publishers, url)
        except BaseException:
            probe.close()
            raise
        try:
            for load_name, _ in LOADS:
                loads = plant_loads(load_name, sizes[load_name], publishers,
                                    lines_per_publisher, meters_per_line, topic_prefix, "p",
                                    now_ms)
                for round_no in range(rounds):
                    order = peers if round_no % 2 == 0 else peers[::-1]
                    for peer in order:
                        progress(f"{load_name} QoS {QOS}, {peer}, round {round_no + 1} ...")
                        consumer: DaemonProcess | NodeRedProcess = (
                            DaemonProcess(url_text, topic_prefix) if peer == "wattline"
                            else NodeRedProcess(peer_cache, url.host, url.port, topic_prefix))
                        consumer.start()
                        try:
                            probe.warm(consumer)
                            before = cpu_seconds(consumer.pid)
                            run = flood(pubs, consumer, loads, QOS)
                            got = Round(run, cpu_seconds(consumer.pid) - before,
                                        peak_rss_bytes(consumer.pid), consumer.dropped())
                        finally:
                            consumer.stop()
                        results.setdefault((peer, load_name), []).append(got)
                        progress(f"  {run.msgs_per_s:,.0f} msg/s, {run.readings_per_s:,.0f} "
                                 f"readings/s, {got.cpu_per_message_s * 1e6:,.1f} us CPU/msg, "
                                 f"peak RSS {got.peak_rss / 2**20:,.0f} MiB, lost {run.lost:,}, "
                                 f"dropped {got.dropped:,}")
        finally:
            probe.close()
            pubs.close()
    params = {"messages": messages, "batch_messages": batch_messages,
              "publishers": publishers, "lines": publishers * lines_per_publisher,
              "meters_per_line": meters_per_line, "rounds": rounds, "qos": QOS,
              "broker": broker_kind, "node_red": version, "node_red_skipped": skipped,
              **machine()}
    return peer_result(results, params)


def _best(rounds: list[Round]) -> tuple[Round, int]:
    """The fastest round, and the messages lost over all rounds."""
    return max(rounds, key=lambda r: r.run.msgs_per_s), sum(r.run.lost for r in rounds)


def peer_result(results: dict[tuple[str, str], list[Round]],
                params: dict[str, Any]) -> BenchResult:
    """Rows, notes and JSON figures: each consumer's fastest round per load, the ratios
    wattline / Node-RED, and the verdict on the targets."""
    result = BenchResult()
    figures: dict[str, Any] = {}
    notes = [f"load: {params['messages']:,} single-reading and {params['batch_messages']:,} "
             f"100-reading messages per round at QoS {params['qos']}, from "
             f"{params['publishers']} publisher processes, {params['lines']} lines x "
             f"{params['meters_per_line']} meters; broker {params['broker']}",
             f"each consumer: a fresh process per round, fastest of {params['rounds']} "
             "alternating rounds; CPU = user+system of its process during the flood / "
             "messages; lost and dropped (readings the consumer refused: late, duplicate, "
             "bad): over all rounds, both must be 0"]
    for load_name, _ in LOADS:
        per_peer = {}
        for peer in PEERS:
            rounds = results.get((peer, load_name))
            if not rounds:
                continue
            best, lost = _best(rounds)
            per_peer[peer] = best
            key = f"{peer.replace('-', '_')}_{load_name}"
            figures[f"{key}_msgs_per_s"] = best.run.msgs_per_s
            figures[f"{key}_readings_per_s"] = best.run.readings_per_s
            figures[f"{key}_cpu_s_per_message"] = best.cpu_per_message_s
            figures[f"{key}_peak_rss_bytes"] = max(r.peak_rss for r in rounds)
            figures[f"{key}_lost"] = lost
            figures[f"{key}_dropped"] = sum(r.dropped for r in rounds)
            figures[f"{key}_rounds_msgs_per_s"] = [r.run.msgs_per_s for r in rounds]
            result.row(f"{load_name} QoS {params['qos']} {peer}",
                       f"{best.run.msgs_per_s:,.0f} msg/s, {best.run.readings_per_s:,.0f} "
                       f"readings/s, {best.cpu_per_message_s * 1e6:,.1f} us CPU/msg, "
                       f"{max(r.peak_rss for r in rounds) / 2**20:,.0f} MiB",
                       "1.00" if peer == "wattline" else "",
                       f"lost {lost:,}, dropped {sum(r.dropped for r in rounds):,}")
        if len(per_peer) < 2:
            continue
        ours, theirs = per_peer["wattline"], per_peer["node-red"]
        speed = (ours.run.msgs_per_s / theirs.run.msgs_per_s
                 if theirs.run.msgs_per_s > 0 else None)
        cpu = (ours.cpu_per_message_s / theirs.cpu_per_message_s
               if theirs.cpu_per_message_s > 0 else None)
        figures[f"wattline_over_node_red_{load_name}_msgs_per_s"] = speed
        figures[f"wattline_over_node_red_{load_name}_cpu_per_message"] = cpu
        result.row(f"{load_name} wattline / Node-RED", f"CPU per message {_ratio(cpu)}",
                   _ratio(speed))
        floor, ceiling = TARGETS[load_name]
        met = speed is not None and speed >= floor and (
            ceiling is None or (cpu is not None and cpu <= ceiling))
        figures[f"target_{load_name}_met"] = met
        cpu_target = f" and CPU per message <= {ceiling}x" if ceiling is not None else ""
        notes.append(f"target {load_name}: msg/s >= {floor}x Node-RED{cpu_target}: "
                     f"{'yes' if met else 'NO'} ({_ratio(speed)} msg/s, {_ratio(cpu)} CPU)")
    if params["node_red_skipped"]:
        notes.append(f"Node-RED skipped: {params['node_red_skipped']}")
    figures.update(params)
    result.figures = figures
    result.notes += notes
    return result


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
