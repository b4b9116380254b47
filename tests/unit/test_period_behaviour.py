"""The periods kernel, one rule at a time, on small hand-made streams."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from wattline.ingest.calendar import Calendar
from wattline.kernels import KernelConfig, Readings, advance, new_state
from wattline.kernels.periods import (
    PERIOD_DROP_REASONS,
    PERIOD_KINDS,
    PeriodConfig,
    Periods,
    PeriodState,
    advance_periods,
    new_period_state,
    period_state_arrays,
    period_state_from_arrays,
)
from wattline.kernels.state import MeterTable

MIN = 60_000
HOUR = 60 * MIN
BERLIN = Calendar("Europe/Berlin")
SHIFT, DAY, MONTH = range(3)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def line_meters() -> MeterTable:
    """Line 0: meter 0 electricity (kWh counter), meter 1 production (t counter)."""
    return MeterTable(line=np.array([0, 0]), kgce_per_unit=np.array([0.1229, 0.0]),
                      kwh_per_unit=np.array([1.0, 0.0]), t_per_unit=np.array([0.0, 1.0]),
                      delta_mode=np.array([False, False]), rollover=np.array([0.0, 0.0]),
                      n_lines=1)


def readings(rows: list[tuple[int, int, float]]) -> Readings:
    return Readings.from_arrays([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def run(batches: list[list[tuple[int, int, float]]], config: PeriodConfig | None = None,
        now: list[int | None] | None = None, state: PeriodState | None = None
        ) -> tuple[list[Periods], PeriodState]:
    state = state or new_period_state(1, 2)
    config = config or PeriodConfig()
    out = [advance_periods(state, config, line_meters(), readings(b), BERLIN,
                           now_ms=None if now is None else now[k])
           for k, b in enumerate(batches)]
    return out, state


def final_rows(parts: list[Periods], kind: int) -> list[dict]:
    rows = []
    for p in parts:
        for i in np.nonzero(p.final & (p.kind == kind))[0]:
            rows.append({"start": int(p.start_ms[i]), "end": int(p.end_ms[i]),
                         "kwh": float(p.electricity_kwh[i]), "t": float(p.production_t[i]),
                         "kwh_per_t": None if np.isnan(p.kwh_per_t[i]) else float(p.kwh_per_t[i]),
                         "late": int(p.late_readings[i])})
    return rows


def final_at(parts: list[Periods], kind: int, start: int) -> list[dict]:
    """The final rows of the period of ``kind`` starting at ``start`` (at most one)."""
    return [r for r in final_rows(parts, kind) if r["start"] == start]


def a_day(start: int, hours: int, step: int = 10 * MIN) -> list[tuple[int, int, float]]:
    """Both meters every ``step``: 1 kWh a minute, 0.01 t a minute, from one step before
    ``start`` (that reading is the baseline) to ``hours`` after it."""
    out = []
    for t in range(start - step, start + hours * HOUR + 1, step):
        k = (t - start) / MIN
        out += [(0, t, k), (1, t, k / 100)]
    return out


def test_a_day_in_berlin_sums_the_deltas_of_its_local_hours() -> None:
    start = ms(2026, 1, 14, 23)  # local midnight of the 15th
    parts, _ = run([a_day(start, 30)])
    day = final_at(parts, DAY, start)
    assert day[0]["end"] == ms(2026, 1, 15, 23)
    assert day[0]["kwh"] == 24 * 60  # deltas with start <= t < end
    assert np.isclose(day[0]["t"], 24 * 60 / 100)
    assert np.isclose(day[0]["kwh_per_t"], 100.0)
    shifts = final_rows(parts, SHIFT)
    assert [s["start"] for s in shifts[1:4]] == [start, start + 8 * HOUR, start + 16 * HOUR]
    assert all(s["end"] - s["start"] == 8 * HOUR for s in shifts)
    assert [s["kwh"] for s in shifts[1:4]] == [8 * 60] * 3


def test_the_spring_day_is_23_hours_and_its_first_shift_7() -> None:
    start = ms(2026, 3, 28, 23)
    parts, _ = run([a_day(start, 30)])
    (day,) = final_at(parts, DAY, start)
    assert day["end"] - day["start"] == 23 * HOUR
    assert day["kwh"] == 23 * 60
    first = final_rows(parts, SHIFT)[1]
    assert (first["end"] - first["start"], first["kwh"]) == (7 * HOUR, 7 * 60)


def test_production_20_minutes_late_gives_the_same_final_day_and_is_late_for_ticks() -> None:
    start = ms(2026, 1, 14, 23)
    stream = a_day(start, 30, step=MIN)
    on_time, _ = run([stream])
    late_at = start + 10 * HOUR
    held = [r for r in stream if r[0] == 1 and r[1] == late_at]
    rest = [r for r in stream if r not in held]
    arrived = [r for r in rest if r[1] <= late_at + 20 * MIN] + held + \
        [r for r in rest if r[1] > late_at + 20 * MIN]
    late, _ = run([[r] for r in arrived])
    want, got = final_at(on_time, DAY, start), final_at(late, DAY, start)
    assert [(d["start"], d["kwh"], d["t"]) for d in got] == [
        (d["start"], d["kwh"], d["t"]) for d in want]
    assert [d["late"] for d in got] == [1] and [d["late"] for d in want] == [0]
    # The live ticks drop the same reading as late.
    config = KernelConfig(windows_ms=(900_000,))
    state = new_state(config, 1, 2)
    drops = sum(advance(state, config, line_meters(), readings([r])).drops for r in arrived)
    assert drops[0] == 1


def test_a_reading_older_than_the_grace_is_dropped_as_period_closed() -> None:
    start = ms(2026, 1, 14, 23)
    stream = a_day(start, 30)
    parts, state = run([stream, [(1, start + HOUR + 1, 5.0)]])
    assert parts[1].drops[PERIOD_DROP_REASONS.index("period_closed")] == 1
    assert state.drops[PERIOD_DROP_REASONS.index("period_closed")] == 1
    assert not final_rows(parts[1:], DAY)


def test_a_period_closes_when_the_watermark_reaches_its_end_plus_the_grace() -> None:
    config = PeriodConfig(grace_ms=HOUR, allowed_lateness_ms=30_000)
    day_end = ms(2026, 1, 15, 23)
    base = [(0, day_end - HOUR, 1.0), (0, day_end - 1, 2.0)]
    due = day_end + HOUR + 30_000  # newest at this: watermark - grace = the day's end
    parts, _ = run([base, [(0, due - 1, 3.0)], [(0, due, 4.0)]], config)
    assert not final_rows(parts[:2], DAY)
    assert [d["kwh"] for d in final_rows(parts[2:], DAY)] == [1.0]


def test_a_silent_line_gets_its_final_day_a_grace_of_wall_clock_later() -> None:
    start = ms(2026, 1, 14, 23)
    stream = a_day(start, 24)  # stops at local midnight: its last reading starts the 16th
    arrived_at = start + 24 * HOUR + 5_000
    parts, _ = run([stream, [], []], now=[arrived_at, arrived_at + 2 * HOUR - 1,
                                           arrived_at + 2 * HOUR])
    assert not final_at(parts[:2], DAY, start)
    (day,) = final_at(parts[2:], DAY, start)
    assert (day["start"], day["kwh"]) == (start, 24 * 60)


def test_a_final_period_is_written_once_and_provisional_rows_before_it_say_so() -> None:
    start = ms(2026, 1, 14, 23)
    parts, _ = run([[r] for r in a_day(start, 30)])
    written = [(int(p.kind[i]), int(p.start_ms[i]), bool(p.final[i]))
               for p in parts for i in range(len(p))]
    day_rows = [f for k, s, f in written if k == DAY and s == start]
    assert day_rows.count(True) == 1 and day_rows[-1] is True
    assert day_rows.count(False) > 1  # rewritten while open


def test_provisional_rows_come_at_least_once_a_minute_of_event_time() -> None:
    start = ms(2026, 1, 15, 8)
    batches = [[(0, start + k * 10_000, float(k))] for k in range(60)]
    parts, _ = run(batches)
    minutes_with_rows = {(start + k * 10_000) // MIN for k, p in enumerate(parts)
                         if (~p.final & (p.kind == SHIFT)).any()}
    assert minutes_with_rows == {(start + k * 10_000) // MIN for k in range(60)}


def test_provisional_rows_hold_readings_not_yet_settled() -> None:
    start = ms(2026, 1, 15, 8)
    parts, _ = run([[(0, start, 0.0), (0, start + MIN, 5.0)]])
    (p,) = parts
    shift = np.nonzero(p.kind == SHIFT)[0]
    assert p.final[shift].tolist() == [False]
    assert p.electricity_kwh[shift].tolist() == [5.0]


def test_a_line_without_production_is_idle_and_has_no_ratio() -> None:
    start = ms(2026, 1, 14, 23)
    parts, _ = run([[r for r in a_day(start, 30) if r[0] == 0]])
    day = final_rows(parts, DAY)
    assert day and all(d["kwh_per_t"] is None for d in day)


def test_a_restored_state_neither_loses_nor_repeats_a_final_period() -> None:
    start = ms(2026, 1, 14, 23)
    batches = [[r] for r in a_day(start, 30)]
    straight, _ = run(batches)
    cut = len(batches) // 2 + 7
    first, state = run(batches[:cut])
    restored = period_state_from_arrays(
        {k: np.array(v, copy=True) for k, v in period_state_arrays(state).items()})
    second, _ = run(batches[cut:], state=restored)
    for kind in range(len(PERIOD_KINDS)):
        assert final_rows(first + second, kind) == final_rows(straight, kind)
