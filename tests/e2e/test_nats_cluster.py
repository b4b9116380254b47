"""Two daemons on a 3-server NATS cluster with a 3-replica stream: gateways publish MQTT
into one server, the daemons are connected to the other two, and the server one daemon
is connected to is stopped mid-stream. Every reading still arrives, and the two
together write exactly what one daemon alone writes from the same stream."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.conftest import _track, missing_component
from tests.e2e.eaf_stream import KERNEL_ARGS, count_readings, readings_messages, recent_start_ms
from tests.e2e.gateway import publish_once
from tests.processes import ComponentMissing, NatsServer, Wattline, free_port, wait_until
from wattline.contract.topics import TopicTemplate
from wattline.ingest.sinks.parquet_store import read_store
from wattline.ingest.sources.nats_layout import consumer_name, server_mappings

PARTITIONS = 4
STREAM = "wattline"
SITES = [f"plant-{i}" for i in range(8)]


@pytest.fixture()
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[NatsServer]]:
    mappings = server_mappings(TopicTemplate("{prefix}/{site}/{line}/{kind}/{meter}",
                                             prefix="factory"), STREAM, PARTITIONS)
    routes = [free_port() for _ in range(3)]
    try:
        servers = [NatsServer(tmp_path / f"nats{i}", mappings=mappings, cluster_port=port,
                              routes=routes) for i, port in enumerate(routes)]
    except ComponentMissing as err:
        missing_component(err)
    for server in servers:
        _track(request, server)
        server.start()
    yield servers
    for server in servers:
        server.stop()


def _rows(store: Path) -> list[dict[str, Any]]:
    if not store.exists():
        return []
    return sorted(read_store(store).to_pylist(), key=lambda r: repr(sorted(r.items())))


def _setup(server: NatsServer) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "wattline.ingest", "nats", "setup", "--server", server.url,
         "--partitions", str(PARTITIONS), "--lease-ttl", "6s", "--replicas", "3"],
        capture_output=True, text=True, timeout=30)
    return done.returncode == 0


@pytest.mark.e2e
@pytest.mark.slow  # about 65 s here: a 3-server cluster, three daemons, a server stopped
def test_a_server_stopped_mid_stream_loses_nothing_and_the_split_equals_one_daemon(
    cluster: list[NatsServer],
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
) -> None:
    # The cluster elects its JetStream leader a moment after the servers answer.
    wait_until(lambda: _setup(cluster[0]), timeout_s=30, interval_s=1.0,
               what="the stream and bucket made with 3 replicas")

    def daemon(name: str, server: NatsServer) -> Wattline:
        return wattline_daemon([
            "--source", server.url, "--partitions", str(PARTITIONS), "--lease-ttl", "6s",
            "--client-id", name, "--store", str(tmp_path / name), *KERNEL_ARGS])

    a, b = daemon("a", cluster[0]), daemon("b", cluster[1])
    for d in (a, b):
        wait_until(lambda d=d: d.metric("wattline_nats_partitions_owned") == 2,
                   timeout_s=30, interval_s=0.1, what="two partitions held")
    start_ms = recent_start_ms()
    streams = {site: readings_messages(site, start_ms) for site in SITES}
    first = [m for s in SITES for m in streams[s][:len(streams[s]) // 2]]
    second = [m for s in SITES for m in streams[s][len(streams[s]) // 2:]]
    publish_once(cluster[2].mqtt_port, first)
    cluster[0].stop()  # a's server: a goes on through another one of the cluster
    publish_once(cluster[2].mqtt_port, second)
    total = count_readings(first) + count_readings(second)
    wait_until(lambda: a.metric_sum("wattline_readings_received_total")
               + b.metric_sum("wattline_readings_received_total") >= total,
               timeout_s=40, interval_s=0.2, what=f"{total} readings received by the two")
    for d in (a, b):
        assert d.process is not None
        d.process.send_signal(signal.SIGTERM)
    assert a.wait(20) == 0, a.log_tail()
    assert b.wait(20) == 0, b.log_tail()
    rows_a, rows_b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert rows_a and rows_b
    assert not {r["site"] for r in rows_a} & {r["site"] for r in rows_b}

    async def forget_positions() -> None:
        nc = await nats.connect(cluster[1].url)
        try:
            js = nc.jetstream(timeout=20)
            for p in range(PARTITIONS):
                await js.delete_consumer(STREAM, consumer_name(STREAM, p))
        finally:
            await nc.close()
    asyncio.run(forget_positions())
    alone = daemon("alone", cluster[2])
    wait_until(lambda: alone.metric_sum("wattline_readings_received_total") >= total,
               timeout_s=40, interval_s=0.2, what=f"{total} readings received by one")
    assert alone.stop() == 0, alone.log_tail()
    rows_alone = _rows(tmp_path / "alone")
    assert len(rows_alone) > 20 * len(SITES)
    assert sorted(rows_a + rows_b, key=lambda r: repr(sorted(r.items()))) == rows_alone
