"""Ground truth per batch and per period (shift, day, month), from what gateways published.

Plain Python over the published readings and the meters' descriptions, like
``truth.expected_intensity`` and with its deltas (``truth.meter_deltas``), none of
the collector's code: the contract's sections on batches and periods, word for word.

Batches (docs/semantics.md, Batches), per line: every production delta above zero
closes a batch at its time; the batch holds the energy deltas with
``previous close < t <= close`` and, as production, that delta. The first batch
starts at the line's first reading (of any meter), each later one at the previous
close. Two production deltas at one time close two batches, the second without
energy.

Periods (docs/semantics.md, Periods), per line: the deltas with ``start <= t < end``
of each shift, day and month of the plant's calendar, whose boundaries are local
times in ``timezone`` (a day with a clock change has 23 or 25 hours). Sums are kept
as exact fractions and rounded once. Both carry their CO2 as the windows do
(``truth.meter_carbon``: scope 1 direct, scope 2 indirect, exports negative).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

from wattline.contract.reference_data import Carrier, load_reference
from wattline.simulators.truth import (
    MeterSeries,
    meter_carbon,
    meter_deltas,
    meter_factors,
    national_grid_factor,
)

__all__ = ["BatchTruth", "PeriodTruth", "expected_batches", "expected_periods"]


@dataclass(frozen=True, slots=True)
class BatchTruth:
    """One batch as the collector should write it (``energy_batch``)."""

    site: str
    line: str
    close_ms: int
    start_ms: int
    energy_kgce: float
    electricity_kwh: float
    production_t: float
    kgce_per_t: float | None
    kwh_per_t: float | None
    co2_direct_t: float = 0.0
    co2_indirect_t: float = 0.0
    co2_per_t: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.close_ms - self.start_ms) / 1000


@dataclass(frozen=True, slots=True)
class PeriodTruth:
    """One line's shift, day or month (``energy_period``), start and end in epoch ms."""

    site: str
    line: str
    period: str  # shift, day or month
    start_ms: int
    end_ms: int
    energy_kgce: float
    electricity_kwh: float
    production_t: float
    kgce_per_t: float | None
    kwh_per_t: float | None
    co2_direct_t: float = 0.0
    co2_indirect_t: float = 0.0
    co2_per_t: float | None = None


def _by_line(series: Iterable[MeterSeries]) -> dict[tuple[str, str], list[MeterSeries]]:
    lines: dict[tuple[str, str], list[MeterSeries]] = {}
    for s in series:
        lines.setdefault((s.site, s.line), []).append(s)
    return lines


def _ratio(x: Fraction, tonnes: Fraction) -> float | None:
    return float(x) / float(tonnes) if tonnes > 0 else None


def expected_batches(series: Iterable[MeterSeries],
                     carriers: dict[str, Carrier] | None = None,
                     grid_kgco2_per_kwh: float | None = None) -> list[BatchTruth]:
    """Every batch of every line, by line (as first seen), then close."""
    carriers = carriers or load_reference().carriers
    grid = national_grid_factor() if grid_kgco2_per_kwh is None else grid_kgco2_per_kwh
    out: list[BatchTruth] = []
    for (site, line), meters in _by_line(series).items():
        first = min((ts for s in meters for ts, _ in s.readings), default=None)
        if first is None:
            continue
        energy: list[tuple[int, float, float, float, float]] = []  # (ts, kgce, kWh, CO2 x2)
        closes: list[tuple[int, float]] = []
        for s in meters:
            kgce_f, kwh_f, t_f = meter_factors(s, carriers)
            direct_f, indirect_f = meter_carbon(s, carriers, grid)
            for ts, d in meter_deltas(s):
                if s.kind == "production":
                    if d * t_f > 0:
                        closes.append((ts, d * t_f))
                else:
                    energy.append((ts, d * kgce_f, d * kwh_f, d * direct_f, d * indirect_f))
        closes.sort(key=lambda c: c[0])
        energy.sort(key=lambda e: e[0])
        start, k = first, 0  # k: the first energy delta after the previous close
        for close, tonnes in closes:
            kgce = kwh = direct = indirect = Fraction(0)
            while k < len(energy) and energy[k][0] <= close:
                kgce += Fraction(energy[k][1])
                kwh += Fraction(energy[k][2])
                direct += Fraction(energy[k][3])
                indirect += Fraction(energy[k][4])
                k += 1
            t = Fraction(tonnes)
            out.append(BatchTruth(site, line, close, start, float(kgce), float(kwh), tonnes,
                                  _ratio(kgce, t), _ratio(kwh, t), float(direct),
                                  float(indirect), _ratio(direct + indirect, t)))
            start = close
    return out


