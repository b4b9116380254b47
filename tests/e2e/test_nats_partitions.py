"""Two daemons sharing a NATS JetStream stream: gateways publish MQTT into NATS's MQTT
listener, the server's subject mapping puts each line on one of the partitions, each
daemon consumes only the partitions it holds a lease on. Each line's points are written
by exactly one daemon, and together they equal what one daemon alone writes from the
same stream."""

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
from tests.e2e.gateway import close_publisher, connect_publisher, publish_all
from tests.processes import ComponentMissing, NatsServer, Wattline, wait_until
from wattline.contract.topics import TopicTemplate
from wattline.ingest.sinks.parquet_store import read_store
from wattline.ingest.sources.nats_layout import consumer_name, lease_bucket, server_mappings

PARTITIONS = 4
STREAM = "wattline"
LINES = 8


@pytest.fixture()
def nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NatsServer]:
    mappings = server_mappings(TopicTemplate("{prefix}/{site}/{line}/{kind}/{meter}",
                                             prefix="factory"), STREAM, PARTITIONS)
    try:
        server = NatsServer(tmp_path / "nats", mappings=mappings)
    except ComponentMissing as err:
        missing_component(err)
    _track(request, server)
    server.start()
    yield server
    server.stop()


def _nats(server: NatsServer, job: Callable[[Any], Any]) -> Any:
    async def run() -> Any:
        nc = await nats.connect(server.url)
        try:
            return await job(nc.jetstream())
        finally:
            await nc.close()
    return asyncio.run(run())


def _leases(server: NatsServer) -> dict[str, str]:
    async def read(js: Any) -> dict[str, str]:
        kv = await js.key_value(lease_bucket(STREAM))
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        return {k: (await kv.get(k)).value.decode() for k in keys}
    return dict(_nats(server, read))


def _daemon(make: Callable[..., Wattline], server: NatsServer, name: str,
            store: Path) -> Wattline:
    return make(["--source", server.url, "--partitions", str(PARTITIONS), "--lease-ttl", "6s",
                 "--client-id", name, "--store", str(store), *KERNEL_ARGS])


def _rows(store: Path) -> list[dict[str, Any]]:
    if not store.exists():
        return []
    return sorted(read_store(store).to_pylist(), key=lambda r: repr(sorted(r.items())))


@pytest.mark.e2e
def test_two_daemons_share_the_lines_and_write_what_one_daemon_does(
    nats_server: NatsServer,
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
) -> None:
    setup = subprocess.run(
        [sys.executable, "-m", "wattline.ingest", "nats", "setup", "--server", nats_server.url,
         "--partitions", str(PARTITIONS), "--lease-ttl", "6s"],
        capture_output=True, text=True, timeout=30)
    assert setup.returncode == 0, setup.stderr
    assert f"stream {STREAM}: made" in setup.stdout
    assert "{{partition(4,1,2)}}" in setup.stdout

    a = _daemon(wattline_daemon, nats_server, "a", tmp_path / "a")
    b = _daemon(wattline_daemon, nats_server, "b", tmp_path / "b")
    for daemon in (a, b):  # the fair share: half of the partitions each
        wait_until(lambda d=daemon: d.metric("wattline_nats_partitions_owned") == 2,
                   timeout_s=20, interval_s=0.2, what="two partitions held")
    owners = _leases(nats_server)
    by_partition = {int(k.split(".")[1]): v.split("-")[0]
                    for k, v in owners.items() if k.startswith("partition.")}
    assert sorted(by_partition) == list(range(PARTITIONS))

    start_ms = recent_start_ms()
    sites = [f"plant-{i}" for i in range(LINES)]  # fixed: the partitions they hash to too
    messages = [m for s in sites for m in readings_messages(s, start_ms)]
    client = connect_publisher(nats_server.mqtt_port)
    try:
        publish_all(client, messages, timeout_s=30)
    finally:
        close_publisher(client)
    total = count_readings(messages)
    wait_until(lambda: a.metric_sum("wattline_readings_received_total")
               + b.metric_sum("wattline_readings_received_total") >= total,
               timeout_s=30, interval_s=0.2, what=f"{total} readings received by the two")
    for daemon in (a, b):  # both at once, so that neither takes over the other's share
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
    assert a.wait(20) == 0, a.log_tail()
    assert b.wait(20) == 0, b.log_tail()
    assert not [k for k in _leases(nats_server) if k.startswith("partition.")], \
        "a stopped daemon gave up its leases at once"

    # Which partition each line went to, as the stream holds it.
    async def partition_of_sites(js: Any) -> dict[str, int]:
        info = await js.stream_info(STREAM, subjects_filter=f"{STREAM}.*.>")
        return {subject.split(".")[3]: int(subject.split(".")[1])
                for subject in info.state.subjects}
    partition_of = _nats(nats_server, partition_of_sites)
    rows_a, rows_b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert set(partition_of) == set(sites)
    for rows, name in ((rows_a, "a"), (rows_b, "b")):
        wrote = {r["site"] for r in rows}
        assert wrote == {s for s in sites if by_partition[partition_of[s]] == name}
        assert wrote, f"{name} wrote no line"  # these names spread over both halves
    assert not {r["site"] for r in rows_a} & {r["site"] for r in rows_b}

    # One daemon alone, from the start of the same stream.
    async def forget_positions(js: Any) -> None:
        for p in range(PARTITIONS):
            await js.delete_consumer(STREAM, consumer_name(STREAM, p))
    _nats(nats_server, forget_positions)
    alone = _daemon(wattline_daemon, nats_server, "alone", tmp_path / "alone")
    wait_until(lambda: alone.metric_sum("wattline_readings_received_total") >= total,
               timeout_s=30, interval_s=0.2, what=f"{total} readings received by one")
    assert alone.stop() == 0, alone.log_tail()
    rows_alone = _rows(tmp_path / "alone")
    assert len(rows_alone) > 20 * LINES
    assert sorted(rows_a + rows_b, key=lambda r: repr(sorted(r.items()))) == rows_alone
