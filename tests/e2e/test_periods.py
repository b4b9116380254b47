"""Shift and day totals through a real Mosquitto, daemon and VictoriaMetrics.

Yesterday (in Europe/Berlin) is replayed as a gateway would send it after an
outage: an electricity counter and a production counter every 10 minutes from
just before local midnight to 02:50 the next day, one production reading of
23:50 held back until after the next 00:30 (late for the live ticks, inside the
day's two hours of grace), and at the end a reading for 10:05 yesterday (older
than the grace: the day is closed for it). The day and its shifts must hold the
hand-computed totals, each written final exactly once, the late reading counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import ENERGY_METER, LINE
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

BERLIN = ZoneInfo("Europe/Berlin")
STEP_MS = 600_000
KWH_PER_STEP = 60.0
T_PER_STEP = 1.0


def _yesterday_midnight_ms() -> int:
    today = datetime.now(BERLIN).date()
    local = datetime(today.year, today.month, today.day, tzinfo=BERLIN) - timedelta(days=1)
    # As a wall-clock date, so that a day with a clock change still starts at midnight.
    return int(datetime(local.year, local.month, local.day, tzinfo=BERLIN).timestamp() * 1000)


@pytest.mark.e2e
def test_a_replayed_day_gives_its_day_and_shift_totals_final_once_with_the_late_reading(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack(["--plant-timezone", "Europe/Berlin", "--emit-every", "60s",
                        "--windows", "10m,1h"])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    day = _yesterday_midnight_ms()
    day_end = int((datetime.fromtimestamp(day / 1000, BERLIN) + timedelta(days=1))
                  .replace(hour=0).timestamp() * 1000)
    base = f"factory/{site}/{LINE}"
    held_ts = day_end - STEP_MS  # 23:50
    held, messages = None, []
    for k in range(-1, (day_end - day) // STEP_MS + 18):  # 23:50 the day before .. 02:50
        ts = day + k * STEP_MS
        production = (f"{base}/production/caster", {"ts": ts, "v": 10.0 + T_PER_STEP * k})
        messages.append((f"{base}/energy/{ENERGY_METER}",
                         {"ts": ts, "v": 1000.0 + KWH_PER_STEP * k}))
        if ts == held_ts:
            held = production
        else:
            messages.append(production)
        if ts == day_end + 3 * STEP_MS and held is not None:  # after 00:30 the next day
            messages.append(held)
    messages.append((f"{base}/production/caster", {"ts": day + 60 * STEP_MS + 300_000,
                                                   "v": 70.5}))  # 10:05 yesterday
    publish_all(client, messages, timeout_s=60)

    def rows(field: str, period: str, start: int) -> list[float]:
        return victoria.samples(
            f'energy_period_{field}{{site="{site}",line="{LINE}",period="{period}"}}'
        ).get(start, [])

    wait_until(lambda: 1.0 in rows("final", "day", day), timeout_s=60, what="the final day")
    wait_until(lambda: daemon.metric(
        "wattline_readings_dropped_total", {"reason": "period_closed"}) == 1,
        timeout_s=30, what="the reading for the closed day counted")
    hours = (day_end - day) // 3_600_000  # 23, 24 or 25
    assert rows("final", "day", day).count(1.0) == 1
    assert max(rows("electricity_kwh", "day", day)) == pytest.approx(
        hours * 6 * KWH_PER_STEP, rel=1e-12)
    assert max(rows("production_t", "day", day)) == pytest.approx(hours * 6 * T_PER_STEP)
    assert max(rows("energy_kgce", "day", day)) == pytest.approx(
        hours * 6 * KWH_PER_STEP * 0.1229, rel=1e-9)
    assert max(rows("kwh_per_t", "day", day)) == pytest.approx(KWH_PER_STEP / T_PER_STEP)
    assert max(rows("late_readings", "day", day)) == 1.0
    # The shifts of 08:00 and 16:00 local are 8 h whatever the date.
    for hour in (8, 16):
        start = int(datetime.fromtimestamp(day / 1000, BERLIN).replace(hour=hour)
                    .timestamp() * 1000)
        assert rows("final", "shift", start).count(1.0) == 1, hour
        assert max(rows("electricity_kwh", "shift", start)) == pytest.approx(48 * 60.0)
        assert max(rows("production_t", "shift", start)) == pytest.approx(48.0)
    # The 00:00 shift of the next day is still open (its end is hours away in the stream).
    next_shift = rows("final", "shift", day_end)
    assert next_shift and 1.0 not in next_shift
    assert time.time() * 1000 > day_end  # the replayed day is over
