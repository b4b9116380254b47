"""A daemon stopped (SIGTERM) and started again with --state-dir writes the same
energy_intensity points as one that ran straight through; without it, it does not."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import KERNEL_ARGS, count_readings, readings_messages, recent_start_ms
from tests.e2e.gateway import close_publisher, connect_publisher, publish_all, wait_until_subscribed
from tests.processes import Mosquitto, Wattline, wait_until
from wattline.ingest.sinks.parquet_store import read_store


def _feed(daemon: Wattline, client: mqtt.Client, site: str,
          messages: list[tuple[str, Any]]) -> None:
    """Publish, then wait until the daemon has decoded every reading."""
    before = daemon.metric_sum("wattline_readings_received_total")
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    publish_all(client, messages, timeout_s=30)
    want = before + count_readings(messages)
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= want,
               timeout_s=60, interval_s=0.2, what=f"{want} readings received")


def _run(make_daemon: Callable[..., Wattline], broker: Mosquitto, site: str,
         parts: list[list[tuple[str, Any]]], store: Path, state_dir: Path | None) -> list[dict]:
    client = connect_publisher(broker.port)
    try:
        for part in parts:
            extra = ["--state-dir", str(state_dir)] if state_dir else []
            daemon = make_daemon(["--mqtt-url", broker.url, "--store", str(store),
                                  *KERNEL_ARGS, *extra])
            _feed(daemon, client, site, part)
            assert daemon.stop() == 0, daemon.log_tail()
    finally:
        close_publisher(client)
    return [{k: v for k, v in row.items() if k != "site"} for row in read_store(store).to_pylist()]


@pytest.mark.e2e
@pytest.mark.parametrize("with_state", [True, False], ids=["with-state-dir", "without"])
def test_a_restart_resumes_the_windows_exactly(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
    with_state: bool,
) -> None:
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    half = len(messages) // 2

    straight = _run(wattline_daemon, make_mosquitto(), site, [messages],
                    tmp_path / "straight", None)
    restarted = _run(wattline_daemon, make_mosquitto(), site,
                     [messages[:half], messages[half:]], tmp_path / "restarted",
                     tmp_path / "state" if with_state else None)

    assert len(straight) > 20
    if with_state:
        assert restarted == straight
        assert (tmp_path / "state" / "checkpoint.json").exists()
    else:
        # Without a checkpoint the second run starts its windows empty: points differ.
        assert restarted != straight


@pytest.mark.e2e
def test_a_daemon_killed_mid_stream_and_restarted_writes_what_an_uninterrupted_one_does(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    """SIGKILL while messages are in flight: what the first daemon acknowledged is in its
    write-ahead log and replayed; what it had not acknowledged the broker sends again
    (persistent session); what came while it was down the broker queued."""
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    third = len(messages) // 3
    straight = _run(wattline_daemon, make_mosquitto(), site, [messages],
                    tmp_path / "straight", None)

    broker = make_mosquitto()
    store = tmp_path / "killed"
    args = ["--mqtt-url", broker.url, "--store", str(store), "--state-dir",
            str(tmp_path / "state"), "--persistent-session", "--client-id", f"wl-{site}",
            "--checkpoint-every", "1s", *KERNEL_ARGS]
    client = connect_publisher(broker.port)
    try:
        first = wattline_daemon(args)
        _feed(first, client, site, messages[:third])
        time.sleep(1.2)  # at least one checkpoint, so the replay starts from one
        publish_all(client, messages[third:2 * third], timeout_s=30)
        first.kill()
        publish_all(client, messages[2 * third:], timeout_s=30)  # queued by the broker

        second = wattline_daemon(args)

        def points() -> list[dict]:
            if not store.exists():
                return []
            return [{k: v for k, v in row.items() if k != "site"}
                    for row in read_store(store).to_pylist()]

        wait_until(lambda: len(points()) >= len(straight), timeout_s=60,
                   what="the restarted daemon catching up")
        time.sleep(1.0)  # anything still arriving would be a surplus point
        assert points() == straight
        assert second.metric_sum("wattline_wal_replayed_messages_total") > 0, (
            "the second daemon should have replayed the first one's log")
        assert "replaying" in second.log_text()
    finally:
        close_publisher(client)
