"""The plant's calendar: shift, day and month boundaries in a time zone, DST honoured."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from wattline.ingest.calendar import Calendar, parse_shifts

HOUR = 3_600_000


def ms(*args: int) -> int:
    """Epoch ms of a UTC date and time."""
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def period_of(bounds: np.ndarray, t: int) -> tuple[int, int]:
    i = int(np.searchsorted(bounds, t, side="right")) - 1
    return int(bounds[i]), int(bounds[i + 1])


def test_the_day_the_clocks_go_forward_in_berlin_has_23_hours() -> None:
    cal = Calendar("Europe/Berlin")
    _, days, _ = cal(ms(2026, 3, 29, 12), ms(2026, 3, 29, 12))
    start, end = period_of(days, ms(2026, 3, 29, 12))
    assert start == ms(2026, 3, 28, 23)  # local midnight, still +01:00
    assert end - start == 23 * HOUR


def test_the_day_the_clocks_go_back_in_berlin_has_25_hours() -> None:
    cal = Calendar("Europe/Berlin")
    _, days, _ = cal(ms(2026, 10, 25, 12), ms(2026, 10, 25, 12))
    start, end = period_of(days, ms(2026, 10, 25, 12))
    assert start == ms(2026, 10, 24, 22)  # local midnight, still +02:00
    assert end - start == 25 * HOUR


def test_the_shift_holding_the_clock_change_is_an_hour_shorter_or_longer() -> None:
    cal = Calendar("Europe/Berlin")
    shifts, _, _ = cal(ms(2026, 3, 29), ms(2026, 10, 26))
    spring = [period_of(shifts, ms(2026, 3, 29, h)) for h in (0, 8, 16)]
    assert [(e - s) // HOUR for s, e in spring] == [7, 8, 8]
    autumn = [period_of(shifts, ms(2026, 10, 25, h)) for h in (0, 8, 16)]
    assert [(e - s) // HOUR for s, e in autumn] == [9, 8, 8]


def test_a_shift_across_midnight_is_one_shift_and_the_day_still_starts_at_midnight() -> None:
    cal = Calendar("Europe/Berlin", ["06:00", "14:00", "22:00"])
    shifts, days, _ = cal(ms(2026, 1, 15), ms(2026, 1, 16))
    night = period_of(shifts, ms(2026, 1, 15, 23, 30))  # 00:30 local on the 16th
    assert night == (ms(2026, 1, 15, 21), ms(2026, 1, 16, 5))  # 22:00 .. 06:00 local
    assert period_of(days, ms(2026, 1, 15, 23, 30))[0] == ms(2026, 1, 15, 23)


def test_months_end_on_their_last_local_midnight_including_leap_february() -> None:
    cal = Calendar("UTC")
    _, _, months = cal(ms(2028, 2, 10), ms(2028, 2, 10))
    assert period_of(months, ms(2028, 2, 10)) == (ms(2028, 2, 1), ms(2028, 3, 1))
    _, _, months = cal(ms(2026, 12, 31, 23, 59), ms(2027, 1, 1))
    assert period_of(months, ms(2026, 12, 31, 23, 59)) == (ms(2026, 12, 1), ms(2027, 1, 1))
    assert period_of(months, ms(2027, 1, 1)) == (ms(2027, 1, 1), ms(2027, 2, 1))


def test_the_month_holding_the_spring_change_is_an_hour_short() -> None:
    cal = Calendar("Europe/Berlin")
    _, _, months = cal(ms(2026, 3, 15), ms(2026, 3, 15))
    start, end = period_of(months, ms(2026, 3, 15))
    assert (end - start) // HOUR == 31 * 24 - 1


def test_a_shift_at_a_local_time_the_clocks_skip_starts_as_far_after_the_change() -> None:
    cal = Calendar("Europe/Berlin", ["00:00", "02:30"])
    shifts, _, _ = cal(ms(2026, 3, 29), ms(2026, 3, 29))
    # 02:30 does not exist on 29 March; the shift starts at 03:30 CEST = 01:30 UTC.
    assert ms(2026, 3, 29, 1, 30) in shifts.tolist()


def test_boundaries_cover_the_span_asked_for_and_increase() -> None:
    cal = Calendar("America/New_York", ["07:00", "19:00"])
    lo, hi = ms(2026, 3, 1), ms(2026, 11, 30)
    for bounds in cal(lo, hi):
        assert bounds[0] <= lo < hi < bounds[-1]
        assert (np.diff(bounds) > 0).all()


def test_a_span_in_the_same_months_gets_the_same_read_only_arrays_again() -> None:
    """The periods kernel checks and joins a calendar's arrays once while they stay the
    same; they cannot be changed in place, and other months give other arrays."""
    cal = Calendar("Europe/Berlin")
    first = cal(ms(2024, 3, 5), ms(2024, 3, 6))
    again = cal(ms(2024, 3, 20), ms(2024, 3, 21))
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert not any(b.flags.writeable for b in first)
    later = cal(ms(2024, 5, 2), ms(2024, 5, 3))
    assert later[1][0] > first[1][0]
    assert later[1][0] <= ms(2024, 5, 2) < later[1][-1]


def test_an_unknown_time_zone_is_a_one_line_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berlinn'"):
        Calendar("Europe/Berlinn")


@pytest.mark.parametrize("shifts", [[], ["8:00"], ["24:00"], ["06:00", "06:00"], ["noon"]])
def test_shift_starts_must_be_distinct_times_of_day(shifts: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_shifts(shifts)


def test_shift_starts_are_sorted() -> None:
    assert parse_shifts(["22:00", "06:00", "14:00"]) == ((6, 0), (14, 0), (22, 0))
