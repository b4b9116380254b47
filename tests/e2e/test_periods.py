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
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import ENERGY_METER, LINE
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Mosquitto, Stack, VictoriaMetrics, Wattline, wait_until

BERLIN = ZoneInfo("Europe/Berlin")
STEP_MS = 600_000
KWH_PER_STEP = 60.0
T_PER_STEP = 1.0


def _yesterday_midnight_ms() -> int:
    # The stream runs to 02:50 of the day after: before 04:00 in Berlin, the day before
    # yesterday is the newest day whose stream is all in the past.
    now = datetime.now(BERLIN)
    today = (now - timedelta(hours=4)).date()
    local = datetime(today.year, today.month, today.day, tzinfo=BERLIN) - timedelta(days=1)
    # As a wall-clock date, so that a day with a clock change still starts at midnight.
    return int(datetime(local.year, local.month, local.day, tzinfo=BERLIN).timestamp() * 1000)


ARGS = ["--plant-timezone", "Europe/Berlin", "--emit-every", "60s", "--windows", "10m,1h"]


def _day_stream(site: str) -> tuple[int, int, list[tuple[str, Any]]]:
    """(yesterday's local midnight, the next one, the messages) as the module doc says."""
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
    return day, day_end, messages


def _rows(victoria: VictoriaMetrics, site: str, field: str, period: str,
          start: int) -> list[float]:
    """Every value written for one period's field (provisional and final)."""
    return victoria.samples(
        f'energy_period_{field}{{site="{site}",line="{LINE}",period="{period}"}}'
    ).get(start, [])


def _assert_the_day(rows: Callable[[str, str, int], list[float]], day: int,
                    day_end: int) -> None:
    hours = (day_end - day) // 3_600_000  # 23, 24 or 25
    assert rows("final", "day", day).count(1.0) == 1
    assert max(rows("electricity_kwh", "day", day)) == pytest.approx(
        hours * 6 * KWH_PER_STEP, rel=1e-12)
    assert max(rows("production_t", "day", day)) == pytest.approx(hours * 6 * T_PER_STEP)
    assert max(rows("late_readings", "day", day)) == 1.0


def _durable_args(broker: Mosquitto, victoria: VictoriaMetrics, site: str, state_dir: Path,
                  checkpoint_every: str) -> list[str]:
    """A daemon with a state directory and a persistent session, to be killed and restarted."""
    return ["--mqtt-url", broker.url, "--influx-url", victoria.url, "--influx-org", "o",
            "--influx-bucket", "b", "--influx-token", "t", "--state-dir", str(state_dir),
            "--persistent-session", "--client-id", f"wl-{site}",
            "--checkpoint-every", checkpoint_every, *ARGS]


@pytest.mark.e2e
def test_a_replayed_day_gives_its_day_and_shift_totals_final_once_with_the_late_reading(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack(ARGS)
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    day, day_end, messages = _day_stream(site)
    publish_all(client, messages, timeout_s=60)

    def rows(field: str, period: str, start: int) -> list[float]:
        return _rows(victoria, site, field, period, start)

    wait_until(lambda: 1.0 in rows("final", "day", day), timeout_s=60, what="the final day")
    wait_until(lambda: daemon.metric(
        "wattline_readings_dropped_total", {"reason": "period_closed"}) == 1,
        timeout_s=30, what="the reading for the closed day counted")
    _assert_the_day(rows, day, day_end)
    hours = (day_end - day) // 3_600_000
    assert max(rows("energy_kgce", "day", day)) == pytest.approx(
        hours * 6 * KWH_PER_STEP * 0.1229, rel=1e-9)
    assert max(rows("kwh_per_t", "day", day)) == pytest.approx(KWH_PER_STEP / T_PER_STEP)
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


@pytest.mark.e2e
def test_a_daemon_killed_while_the_day_is_open_writes_its_final_day_once_after_restart(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    """SIGKILL at 20:00 of the replayed day: the restarted daemon resumes the open day
    from its checkpoint and write-ahead log, and the day is final once, with the totals
    of the uninterrupted run."""
    broker, victoria = make_mosquitto(), make_victoria()
    args = _durable_args(broker, victoria, site, tmp_path / "s", checkpoint_every="1s")
    day, day_end, messages = _day_stream(site)
    at_20h = next(i for i, (_, p) in enumerate(messages) if p["ts"] >= day_end - 4 * 3_600_000)
    client = make_publisher(broker)
    first = wattline_daemon(args)
    wait_until_subscribed(first, client, site, timeout_s=30)
    publish_all(client, messages[:at_20h // 2], timeout_s=30)
    wait_until(lambda: first.metric_sum("wattline_checkpoints_total") >= 1, timeout_s=30,
               what="a checkpoint")
    publish_all(client, messages[at_20h // 2:at_20h], timeout_s=30)
    first.kill()
    publish_all(client, messages[at_20h:], timeout_s=30)  # queued by the broker
    second = wattline_daemon(args)

    def rows(field: str, period: str, start: int) -> list[float]:
        return _rows(victoria, site, field, period, start)

    wait_until(lambda: 1.0 in rows("final", "day", day), timeout_s=60, what="the final day")
    time.sleep(1.0)  # a second final would come now
    _assert_the_day(rows, day, day_end)
    assert "resumed from checkpoint" in second.log_text()


@pytest.mark.e2e
def test_a_daemon_killed_after_its_final_day_was_written_does_not_write_it_again(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    """SIGKILL just after the day closed (its final point written), long before the next
    periodic checkpoint: the restarted daemon replays its log from the checkpoint taken
    when the day closed, so the final day is written once, and the rest of the stream
    (the next day's readings, the reading for the closed day) is taken as usual."""
    broker, victoria = make_mosquitto(), make_victoria()
    args = _durable_args(broker, victoria, site, tmp_path / "s", checkpoint_every="1h")
    day, day_end, messages = _day_stream(site)
    closes = next(i for i, (_, p) in enumerate(messages)
                  if p["ts"] >= day_end + 2 * 3_600_000 + 2 * STEP_MS)
    client = make_publisher(broker)
    first = wattline_daemon(args)
    wait_until_subscribed(first, client, site, timeout_s=30)
    publish_all(client, messages[:closes + 1], timeout_s=30)

    def rows(field: str, period: str, start: int) -> list[float]:
        return _rows(victoria, site, field, period, start)

    wait_until(lambda: 1.0 in rows("final", "day", day), timeout_s=60, what="the final day")
    first.kill()
    publish_all(client, messages[closes + 1:], timeout_s=30)  # queued by the broker
    second = wattline_daemon(args)
    wait_until(lambda: second.metric(
        "wattline_readings_dropped_total", {"reason": "period_closed"}) == 1,
        timeout_s=60, what="the restarted daemon's last reading (for the closed day)")
    time.sleep(1.0)  # a second final would have come with the replay
    _assert_the_day(rows, day, day_end)
    assert "resumed from checkpoint" in second.log_text()
