"""``wattline bench startup``: from starting ``wattline run`` to its first reading accepted.

The daemon is started as a process of its own (``python -m wattline.ingest run``), on a
broker (a Mosquitto on a free port, or ``mqtt_url``), with ``NUMBA_CACHE_DIR`` pointed at
a fresh temporary folder: its first start finds the compile cache empty, as on a fresh
machine with no ``wattline warmup`` done (**cold**); the starts after it find what the
first compiled (**warm**, as after ``wattline warmup`` at install). From the moment the
process is started, a gateway publishes a reading every ``publish_every_s`` on a line
of its own, and the daemon's ``/metrics`` is polled for when

- ``/metrics`` first answers,
- the MQTT session is up (``wattline_mqtt_connected`` 1): messages are received and
  queued from here on,
- the first reading is accepted by the kernels (``wattline_readings_accepted_total``
  above 0): the figure of the target (at most 5 s).

The daemon's own "kernels ready in" log line gives how long its warm-up thread took.
With ``compare_pythonpath``, every start is also made by the daemon of another source
tree (``PYTHONPATH``, e.g. the tree before a change), cold then warm, in turns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from wattline.benchmarks.ingest import broker_url
from wattline.benchmarks.report import BenchResult, machine
from wattline.ingest.app.broker import free_port
from wattline.ingest.config import MqttUrl, parse_mqtt_url

TARGET_S = 5.0
"""The target: first start with an empty compile cache to first reading accepted."""
_READY = re.compile(r"kernels ready in ([0-9.]+) s")


@dataclass(frozen=True)
class Start:
    """One start of the daemon: seconds from the process's start to each milestone."""

    variant: str
    cache: str  # "cold" or "warm"
    metrics_s: float | None
    connected_s: float | None
    accepted_s: float | None
    warm_up_s: float | None  # the daemon's own "kernels ready in" figure


class Gateway:
    """Publishes one energy reading every ``every_s`` (QoS 1) on its own line until stopped."""

    def __init__(self, url: MqttUrl, prefix: str, every_s: float) -> None:
        self.topic = f"{prefix}/bench/startup-{uuid.uuid4().hex[:8]}/energy/main"
        self._every_s = every_s
        self._stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wattline-bench-startup-{uuid.uuid4().hex[:8]}")
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.connect(url.host, url.port, keepalive=60)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        value = 0.0
        while not self._stop.wait(self._every_s):
            value += 1.0
            payload = json.dumps({"ts": int(time.time() * 1000), "v": value})
            self.client.publish(self.topic, payload, qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("wattline_mqtt_connected", "wattline_readings_accepted_total"):
            if line.startswith(name + " "):
                out[name] = float(line.rsplit(" ", 1)[1])
    return out


def start_once(url_text: str, prefix: str, cache_dir: Path | None, *, variant: str, cache: str,
               pythonpath: str | None, every_s: float, timeout_s: float,
               log_dir: Path) -> Start:
    """Start the daemon, time its milestones, stop it (SIGTERM). ``cache_dir`` None: the
    compile cache this environment uses."""
    port = free_port()
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    log_path = log_dir / f"{variant}-{cache}-{uuid.uuid4().hex[:6]}.log"
    gateway = Gateway(parse_mqtt_url(url_text), prefix, every_s)
    metrics_s = connected_s = accepted_s = None
    with open(log_path, "wb") as log:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "wattline.ingest", "run", "--mqtt-url", url_text, "--qos",
             "1", "--topic-prefix", prefix, "--metrics-port", str(port), "--log-level", "info",
             "--client-id", f"wattline-bench-startup-{uuid.uuid4().hex[:8]}"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = began + timeout_s
            while accepted_s is None and time.perf_counter() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {process.returncode}: "
                                       f"{log_path.read_text(errors='replace')[-600:]}")
                scraped = _scrape(port)
                now = time.perf_counter() - began
                if scraped is not None:
                    metrics_s = now if metrics_s is None else metrics_s
                    if connected_s is None and scraped.get("wattline_mqtt_connected") == 1.0:
                        connected_s = now
                    if scraped.get("wattline_readings_accepted_total", 0.0) > 0:
                        accepted_s = now
                time.sleep(0.02)
        finally:
            gateway.stop()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    ready = _READY.search(log_path.read_text(errors="replace"))
    return Start(variant, cache, metrics_s, connected_s, accepted_s,
                 float(ready.group(1)) if ready else None)


