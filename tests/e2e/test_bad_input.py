"""Bad input through the real broker and daemon: each case is counted under its reason,
logged once per topic, never reaches line protocol, and the good readings around it
still make exactly the expected points (every field, every checked tick).

Among the cases: repeated keys (``{"ts": T, "v": 1000, "v": 5e9}``, in a batch element
and in a meta payload), refused whole as ``duplicate_key``, and values out of range
(``1e300``, ``1e308``, ``-1.7e308``), dropped as ``value_range``, all on the real meter's
topic and stamped inside its stream, so any of them taken would change its points."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    KERNEL_ARGS,
    LINE,
    WINDOWS_MS,
    assert_every_expected_point,
    expected_point,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

MAX_PAYLOAD = 4096


def bad_messages(site: str, start_ms: int) -> tuple[list[tuple[str, bytes]], dict, dict]:
    """(topic, raw payload) cases; the payload errors and reading drops they must cause."""
    good = f"factory/{site}/{LINE}/energy/incomer"
    t = start_ms + 1_000  # inside the stream, on the real meter's topic
    cases = [
        (good, b"{not json"),
        (good, b'{"ts": 1, "v": NaN}'),
        (good, b'{"temperature": 21.5}'),
        (good, b'{"ts": [1, 2, 3], "v": [1.0]}'),
        (good, b""),
        (good, json.dumps({"ts": [t] * 600, "v": [1.0] * 600}).encode()),  # > MAX_PAYLOAD
        (good, json.dumps({"ts": t + 1, "v": "12.5"}).encode()),
        (good, json.dumps({"ts": t + 2, "v": 5.0, "q": "bad"}).encode()),
        (good, json.dumps({"ts": "yesterday", "v": 5.0}).encode()),
        (good, json.dumps({"ts": 4_102_444_800_000, "v": 5.0}).encode()),  # 2100: future
        (good, json.dumps({"ts": 631_152_000_000, "v": 5.0}).encode()),  # 1990: far past
        (good, b'{"ts": %d, "v": 1000, "v": 5e9}' % (t + 3)),  # which v was meant?
        (good, b'[{"ts": %d, "v": 1}, {"ts": %d, "ts": %d, "v": 2}]' % (t + 4, t + 5, t + 6)),
        (good + "/meta", b'{"mode": "counter", "rollover": 1000, "rollover": 1e300}'),
        (good, json.dumps({"ts": t + 7, "v": 1e300}).encode()),
        (good, json.dumps({"ts": [t + 8, t + 9], "v": [1e308, -1.7e308]}).encode()),
        (good, b'{"ts": %d, "v": 1e400}' % (t + 10)),  # not a double at all: not JSON
        (f"factory/{site}/eaf-1 /energy/incomer", b'{"ts": 1, "v": 1}'),  # trailing space
        (f"factory/{site}/../energy/incomer", b'{"ts": 1, "v": 1}'),
        (f"factory/{site}/{'x' * 65}/energy/incomer", b'{"ts": 1, "v": 1}'),
        # (A line break in a topic never gets here: Mosquitto drops a client that sends
        # control characters in a topic. The topic parser still refuses one: test_topics.)
        (f"factory/{site}/{LINE}/water/incomer", b'{"ts": 1, "v": 1}'),
        (good, b"{not json"),  # the same fault again on the same topic: counted, not logged
    ]
    payload_errors = {"invalid_json": 4, "payload_shape": 1, "length_mismatch": 1, "empty": 1,
                      "too_large": 1, "topic_name": 3, "topic_kind": 1, "duplicate_key": 3}
    dropped = {"value_type": 1, "quality": 1, "ts_invalid": 1, "ts_out_of_range": 2,
               "value_range": 3}
    return cases, payload_errors, dropped


@pytest.mark.e2e
def test_bad_input_is_counted_by_reason_and_the_good_readings_still_flow(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack([*KERNEL_ARGS, "--max-payload-bytes", str(MAX_PAYLOAD)])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    good: list[tuple[str, Any]] = readings_messages(site, start_ms)
    cases, payload_errors, dropped = bad_messages(site, start_ms)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    # Bad messages in the middle of the good stream.
    half = len(good) // 2
    publish_all(client, good[:half], timeout_s=30)
    infos = [client.publish(topic, payload, qos=1) for topic, payload in cases]
    for info in infos:
        info.wait_for_publish(10)
    publish_all(client, good[half:], timeout_s=30)

    def counted() -> bool:
        assert daemon.running, "bad input must never stop the collector"
        return daemon.metric_sum("wattline_payload_errors_total") >= sum(
            payload_errors.values())

    wait_until(counted, timeout_s=60, what="every bad message counted")
    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + CHECKED_TICKS_MS[-1]
    wait_until(lambda: last_tick in victoria.samples(
        f'energy_intensity_electricity_kwh{{{labels},window="2m"}}'),
        timeout_s=60, what="the last good tick")

    for reason, n in payload_errors.items():
        assert daemon.metric_sum("wattline_payload_errors_total", {"reason": reason}) == n, \
            reason
    for reason, n in dropped.items():
        assert daemon.metric_sum("wattline_readings_dropped_total", {"reason": reason}) == n, \
            reason

    # The good readings around the bad ones give exactly the hand-computed points.
    assert_every_expected_point(victoria, site, start_ms)
    for window, window_ms in WINDOWS_MS.items():
        written = victoria.samples(f'energy_intensity_electricity_kwh{{{labels},'
                                   f'window="{window}"}}')
        for t in CHECKED_TICKS_MS:
            assert written[start_ms + t] == pytest.approx(
                [expected_point(t, window_ms)["electricity_kwh"]]), (window, t)

    # Nothing but the good line ever became a series.
    series = victoria.export('{__name__=~"energy_intensity_.*"}')
    assert {(s["metric"]["site"], s["metric"]["line"]) for s in series} == {(site, LINE)}

    # Logged once per topic and reason, however often it happens.
    log = daemon.log_text()
    good_topic = f"factory/{site}/{LINE}/energy/incomer"
    assert sum(good_topic in line and "invalid_json" in line
               for line in log.splitlines()) == 1
