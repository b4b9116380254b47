"""Ground truth: the intensity each line should show, per tick and window (docs/semantics.md).

Computed in plain Python from the readings a simulated gateway published and
the meters' descriptions, without any of the collector's code, so the two can
be compared. The steps follow the contract word for word:

1. Per meter, readings ordered by ``ts``; a second reading with the same ``ts``
   is ignored (a duplicate).
2. Deltas: a counter's first reading sets its baseline; then ``v[i] - v[i-1]``,
   on a decrease ``v[i] + rollover - v[i-1]`` with a rollover and ``v[i]`` (a
   reset) without. A delta-mode meter's delta is its reading. Each delta is
   attributed to its reading's time.
3. For each tick ``T`` (a multiple of ``emit_every``) and window ``W``, the sums
   of the deltas with ``T - W < t <= T``: kgce (energy deltas times the
   carrier's kgce per unit, from the reference data), kWh (electricity deltas),
   tonnes (production deltas), and tonnes of CO2 (contract section 8): direct,
   the deltas of scope-1 carriers times their ``tco2_per_unit``; indirect,
   electricity kWh / 1000 times the grid factor (by default the newest national
   one in the reference data) and other scope-2 deltas times their factor. An
   export meter's deltas count negatively in all of them. Window sums are
   differences of running totals kept as exact fractions, so each is the
   exactly rounded sum of its deltas and a window without production is
   exactly zero.
4. The intensities (kgce/t, kWh/t and tCO2/t) only when the window's production
   is more than zero (or at least ``min_production_t`` when given); otherwise the
   line is idle.

Lateness is not modelled: the gateways' faults stay within the collector's
default allowed lateness, so every published reading counts.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from itertools import accumulate, pairwise
from pathlib import Path
from typing import IO

import orjson

from wattline.contract.reference_data import Carrier, load_reference

__all__ = [
    "DEFAULT_WINDOWS",
    "MeterSeries",
    "TruthRow",
    "expected_intensity",
    "meter_carbon",
    "meter_deltas",
    "meter_factors",
    "national_grid_factor",
    "window_ms",
    "write_jsonl",
]

DEFAULT_WINDOWS = ("15m", "1h", "24h")

_WINDOW = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class MeterSeries:
    """One meter as published: its topic's names, its meta description and its readings.

    ``readings`` are ``(ts_ms, v)`` in the order they were published.
    """

    site: str
    line: str
    kind: str  # "energy" or "production"
    meter: str
    carrier: str | None
    unit: str
    mode: str = "counter"
    rollover: float | None = None
    readings: tuple[tuple[int, float], ...] = ()
    direction: str = "import"  # "export": energy leaving the line's boundary


@dataclass(frozen=True, slots=True)
class TruthRow:
    """What the collector should write for one line, tick and window (docs/formats.md, outputs)."""

    site: str
    line: str
    window: str
    time_ms: int
    energy_kgce: float
    electricity_kwh: float
    production_t: float
    kgce_per_t: float | None
    kwh_per_t: float | None
    co2_direct_t: float = 0.0
    co2_indirect_t: float = 0.0
    co2_per_t: float | None = None


def window_ms(window: str) -> int:
    """A window such as ``15m``, ``1h``, ``24h`` in milliseconds."""
    m = _WINDOW.fullmatch(window)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"window {window!r} is not a positive duration like 15m, 1h, 24h")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def meter_deltas(series: MeterSeries) -> list[tuple[int, float]]:
    """The meter's deltas ``(ts_ms, delta)`` in time order, by the contract's rules."""
    by_time: dict[int, float] = {}
    for ts, v in series.readings:
        by_time.setdefault(ts, v)  # the first of two readings at one ts counts
    ordered = sorted(by_time.items())
    if series.mode == "delta":
        return ordered
    deltas: list[tuple[int, float]] = []
    for (_, before), (ts, v) in pairwise(ordered):
        if v >= before:
            deltas.append((ts, v - before))
        elif series.rollover:
            deltas.append((ts, v + series.rollover - before))
        else:
            deltas.append((ts, v))
    return deltas


def meter_factors(series: MeterSeries, carriers: dict[str, Carrier]) -> tuple[float, float, float]:
    """(kgce, kWh, t) per unit of the meter's deltas."""
    if series.kind == "production":
        if series.unit != "t":
            raise ValueError(f"production meter {series.meter} counts {series.unit!r}, not t")
        return 0.0, 0.0, 1.0
    carrier = carriers.get(series.carrier or "")
    if carrier is None:
        raise ValueError(f"meter {series.meter}: carrier {series.carrier!r} not in the reference")
    if carrier.unit != series.unit:
        raise ValueError(
            f"meter {series.meter}: unit {series.unit!r}, the reference counts "
            f"{series.carrier} in {carrier.unit}"
        )
    kwh = 1.0 if carrier.name == "electricity" else 0.0
    sign = -1.0 if series.direction == "export" else 1.0
    return sign * carrier.kgce_per_unit, sign * kwh, 0.0


