"""Known readings in over MQTT, hand-computed energy_intensity points out of VictoriaMetrics.

The stream, its expectation and the daemon settings they assume are in
tests/e2e/eaf_stream.py; ``test_expectation_matches_sums_done_by_hand`` pins the
expectation to sums worked out on paper.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    FIELDS,
    FINAL_OFFSET_MS,
    KERNEL_ARGS,
    LAST_STEP,
    LINE,
    RESET_STEP,
    STEP_MS,
    WINDOWS_MS,
    electricity_register,
    expected_point,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until


def test_expectation_matches_sums_done_by_hand() -> None:
    # k = 1..30: 30 x 4 kWh + ten each of 1, 2, 0 = 150 kWh; 30 x 0.25 t = 7.5 t
    assert expected_point(60_000, 60_000) == pytest.approx(
        {"energy_kgce": 18.435, "electricity_kwh": 150.0, "production_t": 7.5,
         "kgce_per_t": 2.458, "kwh_per_t": 20.0}
    )
    # k = 16..45 holds the reset reading (3 kWh where 5 would be)
    assert expected_point(90_000, 60_000)["electricity_kwh"] == 148.0
    # k = 1..45: 45 x 4 + 15 x 3 - 2 = 223 kWh, 11.25 t
    assert expected_point(90_000, 120_000) == pytest.approx(
        {"energy_kgce": 223 * 0.1229, "electricity_kwh": 223.0, "production_t": 11.25,
         "kgce_per_t": 223 * 0.1229 / 11.25, "kwh_per_t": 223 / 11.25}
    )
    # k = 31..90: production only up to k = 60
    assert expected_point(180_000, 120_000)["production_t"] == 7.5
    assert expected_point(180_000, 120_000)["electricity_kwh"] == 298.0
    # idle: k = 71..100 and k = 61..120 have power but no production, so no intensity
    assert expected_point(200_000, 60_000) == pytest.approx(
        {"energy_kgce": 18.435, "electricity_kwh": 150.0, "production_t": 0.0}
    )
    assert expected_point(240_000, 120_000) == pytest.approx(
        {"energy_kgce": 300 * 0.1229, "electricity_kwh": 300.0, "production_t": 0.0}
    )
    assert electricity_register(RESET_STEP - 1) > electricity_register(RESET_STEP) == 3.0


def test_stream_has_idle_ticks_in_both_windows() -> None:
    for window_ms in WINDOWS_MS.values():
        points = [expected_point(t, window_ms) for t in CHECKED_TICKS_MS]
        assert any("kgce_per_t" not in p for p in points)
        assert any("kgce_per_t" in p for p in points)


def test_stream_messages_cover_every_reading_once() -> None:
    messages = readings_messages("s", 0)
    stamps: dict[str, list[int]] = {}
    for topic, payload in messages:
        rows = payload if isinstance(payload, list) else [payload]
        for row in rows:
            times = row["ts"] if isinstance(row["ts"], list) else [row["ts"]]
            for t in times:
                ms = t if isinstance(t, int) else int(datetime.fromisoformat(t).timestamp() * 1000)
                stamps.setdefault(topic.rsplit("/", 2)[1], []).append(ms)
    every = [k * STEP_MS for k in range(LAST_STEP + 1)]
    assert stamps["production"] == every
    assert stamps["energy"] == [*every, FINAL_OFFSET_MS]


@pytest.mark.e2e
def test_daemon_writes_hand_computed_intensity_to_victoria(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    stack = make_stack([*KERNEL_ARGS, "--store", str(tmp_path / "store")])
    victoria, daemon = stack.victoria, stack.daemon
    publisher = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    wait_until_subscribed(daemon, publisher, site, timeout_s=30)

    messages = readings_messages(site, start_ms)
    publish_all(publisher, messages, timeout_s=30)

    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + CHECKED_TICKS_MS[-1]

    def last_tick_written() -> bool:
        assert daemon.running, "the daemon exited"
        return all(
            last_tick
            in victoria.samples(f'energy_intensity_electricity_kwh{{{labels},window="{w}"}}')
            for w in WINDOWS_MS
        )

    wait_until(last_tick_written, timeout_s=90, interval_s=0.5,
               what=f"the tick at {last_tick} in VictoriaMetrics")

    for window, window_ms in WINDOWS_MS.items():
        written = {
            field: {
                ts - start_ms: values
                for ts, values in victoria.samples(
                    f'energy_intensity_{field}{{{labels},window="{window}"}}'
                ).items()
                if CHECKED_TICKS_MS[0] <= ts - start_ms <= CHECKED_TICKS_MS[-1]
            }
            for field in FIELDS
        }
        for field in FIELDS:
            expected = {
                t: expected_point(t, window_ms)[field]
                for t in CHECKED_TICKS_MS
                if field in expected_point(t, window_ms)
            }
            assert sorted(written[field]) == sorted(expected), (
                f"{field} window={window}: ticks written != ticks expected (offsets in ms)"
            )
            for t, value in expected.items():
                # a point written twice (a replay) must carry the same value
                assert written[field][t] == pytest.approx([value] * len(written[field][t]),
                                                          rel=1e-9), (
                    f"{field} window={window} at tick +{t // 1000}s"
                )

    readings_sent = 2 * (LAST_STEP + 1) + 1
    assert daemon.metric_sum("wattline_readings_received_total") == readings_sent
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    assert daemon.metric_sum("wattline_payload_errors_total") == 0