def run_startup_bench(
    *,
    mqtt_url: str | None = None,
    warm_starts: int = 2,
    cold: bool = True,
    compare_pythonpath: str | None = None,
    topic_prefix: str = "factory",
    publish_every_s: float = 0.05,
    timeout_s: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """A cold start (unless ``cold`` is False) then ``warm_starts`` warm ones, each variant
    with a compile cache of its own; see the module doc."""
    if warm_starts < 0 or (warm_starts == 0 and not cold) or publish_every_s <= 0:
        raise ValueError("give at least one start, and a positive publish interval")
    variants = [("this", None)] + ([("other", compare_pythonpath)] if compare_pythonpath
                                   else [])
    caches = (["cold"] if cold else []) + ["warm"] * warm_starts
    base = Path(tempfile.mkdtemp(prefix="wattline-bench-startup-"))
    starts: list[Start] = []
    began = time.perf_counter()
    try:
        with broker_url(mqtt_url) as (url_text, broker_kind):
            # Without a cold start, every start uses this environment's own cache (as
            # `wattline warmup` left it), filled first by one untimed start.
            def cache_of(name: str) -> Path | None:
                return base / f"cache-{name}" if cold else None

            if not cold:
                for name, path in variants:
                    progress(f"{name}: one untimed start, to fill the compile cache ...")
                    start_once(url_text, topic_prefix, None, variant=name,
                               cache="fill", pythonpath=path, every_s=publish_every_s,
                               timeout_s=timeout_s, log_dir=base)
            for cache in caches:
                for name, path in variants:
                    progress(f"{name}, {cache} cache: starting wattline run ...")
                    start = start_once(url_text, topic_prefix, cache_of(name),
                                       variant=name, cache=cache, pythonpath=path,
                                       every_s=publish_every_s, timeout_s=timeout_s,
                                       log_dir=base)
                    starts.append(start)
                    progress(f"  /metrics {_s(start.metrics_s)}, MQTT up {_s(start.connected_s)}"
                             f", first reading accepted {_s(start.accepted_s)}; kernels ready "
                             f"in {_s(start.warm_up_s)} (its log)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    progress(f"done in {time.perf_counter() - began:.0f} s")
    params = {"broker": broker_kind, "warm_starts": warm_starts, "cold": cold,
              "compare_pythonpath": compare_pythonpath, "publish_every_s": publish_every_s,
              **machine()}
    return startup_result(starts, params)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def startup_result(starts: list[Start], params: dict[str, Any]) -> BenchResult:
    """Rows per start, the JSON figures (each start, and the cold/warm figures of ``this``)."""
    result = BenchResult()
    f: dict[str, Any] = {"starts": [vars(s) for s in starts]}
    for variant in sorted({s.variant for s in starts}):
        for cache in ("cold", "warm"):
            mine = [s for s in starts if s.variant == variant and s.cache == cache]
            if not mine:
                continue
            key = f"{variant}_{cache}"
            for what in ("metrics_s", "connected_s", "accepted_s", "warm_up_s"):
                values = [getattr(s, what) for s in mine if getattr(s, what) is not None]
                f[f"{key}_{what}"] = min(values) if values else None
            result.row(f"{variant}, {cache} cache: MQTT up", _s(f[f"{key}_connected_s"]))
            result.row(f"{variant}, {cache} cache: first reading accepted",
                       _s(f[f"{key}_accepted_s"]))
            result.row(f"{variant}, {cache} cache: kernels ready (log)",
                       _s(f[f"{key}_warm_up_s"]))
    cold = f.get("this_cold_accepted_s")
    f["cold_target_met"] = None if cold is None else cold <= TARGET_S
    f.update(params)
    result.figures = f
    result.notes += [
        "from starting the `wattline run` process (import included) to: MQTT session up "
        "(wattline_mqtt_connected 1), first reading accepted by the kernels "
        "(wattline_readings_accepted_total > 0), polled every 20 ms on /metrics, while a "
        f"gateway publishes a reading every {params['publish_every_s']:g} s; warm figures "
        "are the fastest start; 'kernels ready' is the daemon's warm-up thread, from its log",
        "cold = NUMBA_CACHE_DIR a fresh empty folder (a fresh machine without `wattline "
        "warmup`); warm = the same folder again (after `wattline warmup`, or any earlier start)",
    ]
    if cold is not None:
        result.notes.append(f"target: cold start to first reading accepted <= {TARGET_S:g} s: "
                            f"{'yes' if f['cold_target_met'] else 'NO'} ({cold:.1f} s)")
    return result
