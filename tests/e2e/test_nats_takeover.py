"""A daemon SIGKILLed while sharing a NATS stream: the other takes its partitions once
their leases age out (measured against the TTL), carries on through a restart of the
NATS server, and writes the killed daemon's lines from then on: no reading published
after the kill is lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import _track, missing_component
from tests.e2e.eaf_stream import KERNEL_ARGS, count_readings, readings_messages, recent_start_ms
from tests.e2e.gateway import publish_once
from tests.processes import ComponentMissing, NatsServer, Wattline, wait_until
from wattline.contract.topics import TopicTemplate
from wattline.ingest.sinks.parquet_store import read_store
from wattline.ingest.sources.nats_layout import server_mappings

PARTITIONS = 4
LEASE_TTL_S = 3.0
SITES = [f"plant-{i}" for i in range(8)]  # fixed names: both halves of the partitions get lines


@pytest.fixture()
def nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NatsServer]:
    mappings = server_mappings(TopicTemplate("{prefix}/{site}/{line}/{kind}/{meter}",
                                             prefix="factory"), "wattline", PARTITIONS)
    try:
        server = NatsServer(tmp_path / "nats", mappings=mappings)
    except ComponentMissing as err:
        missing_component(err)
    _track(request, server)
    server.start()
    yield server
    server.stop()


def _received(daemon: Wattline) -> float:
    return daemon.metric_sum("wattline_readings_received_total")


@pytest.mark.e2e
def test_a_killed_daemons_lines_are_taken_over_within_the_lease_ttl_and_nothing_is_lost(
    nats_server: NatsServer,
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
) -> None:
    def daemon(name: str) -> Wattline:
        return wattline_daemon([
            "--source", nats_server.url, "--partitions", str(PARTITIONS),
            "--lease-ttl", f"{LEASE_TTL_S:g}s", "--client-id", name,
            "--store", str(tmp_path / name), *KERNEL_ARGS])

    a, b = daemon("a"), daemon("b")
    for d in (a, b):
        wait_until(lambda d=d: d.metric("wattline_nats_partitions_owned") == 2,
                   timeout_s=20, interval_s=0.1, what="two partitions held")
    start_ms = recent_start_ms()
    streams = {site: readings_messages(site, start_ms) for site in SITES}
    first = [m for s in SITES for m in streams[s][:len(streams[s]) // 2]]
    second = [m for s in SITES for m in streams[s][len(streams[s]) // 2:]]
    publish_once(nats_server.mqtt_port, first)
    wait_until(lambda: _received(a) + _received(b) >= count_readings(first), timeout_s=30,
               interval_s=0.1, what="the first half received")
    a_lines = {r["site"] for r in read_store(tmp_path / "a").to_pylist()} \
        if (tmp_path / "a").exists() else set()

    a.kill()
    killed = time.monotonic()
    wait_until(lambda: b.metric("wattline_nats_partitions_owned") == PARTITIONS,
               timeout_s=4 * LEASE_TTL_S, interval_s=0.05, what="b holds every partition")
    takeover_s = time.monotonic() - killed
    print(f"take-over after SIGKILL: {takeover_s:.2f} s (lease TTL {LEASE_TTL_S:g} s)")
    # The keys outlive the kill by up to one TTL; b sees them gone at its next round.
    assert takeover_s <= LEASE_TTL_S + LEASE_TTL_S / 3 + 1.0
    assert b.metric("wattline_nats_lease_changes_total", {"change": "acquired"}) == PARTITIONS

    nats_server.stop()  # and back, with its JetStream files
    nats_server.start()
    before = _received(b)
    publish_once(nats_server.mqtt_port, second)
    wait_until(lambda: _received(b) - before >= count_readings(second), timeout_s=30,
               interval_s=0.1, what="the second half received by b")
    assert b.stop() == 0, b.log_tail()

    late_ms = start_ms + 3 * 60_000  # ticks only the second half's readings reach
    b_late = {r["site"] for r in read_store(tmp_path / "b").to_pylist()
              if r["time_ms"] >= late_ms}
    assert a_lines, "a held lines before it was killed"
    assert b_late == set(SITES), "b writes every line after the take-over"
