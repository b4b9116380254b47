"""Known readings in over MQTT, hand-computed energy_intensity points out of VictoriaMetrics.

One line, ``eaf-1``, with an electricity counter (``incomer``) and a production
counter (``ladle-scale``), each read every 2 s for 4 minutes of event time,
starting 20 minutes ago on a multiple of the 10 s tick. The furnace produces
0.25 t per reading for the first 2 minutes and then stands idle while still
drawing power, so both windows (1m, 2m) end in idle ticks. The electricity
register resets once. Two blocks of readings go as a batch and as a columnar
batch, one reading has an RFC 3339 time, the rest go one reading per message.

The expectation is the contract's definition written out plainly (sums of
deltas over ``(T - W, T]``), and ``test_expectation_matches_sums_done_by_hand``
pins it to sums worked out on paper.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, VictoriaMetrics, Wattline, wait_until

TICK_MS = 10_000
STEP_MS = 2_000
LAST_STEP = 120  # readings k = 0..120: 4 minutes of event time
RESET_STEP = 40  # the electricity register restarts from 0 just before this reading
LAST_PRODUCING_STEP = 60  # production deltas at k = 1..60, then the line is idle
BATCH_STEPS = (20, 21, 22)  # sent as [{"ts", "v"}, ...]
COLUMNAR_STEPS = (50, 51, 52)  # sent as {"ts": [...], "v": [...]}
RFC3339_STEP = 30  # the production reading of this step carries an RFC 3339 time
FINAL_OFFSET_MS = LAST_STEP * STEP_MS + 20_000  # moves the watermark past the last checked tick
CHECKED_TICKS_MS = range(TICK_MS, LAST_STEP * STEP_MS + 1, TICK_MS)  # offsets from the start
WINDOWS_MS = {"1m": 60_000, "2m": 120_000}
ELECTRICITY_KGCE_PER_KWH = 0.1229  # reference/energy.yaml, GB/T 2589 equivalent value
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")

LINE = "eaf-1"
ENERGY_METER = "incomer"
PRODUCTION_METER = "ladle-scale"


def electricity_delta(k: int) -> float:
    """kWh drawn between readings k-1 and k: 4, 5 or 6, except the reset reading's 3."""
    return 3.0 if k == RESET_STEP else 4.0 + k % 3


def production_delta(k: int) -> float:
    """Tonnes between readings k-1 and k (exact in binary, so sums are exact)."""
    return 0.25 if k <= LAST_PRODUCING_STEP else 0.0


def electricity_register(k: int) -> float:
    """The counter's reading k: it starts at 1000 kWh and reads 3 kWh right after the reset."""
    if k == 0:
        return 1000.0
    if k == RESET_STEP:
        return electricity_delta(k)  # a decrease without rollover: the delta is the reading
    return electricity_register(k - 1) + electricity_delta(k)


def production_register(k: int) -> float:
    return 250.0 + sum(production_delta(i) for i in range(1, k + 1))


def expected_point(tick_offset_ms: int, window_ms: int) -> dict[str, float]:
    """The contract's energy_intensity fields at one tick (offset from the start) and window."""
    steps = [
        k
        for k in range(1, LAST_STEP + 1)
        if tick_offset_ms - window_ms < k * STEP_MS <= tick_offset_ms
    ]
    kwh = sum(electricity_delta(k) for k in steps)
    tonnes = sum(production_delta(k) for k in steps)
    point = {
        "energy_kgce": kwh * ELECTRICITY_KGCE_PER_KWH,
        "electricity_kwh": kwh,
        "production_t": tonnes,
    }
    if tonnes > 0:
        point["kgce_per_t"] = kwh * ELECTRICITY_KGCE_PER_KWH / tonnes
        point["kwh_per_t"] = kwh / tonnes
    return point


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


def recent_start_ms() -> int:
    """Where a test stream starts: twenty minutes ago, on a tick (well inside the daemon's
    accepted time range, and long enough ago that its last ticks are due)."""
    return (int(time.time() * 1000) - 20 * 60_000) // TICK_MS * TICK_MS


