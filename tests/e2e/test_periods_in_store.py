"""Period rows in the Parquet store, through a real Mosquitto, daemon and InfluxDB 1.6.7.

The replayed Berlin day of test_periods.py (a line with a product, so its day is
graded) goes to InfluxDB and to the store: the final day and shifts that the reports
read from the store (``wattline.ingest.reports.store_periods``) are exactly the
``energy_period`` points InfluxDB holds, every field, one row per period.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import LINE
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.e2e.test_periods import ARGS, _day_stream
from tests.processes import InfluxDB1, Mosquitto, Wattline, wait_until
from wattline.ingest.reports.store_periods import PlantDays, final_periods, periods
from wattline.ingest.sinks.parquet_store import read_periods

DB = "wattline"
BERLIN = ZoneInfo("Europe/Berlin")
KEY = ("site", "line", "period", "time_ms")


def _influx_finals(influx: InfluxDB1, site: str) -> dict[tuple[str, int], dict[str, Any]]:
    rows = influx.query(f"SELECT * FROM energy_period WHERE site = '{site}' AND final = 1 "
                        "GROUP BY *", DB)
    return {(row["period"], row["time"]): row for row in rows}


def _same_point(stored: dict[str, Any], point: dict[str, Any]) -> None:
    """Every field of a store row equals the InfluxDB point's (absent there where null)."""
    for name, value in stored.items():
        if name in KEY:
            continue
        got = point.get(name)
        if name == "final":
            assert got == int(value), name
        else:
            assert got == value, (name, got, value)


@pytest.mark.e2e
def test_the_final_day_and_shifts_in_the_store_are_the_points_influxdb_got(
    make_mosquitto: Callable[..., Mosquitto],
    make_influxdb1: Callable[..., InfluxDB1],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    broker, influx = make_mosquitto(), make_influxdb1(databases=(DB,))
    config = tmp_path / "wattline.toml"
    config.write_text(f'[lines."{site}/{LINE}"]\nproduct = "eaf_steel"\n')
    store = tmp_path / "store"
    daemon = wattline_daemon(["--mqtt-url", broker.url, "--influx-api", "v1", "--influx-url",
                              influx.url, "--influx-db", DB, "--store", str(store),
                              "--config", str(config), *ARGS])
    client = make_publisher(broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    day, day_end, messages = _day_stream(site)
    publish_all(client, messages, timeout_s=60)
    local_day = datetime.fromtimestamp(day / 1000, BERLIN).date()
    days = PlantDays(local_day, local_day, "Europe/Berlin")

    def finals_in_both() -> bool:
        assert daemon.running, "the daemon exited"
        return (("day", day) in _influx_finals(influx, site)
                and final_periods(store, "day", days, site=site).num_rows == 1)

    wait_until(finals_in_both, timeout_s=60, interval_s=0.3, what="the final day in both")
    wait_until(lambda: daemon.metric("wattline_readings_dropped_total",
                                     {"reason": "period_closed"}) == 1,
               timeout_s=30, what="the reading for the closed day counted")
    points = _influx_finals(influx, site)
    (stored_day,) = final_periods(store, "day", days, site=site, line=LINE).to_pylist()
    assert stored_day["time_ms"] == day and stored_day["final"] is True
    assert stored_day["grade"] is not None and stored_day["gap_to_benchmark"] is not None
    assert stored_day["late_readings"] == 1
    _same_point(stored_day, points[("day", day)])
    shifts = final_periods(store, "shift", days, site=site).to_pylist()
    assert [s["time_ms"] for s in shifts] == sorted(t for k, t in points if k == "shift"
                                                   and day <= t < day_end)
    assert len(shifts) == 3
    for shift in shifts:
        _same_point(shift, points[("shift", shift["time_ms"])])
    # One row per period in the store, whatever was rewritten; the next day's first shift
    # is still open there, as in InfluxDB.
    every = read_periods(store, site=site)
    assert every is not None
    keys = list(zip(*(every[name].to_pylist() for name in KEY), strict=True))
    assert len(keys) == len(set(keys))
    next_day = PlantDays(date.fromordinal(local_day.toordinal() + 1),
                         date.fromordinal(local_day.toordinal() + 1), "Europe/Berlin")
    open_shift = periods(store, "shift", next_day, site=site).to_pylist()
    assert open_shift and open_shift[0]["time_ms"] == day_end and not open_shift[0]["final"]
    assert final_periods(store, "shift", next_day, site=site).num_rows == 0
