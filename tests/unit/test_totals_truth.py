"""The simulators' truth per batch and per period, on streams small enough to check by hand."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wattline.simulators.totals_truth import expected_batches, expected_periods
from wattline.simulators.truth import MeterSeries

BERLIN = ZoneInfo("Europe/Berlin")
H = 3_600_000


def _local_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=BERLIN).timestamp() * 1000)


def _line(power: list[tuple[int, float]], tonnes: list[tuple[int, float]]) -> list[MeterSeries]:
    return [MeterSeries("s", "l", "energy", "power", "electricity", "kWh", "counter", None,
                        tuple(power)),
            MeterSeries("s", "l", "production", "ladle", None, "t", "delta", None,
                        tuple(tonnes))]


def test_each_tap_closes_a_batch_with_the_energy_since_the_previous_one() -> None:
    power = [(0, 100.0), (10, 150.0), (20, 175.0), (30, 180.0), (40, 200.0)]
    tonnes = [(5, 0.0), (20, 50.0), (30, 0.0), (40, 40.0)]
    first, second = expected_batches(_line(power, tonnes))
    assert (first.start_ms, first.close_ms, first.electricity_kwh, first.production_t) == (
        0, 20, 75.0, 50.0)
    assert (second.start_ms, second.close_ms, second.electricity_kwh) == (20, 40, 25.0)
    assert second.kwh_per_t == 25.0 / 40.0 and second.duration_s == 0.02
    assert first.energy_kgce == pytest.approx(75.0 * 0.1229)


def test_the_day_clocks_go_forward_has_23_hours_and_its_first_shift_7() -> None:
    day = _local_ms(2026, 3, 29)
    power = [(day + k * H, 10.0 * k) for k in range(0, 24)]  # 23 h later it is the next day
    periods = {(p.period, p.start_ms): p for p in expected_periods(
        _line(power, []), timezone="Europe/Berlin")}
    assert periods[("day", day)].end_ms - day == 23 * H
    assert periods[("day", day)].electricity_kwh == 10.0 * 22  # deltas at 01:00 .. 23:00
    assert periods[("shift", day)].end_ms == _local_ms(2026, 3, 29, 8) == day + 7 * H
    assert periods[("shift", day)].electricity_kwh == 10.0 * 6
    assert periods[("month", _local_ms(2026, 3, 1))].electricity_kwh == 10.0 * 23
    assert periods[("day", day)].kwh_per_t is None  # nothing produced


def test_a_batch_carries_scope_1_and_scope_2_co2_with_an_export_subtracted() -> None:
    """Coal burnt (scope 1), electricity at a grid factor given here, heat sent out (scope
    2, negative): worked out by hand from the reference factors."""
    coal = MeterSeries("s", "l", "energy", "coal", "raw_coal", "kg", "counter", None,
                       ((0, 0.0), (20, 300.0)))
    heat = MeterSeries("s", "l", "energy", "heat-out", "heat", "MJ", "counter", None,
                       ((0, 0.0), (20, 400.0)), direction="export")
    (batch,) = expected_batches([*_line([(0, 0.0), (20, 1000.0)], [(20, 2.0)]), coal, heat],
                                grid_kgco2_per_kwh=0.5703)
    assert batch.co2_direct_t == pytest.approx(300 * 0.001978, rel=1e-12)
    assert batch.co2_indirect_t == pytest.approx(1000 * 0.5703 / 1000 - 400 * 0.00011,
                                                 rel=1e-12)
    assert batch.co2_per_t == pytest.approx(
        (batch.co2_direct_t + batch.co2_indirect_t) / 2.0, rel=1e-12)
    assert batch.energy_kgce == pytest.approx(1000 * 0.1229 + 300 * 0.7143 - 400 * 0.03412,
                                              rel=1e-12)
