"""Intake never waits on the database: through a real Mosquitto and a real VictoriaMetrics
behind a proxy that delays every answer 8 s, or takes connections and never answers,
the daemon takes messages as fast as with a healthy database (the spool takes the
batches meanwhile), and once the database is back every point arrives, exact.

The rate is measured on the same load in the same test, healthy and faulty in
alternating rounds (the spool emptied before each healthy one), and the median rate of
each compared, so that one round slowed or sped by load from elsewhere does not decide:
the daemon is paused (SIGSTOP) while a block of messages is published, so the broker
holds them all, then resumed; the rate is the block's size over the time until its
last message is counted on /metrics (``wattline_messages_received_total``).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.gateway import close_publisher, connect_publisher, publish_all, wait_until_subscribed
from tests.processes import Mosquitto, VictoriaMetrics, Wattline, wait_until
from wattline.ingest.sinks.parquet_store import read_store

LINES = 20
STEP_MS = 10_000
BLOCK = 15_000  # messages per measured block: 3-8 s of intake on a busy 2-core machine
ROUNDS = 3  # healthy and faulty blocks, alternately: the medians are compared
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")
# The proxy's delay is inside --influx-timeout: the writes succeed, slowly.
DAEMON_ARGS = ["--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s",
               "--influx-timeout", "10s", "--influx-health-timeout", "2s",
               "--batch-max-messages", "200"]


def _messages(site: str, start_ms: int, first_step: int, n: int) -> list[tuple[str, Any]]:
    """``n`` messages from step ``first_step`` on: every line's two counters read every
    10 s of plant time, in time order, so (nearly) every batch makes ticks."""
    out: list[tuple[str, Any]] = []
    step = first_step
    while len(out) < n:
        ts = start_ms + step * STEP_MS
        for line in range(LINES):
            base = f"factory/{site}/kiln-{line}"
            out.append((f"{base}/energy/incomer", {"ts": ts, "v": 1000.0 + 5.0 * step}))
            out.append((f"{base}/production/scale", {"ts": ts, "v": 100.0 + 0.25 * step}))
        step += 1
    return out[:n]


def _received(daemon: Wattline) -> float:
    return daemon.metric_sum("wattline_messages_received_total")


def _intake_rate(daemon: Wattline, client: mqtt.Client, block: list[tuple[str, Any]]) -> float:
    """Messages per second the daemon takes from a broker holding ``block`` for it."""
    before = _received(daemon)
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        publish_all(client, block, timeout_s=60)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    started = time.monotonic()
    wait_until(lambda: _received(daemon) >= before + len(block), timeout_s=60,
               interval_s=0.05, what="the block taken in")
    return len(block) / (time.monotonic() - started)


@pytest.fixture()
def proxied_stack(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
) -> Iterator[tuple[Mosquitto, VictoriaMetrics, FaultProxy, Wattline]]:
    broker = make_mosquitto()
    victoria = make_victoria()
    proxy = FaultProxy(victoria.port, delay_s=8.0)
    daemon = wattline_daemon([
        "--mqtt-url", broker.url, "--influx-url", proxy.url, "--influx-org", "o",
        "--influx-bucket", "b", "--influx-token", "t", "--state-dir", str(tmp_path / "state"),
        "--store", str(tmp_path / "store"), *DAEMON_ARGS])
    yield broker, victoria, proxy, daemon
    proxy.close()


def _assert_every_point_in_victoria(victoria: VictoriaMetrics, site: str, store: Path) -> None:
    """VictoriaMetrics holds exactly the points of the Parquet store (written on the
    pipeline thread, so it has every one): same ticks, same values; a point written
    twice carries the same values both times."""
    want: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in read_store(store, site=site).to_pylist():
        for field in FIELDS:
            if row[field] is not None:
                want.setdefault((field, row["line"], row["window"]), {})[row["time_ms"]] = \
                    row[field]
    assert want
    for field in FIELDS:
        got: dict[tuple[str, str, str], dict[int, list[float]]] = {}
        for series in victoria.export(f'energy_intensity_{field}{{site="{site}"}}'):
            key = (field, series["metric"]["line"], series["metric"]["window"])
            by_time = got.setdefault(key, {})
            for ts, value in zip(series["timestamps"], series["values"], strict=True):
                by_time.setdefault(int(ts), []).append(float(value))
        for key, points in want.items():
            if key[0] != field:
                continue
            assert sorted(got.get(key, {})) == sorted(points), f"{key}: ticks differ"
            for ts, value in points.items():
                values = got[key][ts]
                assert values == pytest.approx([value] * len(values), rel=1e-12), (key, ts)


@pytest.mark.e2e
@pytest.mark.parametrize("fault", ["delay", "hang"])
def test_intake_keeps_its_rate_while_the_database_is_slow_or_hangs_and_loses_nothing(
    proxied_stack: tuple[Mosquitto, VictoriaMetrics, FaultProxy, Wattline],
    site: str,
    tmp_path: Path,
    fault: str,
) -> None:
    broker, victoria, proxy, daemon = proxied_stack
    start_ms = (int(time.time() * 1000) - 6 * 3_600_000) // STEP_MS * STEP_MS
    steps_per_block = BLOCK // (2 * LINES)
    blocks = [_messages(site, start_ms, i * steps_per_block, BLOCK) for i in range(2 * ROUNDS)]
    tail = _messages(site, start_ms, 2 * ROUNDS * steps_per_block, 2_000)  # database back
    client = connect_publisher(broker.port)
    try:
        wait_until_subscribed(daemon, client, site, timeout_s=30)
        warm = _messages(site, start_ms - 100 * STEP_MS, 0, 2 * LINES * 50)
        publish_all(client, warm, timeout_s=30)  # first batches, connections, caches
        healthy: list[float] = []
        faulty: list[float] = []
        for round_ in range(ROUNDS):
            proxy.set_mode("pass")
            wait_until(lambda: not daemon.metric("wattline_spool_segments"), timeout_s=60,
                       interval_s=0.5, what="the spool emptied before a healthy round")
            healthy.append(_intake_rate(daemon, client, blocks[2 * round_]))
            proxy.set_mode(fault)
            faulty.append(_intake_rate(daemon, client, blocks[2 * round_ + 1]))
            assert (daemon.metric("wattline_spool_segments") or 0) > 0, \
                "the spool took the batches"
        ratio = statistics.median(faulty) / statistics.median(healthy)
        print(f"\nintake: healthy {healthy}/s, {fault} {faulty}/s, median over median "
              f"{ratio:.2f}")
        # Not above: a database that takes no writes leaves the daemon (and this machine)
        # the CPU that encoding and sending them cost, so the fault's rate is often higher.
        # Not 0.9 either: on a busy 2-core machine one faulty round was seen 30 % slower
        # (CI, median ratio 0.86) while the writer re-sent spooled batches. An intake that
        # waited on the database would take one 200-message batch per 8 s answer, about
        # 25 msg/s against some 3000 healthy, so 0.6 still tells the two apart by far.
        assert ratio >= 0.6, f"intake {faulty} msg/s with a {fault} database, " \
                             f"{healthy} msg/s healthy"

        proxy.set_mode("pass")  # the database is back
        publish_all(client, tail, timeout_s=30)
    finally:
        close_publisher(client)
    total = len(warm) + 2 * ROUNDS * BLOCK + len(tail)
    wait_until(lambda: _received(daemon) >= total, timeout_s=30, what="every message taken")
    wait_until(lambda: daemon.metric("wattline_spool_segments") == 0, timeout_s=40,
               interval_s=0.5, what="the spool delivered")
    assert daemon.stop() == 0
    _assert_every_point_in_victoria(victoria, site, tmp_path / "store")
    assert "Traceback" not in daemon.log_text()


@pytest.mark.e2e
def test_sigterm_while_the_database_hangs_spools_what_the_writer_holds_and_loses_nothing(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    broker, victoria = make_mosquitto(), make_victoria()
    proxy = FaultProxy(victoria.port)
    args = ["--mqtt-url", broker.url, "--influx-url", proxy.url, "--influx-org", "o",
            "--influx-bucket", "b", "--influx-token", "t", "--state-dir",
            str(tmp_path / "state"), "--store", str(tmp_path / "store"), *DAEMON_ARGS]
    try:
        daemon = wattline_daemon(args)
        client = connect_publisher(broker.port)
        try:
            wait_until_subscribed(daemon, client, site, timeout_s=30)
            proxy.set_mode("hang")
            start_ms = (int(time.time() * 1000) - 3_600_000) // STEP_MS * STEP_MS
            messages = _messages(site, start_ms, 0, 2_000)
            publish_all(client, messages, timeout_s=30)
        finally:
            close_publisher(client)
        wait_until(lambda: _received(daemon) >= len(messages), timeout_s=30,
                   what="every message taken")
        assert daemon.stop() == 0  # within the runner's 10 s, with a write hanging
        assert list((tmp_path / "state" / "spool").glob("seg-*.arrow")), "nothing spooled?"

        proxy.set_mode("pass")
        again = wattline_daemon(args)
        wait_until(lambda: again.metric("wattline_spool_segments") == 0, timeout_s=30,
                   interval_s=0.5, what="the spool delivered after the restart")
        assert again.stop() == 0
    finally:
        proxy.close()
    _assert_every_point_in_victoria(victoria, site, tmp_path / "store")
