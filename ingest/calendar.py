"""The plant's calendar: where its shifts, days and months start, as epoch milliseconds.

Days and months start at local midnight in ``plant_timezone`` (an IANA name,
read with zoneinfo), shifts at each of ``shifts`` (local times of day) every
day, so a day is 23 or 25 hours long on the days the clocks change. A local
time that occurs twice (clocks going back) means its first occurrence; one that
does not occur (clocks going forward) means the instant as far after the change
as the time is after the change's start (02:30 on a day that jumps from 02:00 to
03:00 is 03:30). Boundaries that coincide or fall out of order that way are
merged into one sorted set.

A ``Calendar`` is the ``boundaries`` function of ``kernels.periods``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

DEFAULT_SHIFTS = ("00:00", "08:00", "16:00")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                         f"'Europe/Berlin' or 'UTC'") from None


def parse_shifts(shifts: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``["06:00", "14:00", "22:00"]`` as sorted (hour, minute) pairs; ValueError if not
    ``HH:MM`` times, none at all, or one twice."""
    if not shifts:
        raise ValueError("shifts needs at least one start time, such as ['00:00']")
    parsed = []
    for text in shifts:
        match = _HHMM.match(str(text))
        if not match:
            raise ValueError(f"shift start {text!r} is not a time of day HH:MM (00:00 .. 23:59)")
        parsed.append((int(match[1]), int(match[2])))
    if len(set(parsed)) != len(parsed):
        raise ValueError("shifts lists a start time twice")
    return tuple(sorted(parsed))


class Calendar:
    """Period boundaries in one time zone with the given shift starts."""

    def __init__(self, timezone: str = "UTC", shifts: Sequence[str] = DEFAULT_SHIFTS) -> None:
        self.timezone = timezone
        self.zone = zone(timezone)
        self.shifts = parse_shifts(shifts)
        self._month = lru_cache(maxsize=64)(self._month_boundaries)
        self._last: tuple[tuple[int, int, int, int], tuple[np.ndarray, ...]] | None = None

    def _ms(self, day: date, hour: int = 0, minute: int = 0) -> int:
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
        return (local.astimezone(UTC) - _EPOCH) // _MS

    def _month_boundaries(self, year: int, month: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(shift starts, day starts, month start) of one local month."""
        first = date(year, month, 1)
        following = date(year + month // 12, month % 12 + 1, 1)
        days = [first + timedelta(days=k) for k in range((following - first).days)]
        day_starts = np.array([self._ms(d) for d in days], dtype=np.int64)
        shift_starts = np.array([self._ms(d, h, m) for d in days for h, m in self.shifts],
                                dtype=np.int64)
        return shift_starts, day_starts, int(day_starts[0])

    def local_month(self, ms: int) -> tuple[int, int]:
        local = (_EPOCH + ms * _MS).astimezone(self.zone)
        return local.year, local.month

    def __call__(self, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boundaries of each kind (shift, day, month) covering ``lo_ms .. hi_ms``: the
        months around them, one more on each side. The arrays are read-only, and a call
        for the same months as the one before returns that call's arrays (the periods
        kernel then reuses what it made of them)."""
        y, m = self.local_month(int(lo_ms))
        y_hi, m_hi = self.local_month(int(hi_ms))
        key = (y, m, y_hi, m_hi)
        if self._last is not None and self._last[0] == key:
            shifts, days, months = self._last[1]
            return shifts, days, months
        made = self._boundaries(y, m, y_hi, m_hi)
        for b in made:
            b.setflags(write=False)
        self._last = (key, made)
        return made

    def _boundaries(self, y: int, m: int, y_hi: int, m_hi: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        stop = (y_hi + 1, 1) if m_hi == 12 else (y_hi, m_hi + 1)
        shifts, days, months = [], [], []
        while True:
            s, d, start = self._month(y, m)
            shifts.append(s)
            days.append(d)
            months.append(start)
            if (y, m) == stop:
                break
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        nxt = (y + 1, 1) if m == 12 else (y, m + 1)
        end = self._ms(date(nxt[0], nxt[1], 1))
        months.append(end)
        # The shifts of the last month end where the next month's first shift starts.
        first_shift = self._ms(date(nxt[0], nxt[1], 1), *self.shifts[0])
        return (np.unique(np.concatenate([*shifts, [first_shift]])),
                np.concatenate([*days, [end]]),
                np.array(months, dtype=np.int64))