def national_grid_factor() -> float:
    """The newest national (``CN``) grid factor of the reference data, kgCO2/kWh."""
    grid = load_reference().grid_kgco2_per_kwh
    year = max(y for region, y in grid if region == "CN")
    return grid[("CN", year)]


def meter_carbon(series: MeterSeries, carriers: dict[str, Carrier],
                 grid_kgco2_per_kwh: float) -> tuple[float, float]:
    """(direct, indirect) tonnes of CO2 per unit of the meter's deltas: scope 1 direct,
    scope 2 indirect, electricity at the grid factor; export negative."""
    if series.kind == "production":
        return 0.0, 0.0
    carrier = carriers[series.carrier or ""]
    if carrier.name == "electricity":
        per_unit = grid_kgco2_per_kwh / 1000.0
    elif carrier.tco2_per_unit is not None:
        per_unit = carrier.tco2_per_unit
    else:
        raise ValueError(f"meter {series.meter}: carrier {carrier.name} has no CO2 factor")
    if series.direction == "export":
        per_unit = -per_unit
    if carrier.scope == 1:
        return per_unit, 0.0
    if carrier.scope == 2:
        return 0.0, per_unit
    raise ValueError(f"meter {series.meter}: carrier {carrier.name} has no scope")


def expected_intensity(
    series: Iterable[MeterSeries],
    *,
    emit_every_s: float = 10.0,
    windows: Sequence[str] = DEFAULT_WINDOWS,
    min_production_t: float | None = None,
    ticks_ms: Sequence[int] | None = None,
    carriers: dict[str, Carrier] | None = None,
    grid_kgco2_per_kwh: float | None = None,
) -> list[TruthRow]:
    """Every line's rows, ordered by line (as first seen), tick, then window.

    Args:
        series: the published meters, any number of lines.
        emit_every_s: the tick period; ticks are its multiples since the epoch.
        windows: window names as configured.
        min_production_t: the production a window needs for an intensity;
            ``None`` means more than zero.
        ticks_ms: the ticks to compute; by default every tick from the line's
            first reading to its last.
        carriers: kgce and CO2 factors; by default the reference data's.
        grid_kgco2_per_kwh: electricity's CO2 factor; by default the newest national.
    """
    carriers = carriers or load_reference().carriers
    grid = national_grid_factor() if grid_kgco2_per_kwh is None else grid_kgco2_per_kwh
    emit_ms = round(emit_every_s * 1000)
    spans = [(w, window_ms(w)) for w in windows]
    lines: dict[tuple[str, str], list[MeterSeries]] = {}
    for s in series:
        lines.setdefault((s.site, s.line), []).append(s)
    rows: list[TruthRow] = []
    for (site, line), meters in lines.items():
        # (ts, kgce, kWh, t, tCO2 direct, tCO2 indirect)
        events: list[tuple[int, float, float, float, float, float]] = []
        all_ts: list[int] = []
        for s in meters:
            kgce_f, kwh_f, t_f = meter_factors(s, carriers)
            direct_f, indirect_f = meter_carbon(s, carriers, grid)
            all_ts.extend(ts for ts, _ in s.readings)
            events.extend((ts, d * kgce_f, d * kwh_f, d * t_f, d * direct_f, d * indirect_f)
                          for ts, d in meter_deltas(s))
        if not all_ts and ticks_ms is None:
            continue
        events.sort(key=lambda e: e[0])
        times = [e[0] for e in events]
        running = [
            list(accumulate((Fraction(e[k]) for e in events), initial=Fraction(0)))
            for k in (1, 2, 3, 4, 5)
        ]
        if ticks_ms is None:
            first = -(-min(all_ts) // emit_ms)
            line_ticks: Sequence[int] = [
                k * emit_ms for k in range(first, max(all_ts) // emit_ms + 1)
            ]
        else:
            line_ticks = ticks_ms
        for tick in line_ticks:
            hi = bisect.bisect_right(times, tick)
            for name, span in spans:
                lo = bisect.bisect_right(times, tick - span)
                kgce, kwh, tonnes, direct, indirect = (float(r[hi] - r[lo]) for r in running)
                exact_t = running[2][hi] - running[2][lo]
                exact_co2 = (running[3][hi] - running[3][lo]) + (running[4][hi] - running[4][lo])
                producing = (
                    exact_t > 0 if min_production_t is None else tonnes >= min_production_t
                )
                rows.append(
                    TruthRow(
                        site, line, name, tick, kgce, kwh, tonnes,
                        kgce / tonnes if producing else None,
                        kwh / tonnes if producing else None,
                        direct, indirect,
                        float(exact_co2) / tonnes if producing else None,
                    )
                )
    return rows


def write_jsonl(rows: Iterable[TruthRow], out: str | Path | IO[bytes]) -> int:
    """Write rows as JSON Lines (idle intensities as ``null``); returns how many."""
    n = 0
    if isinstance(out, str | Path):
        with open(out, "wb") as f:
            return write_jsonl(rows, f)
    for row in rows:
        out.write(orjson.dumps(asdict(row)) + b"\n")
        n += 1
    return n
