"""A gateway whose clock runs 4 minutes fast, through a real Mosquitto, daemon and
VictoriaMetrics: its readings are accepted and wait, the line's watermark follows the
wall clock, no other reading of the line is dropped as late, every tick written is
exact, and the offset shows on /metrics and once in the log."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import ENERGY_METER, LINE
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

FAST_BY_MS = 4 * 60_000
EMIT_MS = 2_000
WINDOW_MS = 10_000
ARGS = ["--emit-every", "2s", "--windows", "10s,20s", "--allowed-lateness", "5s"]
READINGS = 80  # one every 250 ms or so on each meter: 20 s of wall clock or more
FAST_METER = "aux-feeder"


def window_sum(readings: list[tuple[int, float]], tick_ms: int) -> float:
    """The counter's deltas with ``tick - window < t <= tick`` (the first reading is the
    baseline): what the window must hold."""
    return sum(v - readings[i - 1][1] for i, (t, v) in enumerate(readings)
               if i and tick_ms - WINDOW_MS < t <= tick_ms)


@pytest.mark.e2e
def test_a_meter_clock_four_minutes_fast_loses_no_other_reading_of_its_line(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack(ARGS)
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    good = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    fast = f"factory/{site}/{LINE}/energy/{FAST_METER}"
    publish_all(client, [(f"{fast}/meta", {"carrier": "electricity", "unit": "kWh"})],
                timeout_s=10)
    sent: list[tuple[int, float]] = []
    for k in range(READINGS):
        now_ms = int(time.time() * 1000)
        sent.append((now_ms, 1000.0 + 1.25 * k + (k % 3) * 0.5))
        publish_all(client, [(good, {"ts": now_ms, "v": sent[-1][1]}),
                             (fast, {"ts": now_ms + FAST_BY_MS, "v": 50.0 + 7.0 * k})],
                    timeout_s=10)
        time.sleep(0.25)
    # The last message moved the watermark to about the wall clock then, minus lateness.
    last_due = (sent[-1][0] - 5_000) // EMIT_MS * EMIT_MS
    series = f'energy_intensity_electricity_kwh{{site="{site}",line="{LINE}",window="10s"}}'
    wait_until(lambda: last_due in victoria.samples(series), timeout_s=60,
               what="the line's ticks up to the wall clock")
    dropped = {reason: daemon.metric_sum("wattline_readings_dropped_total", {"reason": reason})
               for reason in ("late", "duplicate", "pending_overflow", "implausible")}
    assert dropped == dict.fromkeys(dropped, 0.0)
    points = victoria.samples(series)
    checked = [t for t in points if t <= last_due]
    assert len(checked) >= 3, (sent[0][0], last_due, sorted(points))
    for tick_ms in checked:
        # The fast meter's readings are stamped after every tick so far: none is in a window.
        assert points[tick_ms] == [pytest.approx(window_sum(sent, tick_ms), abs=1e-9)], tick_ms
    offset = daemon.metric("wattline_line_clock_offset_seconds", {"site": site, "line": LINE})
    assert offset is not None and 200 < offset <= FAST_BY_MS / 1000 + 1
    assert daemon.log_text().count("ahead of this machine's clock") == 1
