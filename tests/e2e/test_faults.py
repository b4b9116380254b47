"""Fault tests with real processes: the database goes away mid-stream and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    KERNEL_ARGS,
    LINE,
    assert_every_expected_point,
    count_readings,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import close_publisher, connect_publisher, publish_all, wait_until_subscribed
from tests.processes import Mosquitto, Stack, Wattline, wait_until

OUTAGE_S = 30.0


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "held-back"])
def test_a_database_outage_mid_stream_loses_no_point(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
    spool: bool,
) -> None:
    """With a state directory, batches wait in the spool and the pipeline goes on;
    without, the pipeline (and through it the broker) is held back. Neither loses a point."""
    stack = make_stack([
        *KERNEL_ARGS, "--batch-max-messages", "20",
        *(["--state-dir", str(tmp_path / "state")] if spool else []),
    ])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    third = len(messages) // 3
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    publish_all(client, messages[:third], timeout_s=30)
    wait_until(lambda: daemon.metric_sum("wattline_sink_points_written_total") > 0,
               timeout_s=30, what="the first points written")

    victoria.stop()
    outage_started = time.monotonic()
    publish_all(client, messages[third:2 * third], timeout_s=30)
    wait_until(lambda: daemon.metric_sum("wattline_sink_write_retries_total",
                                         {"sink": "influxdb"}) > 0,
               timeout_s=30, what="the daemon noticing the outage")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    assert daemon.running, "the daemon must ride out a database outage"
    victoria.start()
    publish_all(client, messages[2 * third:], timeout_s=30)

    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + CHECKED_TICKS_MS[-1]
    wait_until(
        lambda: last_tick in victoria.samples(
            f'energy_intensity_electricity_kwh{{{labels},window="2m"}}'),
        timeout_s=120, interval_s=1.0, what="the last tick after the outage",
    )
    assert_every_expected_point(victoria, site, start_ms)
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    if spool:
        wait_until(lambda: daemon.metric("wattline_spool_segments") == 0, timeout_s=30)
        assert daemon.metric_sum("wattline_spool_rows_total", {"event": "spooled"}) > 0
        assert daemon.metric_sum("wattline_spool_rows_total", {"event": "dropped"}) == 0


@pytest.mark.e2e
# MQTT 5 is left out here: Mosquitto 2.0.11 (Debian's) intermittently does not queue
# for a resumed MQTT 5 session after its own restart (eclipse-mosquitto/mosquitto#2265);
# MQTT 5 sessions are covered across a daemon restart below.
@pytest.mark.parametrize("protocol", ["3.1.1"])
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "clean"])
def test_a_broker_restart_loses_nothing_with_a_persistent_session(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
    persistent: bool,
    protocol: str,
) -> None:
    broker = make_mosquitto(persistence=True)
    session = ["--persistent-session"] if persistent else ["--clean-session"]
    daemon = wattline_daemon([
        "--mqtt-url", broker.url, "--client-id", f"wattline-{site}", *session,
        "--mqtt-protocol", protocol, *KERNEL_ARGS, "--store", str(tmp_path / "store"),
    ])
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    half = len(messages) // 2
    sent = count_readings(messages)

    client = connect_publisher(broker.port)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    publish_all(client, messages[:half], timeout_s=30)
    close_publisher(client)
    first_half = count_readings(messages[:half])
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= first_half,
               timeout_s=30, what="the first half received")
    time.sleep(1.5)  # past Mosquitto's autosave_interval, so the session is on disk

    broker.restart()
    wait_until(lambda: daemon.metric("wattline_mqtt_connected") == 0.0, timeout_s=10,
               what="the collector noticing the broker restart")
    # Publish straight away, while the collector is still reconnecting with backoff.
    client = connect_publisher(broker.port)
    try:
        publish_all(client, messages[half:], timeout_s=30)
        wait_until(lambda: daemon.metric("wattline_mqtt_connected") == 1.0, timeout_s=60,
                   what="the collector reconnecting")
        if persistent:
            wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") == sent,
                       timeout_s=30, what=f"all {sent} readings")
            assert daemon.metric("wattline_mqtt_connects_total") >= 2
        else:
            # A clean session forgets its subscription: what came meanwhile is lost.
            time.sleep(3)
            assert daemon.metric_sum("wattline_readings_received_total") < sent
    finally:
        close_publisher(client)


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_readings_published_while_the_daemon_is_down_arrive_after_its_restart(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
    protocol: str,
) -> None:
    broker = make_mosquitto()
    args = ["--mqtt-url", broker.url, "--client-id", f"wattline-{site}", "--persistent-session",
            "--mqtt-protocol", protocol, *KERNEL_ARGS, "--store", str(tmp_path / "store"),
            "--state-dir", str(tmp_path / "state")]
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    half = len(messages) // 2
    client = connect_publisher(broker.port)
    try:
        first = wattline_daemon(args)
        wait_until_subscribed(first, client, site, timeout_s=30)
        publish_all(client, messages[:half], timeout_s=30)
        wait_until(lambda: first.metric_sum("wattline_readings_received_total") > 0,
                   timeout_s=30)
        assert first.stop() == 0
        publish_all(client, messages[half:], timeout_s=30)  # nobody is listening now
        second = wattline_daemon(args)
        rest = count_readings(messages[half:])
        wait_until(lambda: second.metric_sum("wattline_readings_received_total") >= rest,
                   timeout_s=30, what=f"the {rest} readings queued by the broker")
    finally:
        close_publisher(client)