def readings_messages(site: str, start_ms: int) -> list[tuple[str, Any]]:
    """The (topic, JSON payload) messages of the stream, in publishing order."""
    energy = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    production = f"factory/{site}/{LINE}/production/{PRODUCTION_METER}"
    meters = ((energy, electricity_register), (production, production_register))

    def ts(k: int) -> int:
        return start_ms + k * STEP_MS

    messages: list[tuple[str, Any]] = []
    for k in range(LAST_STEP + 1):
        if k in BATCH_STEPS[1:] or k in COLUMNAR_STEPS[1:]:
            continue  # sent with the block's first step
        for topic, register in meters:
            if k == BATCH_STEPS[0]:
                payload: Any = [{"ts": ts(i), "v": register(i)} for i in BATCH_STEPS]
            elif k == COLUMNAR_STEPS[0]:
                payload = {"ts": [ts(i) for i in COLUMNAR_STEPS],
                           "v": [register(i) for i in COLUMNAR_STEPS]}
            elif k == RFC3339_STEP and topic == production:
                when = datetime.fromtimestamp(ts(k) / 1000, tz=UTC).isoformat()
                payload = {"ts": when, "v": register(k)}
            else:
                payload = {"ts": ts(k), "v": register(k)}
            messages.append((topic, payload))
    final = {"ts": start_ms + FINAL_OFFSET_MS, "v": electricity_register(LAST_STEP) + 4.0}
    messages.append((energy, final))
    return messages


def count_readings(messages: list[tuple[str, Any]]) -> int:
    """How many readings these messages carry, whatever their payload form."""
    total = 0
    for _, payload in messages:
        if isinstance(payload, list):
            total += len(payload)
        elif isinstance(payload["ts"], list):
            total += len(payload["ts"])
        else:
            total += 1
    return total


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


def connect_publisher(port: int) -> mqtt.Client:
    """A gateway stand-in: an MQTT 3.1.1 client connected to 127.0.0.1:``port``, looping."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(50)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def close_publisher(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@pytest.fixture()
def publisher(mosquitto_for_e2e: Mosquitto) -> Iterator[mqtt.Client]:
    client = connect_publisher(mosquitto_for_e2e.port)
    yield client
    close_publisher(client)


@pytest.fixture()
def mosquitto_for_e2e(make_mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    return make_mosquitto()


def assert_every_expected_point(victoria: VictoriaMetrics, site: str, start_ms: int) -> None:
    """Every checked tick of the stream is in VictoriaMetrics with the expected values
    (a point written twice must carry the same values both times)."""
    labels = f'site="{site}",line="{LINE}"'
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


def publish_all(client: mqtt.Client, messages: list[tuple[str, Any]], timeout_s: float) -> None:
    infos = [client.publish(topic, json.dumps(payload), qos=1) for topic, payload in messages]
    deadline = time.monotonic() + timeout_s
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "the broker did not acknowledge every reading"


def wait_until_subscribed(
    daemon: Wattline, client: mqtt.Client, site: str, timeout_s: float
) -> None:
    """Publish the meter's (default) meta until the daemon counts a message: it has subscribed.

    The daemon uses a clean session, so anything published before its SUBSCRIBE
    lands would be lost; its connected gauge is set before the broker's SUBACK.
    """
    meta_topic = f"factory/{site}/{LINE}/energy/{ENERGY_METER}/meta"
    meta = json.dumps({"carrier": "electricity", "unit": "kWh", "mode": "counter"})
    deadline = time.monotonic() + timeout_s
    while daemon.metric_sum("wattline_messages_received_total") < 1:
        assert daemon.running, "the daemon exited"
        assert time.monotonic() < deadline, "the daemon never received a message"
        client.publish(meta_topic, meta, qos=1).wait_for_publish(5)
        time.sleep(0.3)


def publish_stream(daemon: Wattline, broker_port: int, site: str,
                   messages: list[tuple[str, Any]]) -> None:
    """As a gateway: once ``daemon`` has subscribed, publish ``messages`` at QoS 1 and
    wait for the broker's acknowledgements."""
    client = connect_publisher(broker_port)
    try:
        wait_until_subscribed(daemon, client, site, timeout_s=30)
        publish_all(client, messages, timeout_s=30)
    finally:
        close_publisher(client)


@pytest.mark.e2e
def test_daemon_writes_hand_computed_intensity_to_victoria(
    mosquitto_for_e2e: Mosquitto,
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    publisher: mqtt.Client,
    site: str,
    tmp_path: Path,
) -> None:
    victoria = make_victoria()
    daemon = wattline_daemon([
        "--mqtt-url", mosquitto_for_e2e.url,
        "--influx-url", victoria.url, "--influx-org", "test", "--influx-bucket", "test",
        "--influx-token", "test",
        "--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s",
        "--store", str(tmp_path / "store"),
    ])
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
