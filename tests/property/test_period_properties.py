"""The periods kernel against its plain-Python reference, on random streams.

The streams are those of the intensity kernel's tests (tests/kernel_streams.py:
out of order, duplicates, resets, rollovers, bad reads, gaps, wall clocks that
stop, move or step back), with period settings drawn on top: a grace from none
to many readings' worth, and a calendar that is either a regular grid of short
periods or the real one of Europe/Berlin with shifts packed around the hour the
clocks change (the stream moved onto that day).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.kernel_streams import Stream, concatenate, random_stream
from wattline.ingest.calendar import Calendar
from wattline.kernels.naive_periods import (
    ReferencePeriod,
    ReferencePeriodState,
    reference_advance_periods,
)
from wattline.kernels.periods import (
    PERIOD_DROP_REASONS,
    Boundaries,
    PeriodConfig,
    Periods,
    advance_periods,
    new_period_state,
    period_state_arrays,
    period_state_from_arrays,
)
from wattline.kernels.state import Readings

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
SPRING_FORWARD_UTC_MS = 1_774_746_000_000  # 2026-03-29 01:00 UTC: Berlin 02:00 -> 03:00
STREAM_START_MS = 1_732_406_400_000  # where tests/kernel_streams.py starts its streams


@dataclass(frozen=True)
class Grid:
    """Regular periods: shifts of ``shift_ms``, days of ``per_day`` shifts, months of
    ``per_month`` days, all from ``origin``."""

    origin: int
    shift_ms: int
    per_day: int
    per_month: int

    def __call__(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = []
        for length in (self.shift_ms, self.shift_ms * self.per_day,
                       self.shift_ms * self.per_day * self.per_month):
            first = (lo - self.origin) // length
            last = (hi - self.origin) // length + 1
            out.append(self.origin + length * np.arange(first, last + 1, dtype=np.int64))
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class Case:
    stream: Stream
    config: PeriodConfig
    boundaries: Boundaries


def _moved(stream: Stream, by: int) -> Stream:
    """The stream with every reading time and wall clock ``by`` ms later."""
    batches = [Readings(b.meter, b.ts_ms + by, b.value, b.message) for b in stream.batches]
    now = None if stream.now_ms is None else tuple(
        None if t is None else t + by for t in stream.now_ms)
    return replace(stream, batches=batches, now_ms=now)


@st.composite
def cases(draw: st.DrawFn, wall_clocks: tuple[str, ...] = ("none", "same", "moving"),
          min_production: bool = False) -> Case:
    emit_every_ms = draw(st.sampled_from((1_000, 7_000, 10_000)))
    step = emit_every_ms // 2
    stream = random_stream(
        draw(st.integers(0, 2**32 - 1)),
        n_lines=draw(st.integers(1, 3)),
        meters_per_line=draw(st.integers(1, 4)),
        n_per_meter=draw(st.integers(1, 60)),
        emit_every_ms=emit_every_ms,
        windows=(1,),
        lateness_ms=draw(st.integers(0, 4)) * emit_every_ms,
        jitter_ms=draw(st.sampled_from((0, emit_every_ms, 10 * emit_every_ms,
                                        60 * emit_every_ms))),
        duplicate_rate=draw(st.sampled_from((0.0, 0.1, 0.4))),
        reset_rate=draw(st.sampled_from((0.0, 0.05))),
        n_batches=draw(st.integers(1, 8)),
        max_pending=draw(st.sampled_from((1 << 16, 1 << 16, 8, 2))),
        max_rate_share=draw(st.sampled_from((0.0, 0.5, 1.0))),
        bad_read_rate=draw(st.sampled_from((0.0, 0.05, 0.2))),
        wall_clock=draw(st.sampled_from(wall_clocks)),
    )
    config = PeriodConfig(
        grace_ms=draw(st.sampled_from((0, step, 10 * step, 50 * step, 400 * step))),
        allowed_lateness_ms=stream.config.allowed_lateness_ms,
        provisional_every_ms=draw(st.sampled_from((step, 20 * step, 60_000))),
        min_production_t=draw(st.sampled_from((None, 0.5, 3.0))) if min_production else None,
    )
    boundaries: Boundaries
    if draw(st.booleans()):
        boundaries = Grid(origin=draw(st.integers(0, 10**6)),
                          shift_ms=draw(st.sampled_from((3 * step, 20 * step, 200 * step))),
                          per_day=draw(st.integers(1, 4)), per_month=draw(st.integers(1, 3)))
    else:
        # Shifts around 02:00-03:00 local: the hour that does not exist on this day.
        boundaries = Calendar("Europe/Berlin", ["01:58", "01:59", "02:00", "02:30", "03:00",
                                                "03:01", "03:02", "03:05", "03:10"])
        offset = draw(st.integers(-300_000, 120_000))
        stream = _moved(stream, SPRING_FORWARD_UTC_MS + offset - STREAM_START_MS)
    return Case(stream, config, boundaries)


def run_kernel(case: Case, batches: list[Readings] | None = None,
               same_clock: bool = False) -> tuple[list[Periods], np.ndarray]:
    s = case.stream
    state = new_period_state(s.meters.n_lines, s.meters.n_meters,
                             pending_capacity=min(2, s.max_pending))
    parts = []
    for k, b in enumerate(s.batches if batches is None else batches):
        now = s.now_of(0 if same_clock else k)
        parts.append(advance_periods(state, case.config, s.meters, b, case.boundaries,
                                     max_pending=s.max_pending, now_ms=now))
    return parts, state.drops.copy()


def run_reference(case: Case, batches: list[Readings] | None = None, same_clock: bool = False
                  ) -> tuple[list[list[ReferencePeriod]], list[dict[str, int]]]:
    s = case.stream
    state = ReferencePeriodState()
    rows, drops = [], []
    for k, b in enumerate(s.batches if batches is None else batches):
        r, d = reference_advance_periods(
            state, case.config.grace_ms, case.config.allowed_lateness_ms,
            case.config.provisional_every_ms, s.meters, b, case.boundaries,
            max_pending=s.max_pending, now_ms=s.now_of(0 if same_clock else k),
            min_production_t=case.config.min_production_t)
        rows.append(r)
        drops.append(d)
    return rows, drops


def kernel_rows(p: Periods) -> list[tuple]:
    """Each row as (line, kind, start, final, end, late, sums, ratios), sorted."""
    return sorted(
        (int(p.line[i]), int(p.kind[i]), int(p.start_ms[i]), bool(p.final[i]), int(p.end_ms[i]),
         int(p.late_readings[i]),
         (float(p.energy_kgce[i]), float(p.electricity_kwh[i]), float(p.production_t[i]),
          float(p.co2_direct_t[i]), float(p.co2_indirect_t[i])),
         (_absent(p.kgce_per_t[i]), _absent(p.kwh_per_t[i]), _absent(p.co2_per_t[i])))
        for i in range(len(p)))


def _absent(x: float) -> float | None:
    """None for NaN, so that rows compare equal with ``==``."""
    return None if np.isnan(x) else float(x)


def assert_same_rows(got: Periods, want: list[ReferencePeriod],
                     min_production_t: float | None, rtol: float = 1e-9) -> None:
    """Same rows (as sets: the order within a call is not part of the rules); sums
    equal to ``rtol`` of the magnitudes of their terms; ratios absent in the same
    places unless the production is within rounding of where that changes."""
    g = kernel_rows(got)
    w = sorted(want, key=lambda r: (r.line, r.kind, r.start_ms, r.final))
    assert [row[:6] for row in g] == [
        (r.line, r.kind, r.start_ms, r.final, r.end_ms, r.late_readings) for r in w]
    for row, r in zip(g, w, strict=True):
        sums, ratios = row[6], row[7]
        for q in range(len(r.sums)):
            assert abs(sums[q] - r.sums[q]) <= rtol * r.magnitudes[q] + 1e-300, (row, r)
        p, mag_p = r.sums[2], r.magnitudes[2]
        near = abs(p) <= rtol * mag_p or (
            min_production_t is not None and abs(p - min_production_t) <= rtol * mag_p)
        # What each ratio's numerator's rounding scales with: energy, kWh, CO2 both scopes.
        numerators = (r.magnitudes[0], r.magnitudes[1], r.magnitudes[3] + r.magnitudes[4])
        for q, want_ratio in enumerate((r.kgce_per_t, r.kwh_per_t, r.co2_per_t)):
            if np.isnan(want_ratio) or ratios[q] is None:
                assert near or np.isnan(want_ratio) == (ratios[q] is None), (row, r)
                continue
            slack = (numerators[q] + abs(want_ratio) * mag_p) / abs(p)
            assert abs(ratios[q] - want_ratio) <= rtol * max(slack, abs(want_ratio)), (row, r)


def finals(parts: list[Periods]) -> list[tuple]:
    return sorted(row for p in parts for row in kernel_rows(p) if row[3])


@PROPERTY_SETTINGS
@given(cases())
def test_periods_kernel_matches_the_reference(case: Case) -> None:
    parts, state_drops = run_kernel(case)
    want_rows, want_drops = run_reference(case)
    for got, want, drops in zip(parts, want_rows, want_drops, strict=True):
        assert_same_rows(got, want, case.config.min_production_t)
        assert dict(zip(PERIOD_DROP_REASONS, got.drops.tolist(), strict=True)) == drops
    assert state_drops.tolist() == np.sum([p.drops for p in parts], axis=0).tolist()


@PROPERTY_SETTINGS
@given(cases(min_production=True))
def test_periods_kernel_matches_the_reference_with_a_minimum_production(case: Case) -> None:
    parts, _ = run_kernel(case)
    want_rows, _ = run_reference(case)
    for got, want in zip(parts, want_rows, strict=True):
        assert_same_rows(got, want, case.config.min_production_t)


@PROPERTY_SETTINGS
@given(cases())
def test_a_period_is_final_once_and_never_written_after(case: Case) -> None:
    parts, _ = run_kernel(case)
    closed: set[tuple[int, int, int]] = set()
    for p in parts:
        for row in kernel_rows(p):
            key = row[:3]
            assert key not in closed, f"period {key} written after its final row"
        closed |= {row[:3] for row in kernel_rows(p) if row[3]}
        assert all(row[2] < row[4] for row in kernel_rows(p))  # start before end


@PROPERTY_SETTINGS
@given(cases(wall_clocks=("none", "same")))
def test_final_periods_do_not_depend_on_how_the_stream_is_batched(case: Case) -> None:
    # With no grace, every call judges the lines of the one before silent (rule 1).
    assume(case.stream.now_ms is None or case.config.grace_ms > 0)
    whole_batch = [concatenate(case.stream.batches)]
    split, split_drops = run_kernel(case, same_clock=True)
    whole, whole_drops = run_kernel(case, whole_batch, same_clock=True)
    a, b = finals(split), finals(whole)
    assert [row[:6] for row in a] == [row[:6] for row in b]
    # The same readings, paired and added in another order: equal to within the rounding of
    # their terms (the reference's magnitudes: a reading of 3e9 kWh rounds at 5e-7 each time).
    magnitude = {}
    for rows in (run_reference(case, same_clock=True)[0],
                 run_reference(case, whole_batch, same_clock=True)[0]):
        for r in (r for call in rows for r in call if r.final):
            key = (r.line, r.kind, r.start_ms)
            magnitude[key] = np.maximum(magnitude.get(key, 0.0), r.magnitudes)
    for x, y in zip(a, b, strict=True):
        scale = np.maximum(1.0, magnitude[x[:3]])
        assert np.all(np.abs(np.subtract(x[6], y[6])) <= 1e-12 * scale), (x, y, scale)
        if abs(x[6][2]) > 1e-9 * scale[2]:  # idle alike, unless production is a rounding residue
            assert [r is None for r in x[7]] == [r is None for r in y[7]], (x, y)
    assert split_drops.tolist() == whole_drops.tolist()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), cut_percent=st.integers(0, 100))
def test_periods_save_restore_continue_equals_running_straight_through(
    case: Case, cut_percent: int
) -> None:
    s = case.stream
    straight, straight_drops = run_kernel(case)
    cut = len(s.batches) * cut_percent // 100
    state = new_period_state(s.meters.n_lines, s.meters.n_meters,
                             pending_capacity=min(2, s.max_pending))
    parts = [advance_periods(state, case.config, s.meters, b, case.boundaries,
                             max_pending=s.max_pending, now_ms=s.now_of(k))
             for k, b in enumerate(s.batches[:cut])]
    saved = {name: np.array(a, copy=True) for name, a in period_state_arrays(state).items()}
    del state
    restored = period_state_from_arrays(saved)
    parts += [advance_periods(restored, case.config, s.meters, b, case.boundaries,
                              max_pending=s.max_pending, now_ms=s.now_of(k))
              for k, b in enumerate(s.batches[cut:], start=cut)]
    assert [kernel_rows(p) for p in parts] == [kernel_rows(p) for p in straight]
    assert restored.drops.tolist() == straight_drops.tolist()