def _epoch_ms(local: datetime) -> int:
    return round(local.timestamp() * 1000)


def _boundaries(day: date, zone: ZoneInfo, shifts: Sequence[time]) -> list[tuple[str, int, int]]:
    """The day's periods that start on it: (kind, start ms, end ms)."""
    next_day = day + timedelta(days=1)
    midnight = _epoch_ms(datetime.combine(day, time(0), zone))
    out = [("day", midnight, _epoch_ms(datetime.combine(next_day, time(0), zone)))]
    if day.day == 1:
        first_next = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append(("month", midnight, _epoch_ms(datetime.combine(first_next, time(0), zone))))
    starts = [_epoch_ms(datetime.combine(day, s, zone)) for s in shifts]
    starts.append(_epoch_ms(datetime.combine(next_day, shifts[0], zone)))
    out += [("shift", a, b) for a, b in pairwise(starts)]
    return out


def expected_periods(
    series: Iterable[MeterSeries],
    *,
    timezone: str = "UTC",
    shifts: Sequence[str] = ("00:00", "08:00", "16:00"),
    carriers: dict[str, Carrier] | None = None,
    grid_kgco2_per_kwh: float | None = None,
) -> list[PeriodTruth]:
    """Every shift, day and month that holds a delta of a line, by line, kind and start.

    ``shifts``: local start times ``HH:MM``, increasing, the first of them starting each
    day's first shift."""
    carriers = carriers or load_reference().carriers
    grid = national_grid_factor() if grid_kgco2_per_kwh is None else grid_kgco2_per_kwh
    zone = ZoneInfo(timezone)
    starts = [time(int(s[:2]), int(s[3:])) for s in shifts]
    out: list[PeriodTruth] = []
    for (site, line), meters in _by_line(series).items():
        deltas: list[tuple[int, float, float, float, float, float]] = []
        for s in meters:
            kgce_f, kwh_f, t_f = meter_factors(s, carriers)
            direct_f, indirect_f = meter_carbon(s, carriers, grid)
            deltas += [(ts, d * kgce_f, d * kwh_f, d * t_f, d * direct_f, d * indirect_f)
                       for ts, d in meter_deltas(s)]
        if not deltas:
            continue
        first = datetime.fromtimestamp(min(d[0] for d in deltas) / 1000, zone).date()
        last = datetime.fromtimestamp(max(d[0] for d in deltas) / 1000, zone).date()
        periods: list[tuple[str, int, int]] = []
        day = first.replace(day=1) - timedelta(days=1)  # the shift before the first day too
        while day <= last:
            periods += [p for p in _boundaries(day, zone, starts)
                        if p[0] != "month" or day.day == 1]
            day += timedelta(days=1)
        for kind, start, end in sorted(set(periods), key=lambda p: (p[0], p[1])):
            inside = [d for d in deltas if start <= d[0] < end]
            if not inside:
                continue
            kgce, kwh, tonnes, direct, indirect = (
                sum((Fraction(d[k]) for d in inside), Fraction(0)) for k in (1, 2, 3, 4, 5))
            out.append(PeriodTruth(site, line, kind, start, end, float(kgce), float(kwh),
                                   float(tonnes), _ratio(kgce, tonnes), _ratio(kwh, tonnes),
                                   float(direct), float(indirect),
                                   _ratio(direct + indirect, tonnes)))
    return out
