"""Fault tests with real processes: the database goes away mid-stream and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, VictoriaMetrics, Wattline, wait_until
from tests.test_e2e_pipeline import (
    CHECKED_TICKS_MS,
    FIELDS,
    LINE,
    TICK_MS,
    WINDOWS_MS,
    expected_point,
    publish_all,
    readings_messages,
    wait_until_subscribed,
)

OUTAGE_S = 30.0


@pytest.mark.e2e
@pytest.mark.slow
def test_a_database_outage_mid_stream_loses_no_point(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    broker = make_mosquitto()
    victoria = make_victoria()
    daemon = wattline_daemon([
        "--mqtt-url", broker.url, "--influx-url", victoria.url, "--influx-org", "o",
        "--influx-bucket", "b", "--influx-token", "t", "--emit-every", "10s",
        "--windows", "1m,2m", "--allowed-lateness", "5s", "--batch-max-messages", "20",
    ])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        start_ms = (int(time.time() * 1000) - 20 * 60_000) // TICK_MS * TICK_MS
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
        for window, window_ms in WINDOWS_MS.items():
            for field in FIELDS:
                written = {ts - start_ms: values for ts, values in victoria.samples(
                    f'energy_intensity_{field}{{{labels},window="{window}"}}').items()
                    if CHECKED_TICKS_MS[0] <= ts - start_ms <= CHECKED_TICKS_MS[-1]}
                expected = {t: expected_point(t, window_ms)[field] for t in CHECKED_TICKS_MS
                            if field in expected_point(t, window_ms)}
                assert sorted(written) == sorted(expected), f"{field} {window}: ticks missing"
                for t, value in expected.items():
                    assert written[t] == pytest.approx([value] * len(written[t]), rel=1e-9)
        assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    finally:
        client.disconnect()
        client.loop_stop()
