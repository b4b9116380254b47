"""The Numba kernel against the plain-Python reference on random streams (hypothesis).

Streams mix several lines and carriers, counters and delta meters (net energy
meters going negative), rollovers and resets, gaps and idle stretches, readings
out of order within and beyond the allowed lateness, duplicates, multi-reading
messages, pending buffers small enough to overflow, meters with a ``max_rate``
and bad register reads (0, sentinels, jumps, replaced meters), wall clocks that
readings run ahead of (and that step back), and batches cut at random message
boundaries. Kernel and reference must emit the same (line, tick) rows, the same
window sums and intensities, energy and carbon (to 1e-9 relative), and the same drops per reason;
every sum the kernel emits is finite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernel_streams import Stream, concatenate, random_stream
from wattline.ingest.durable.checkpoint import load_state, save_state
from wattline.kernels import (
    DROP_REASONS,
    MeterTable,
    StreamState,
    Ticks,
    advance,
    new_state,
)
from wattline.kernels.naive import ReferenceState, as_ticks, magnitudes_of, reference_advance

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
VALUE_COLUMNS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t",
                 "co2_direct_t", "co2_indirect_t", "co2_per_t")
SUM_COLUMNS = ("energy_kgce", "electricity_kwh", "production_t", "co2_direct_t",
               "co2_indirect_t")


@st.composite
def streams(draw: st.DrawFn, min_production: bool = False,
            wall_clocks: tuple[str, ...] = ("none", "same", "moving")) -> Stream:
    emit_every_ms = draw(st.sampled_from((1_000, 7_000, 10_000)))
    lateness_ticks = draw(st.integers(0, 4))
    return random_stream(
        draw(st.integers(0, 2**32 - 1)),
        n_lines=draw(st.integers(1, 3)),
        meters_per_line=draw(st.integers(1, 4)),
        n_per_meter=draw(st.integers(1, 60)),
        emit_every_ms=emit_every_ms,
        windows=tuple(sorted(set(draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))))),
        lateness_ms=lateness_ticks * emit_every_ms + draw(st.integers(0, emit_every_ms - 1)),
        jitter_ms=draw(st.sampled_from((0, emit_every_ms, 3 * emit_every_ms,
                                        10 * emit_every_ms))),
        duplicate_rate=draw(st.sampled_from((0.0, 0.1, 0.4))),
        reset_rate=draw(st.sampled_from((0.0, 0.05))),
        n_batches=draw(st.integers(1, 8)),
        min_production_t=draw(st.sampled_from((None, 0.5, 3.0))) if min_production else None,
        # Mostly roomy; sometimes so small that readings overflow and are counted.
        max_pending=draw(st.sampled_from((1 << 16, 1 << 16, 8, 4, 2))),
        max_rate_share=draw(st.sampled_from((0.0, 0.5, 1.0))),
        bad_read_rate=draw(st.sampled_from((0.0, 0.05, 0.2))),
        wall_clock=draw(st.sampled_from(wall_clocks)),
    )


def fresh_state(stream: Stream) -> StreamState:
    """A state whose pending buffers start small, so the kernel must grow them itself."""
    return new_state(stream.config, stream.meters.n_lines, stream.meters.n_meters,
                     pending_capacity=min(2, stream.max_pending))


def run_kernel(stream: Stream, batches: list | None = None) -> tuple[Ticks, np.ndarray]:
    """All the stream's ticks in one ``Ticks``, and the state's cumulative drops."""
    state = fresh_state(stream)
    if batches is None:
        parts = [advance(state, stream.config, stream.meters, b, max_pending=stream.max_pending,
                         now_ms=stream.now_of(k))
                 for k, b in enumerate(stream.batches)]
    else:  # one wall clock for all: only for streams made with the same one for every batch
        parts = [advance(state, stream.config, stream.meters, b, max_pending=stream.max_pending,
                         now_ms=stream.now_of(0))
                 for b in batches]
    for part in parts:
        for name in SUM_COLUMNS:
            assert np.isfinite(getattr(part, name)).all(), name
    return _joined(parts, len(stream.config.windows_ms)), state.drops.copy()


def run_reference(stream: Stream) -> tuple[Ticks, np.ndarray]:
    """The reference's ticks, and per tick, window and sum the magnitude of its terms."""
    state = ReferenceState(magnitudes=True)
    emitted = []
    for k, batch in enumerate(stream.batches):
        emitted += reference_advance(state, stream.config, stream.meters, batch,
                                     max_pending=stream.max_pending, now_ms=stream.now_of(k))
    n_windows = len(stream.config.windows_ms)
    return as_ticks(emitted, n_windows, state.drops), magnitudes_of(emitted, n_windows)


def _joined(parts: list[Ticks], n_windows: int) -> Ticks:
    def cat(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.empty(shape, dtype)

    return Ticks(
        line=cat("line", (0,), np.int32), tick_ms=cat("tick_ms", (0,), np.int64),
        energy_kgce=cat("energy_kgce", (0, n_windows), np.float64),
        electricity_kwh=cat("electricity_kwh", (0, n_windows), np.float64),
        production_t=cat("production_t", (0, n_windows), np.float64),
        kgce_per_t=cat("kgce_per_t", (0, n_windows), np.float64),
        kwh_per_t=cat("kwh_per_t", (0, n_windows), np.float64),
        drops=(np.sum([p.drops for p in parts], axis=0) if parts
               else np.zeros(len(DROP_REASONS), np.int64)),
        co2_direct_t=cat("co2_direct_t", (0, n_windows), np.float64),
        co2_indirect_t=cat("co2_indirect_t", (0, n_windows), np.float64),
        co2_per_t=cat("co2_per_t", (0, n_windows), np.float64),
    )


def assert_same_ticks(got: Ticks, want: Ticks, magnitudes: np.ndarray | None = None,
                      rtol: float = 1e-9) -> None:
    """Same rows; NaN in the same places; values equal to ``rtol`` relative.

    A value near zero (net energy that nearly cancels) is compared to ``rtol`` of the
    largest magnitude in its column instead, since it is the difference of big ones.
    With ``magnitudes`` (the reference's sums of |term| per tick, window and sum), a
    sum whose terms were larger than anything in its column (a bad read of 1e12 and
    its opposite in one window) is compared to ``rtol`` of those terms: a float sum's
    rounding scales with what it adds, and the reference sums exactly.
    """
    assert got.line.tolist() == want.line.tolist()
    assert got.tick_ms.tolist() == want.tick_ms.tolist()
    slack = {}
    if magnitudes is not None and len(want):
        e, el, p, cd, ci = (getattr(want, n) for n in SUM_COLUMNS)
        slack = {name: magnitudes[..., q] for q, name in enumerate(SUM_COLUMNS)}
        mag_e, mag_el, mag_p = slack["energy_kgce"], slack["electricity_kwh"], slack["production_t"]
        mag_c = slack["co2_direct_t"] + slack["co2_indirect_t"]
        with np.errstate(divide="ignore", invalid="ignore"):
            # d(a / p) = da / p - a dp / p^2, bounded by the terms' magnitudes.
            slack["kgce_per_t"] = (mag_e + np.abs(e / p) * mag_p) / np.abs(p)
            slack["kwh_per_t"] = (mag_el + np.abs(el / p) * mag_p) / np.abs(p)
            slack["co2_per_t"] = (mag_c + np.abs((cd + ci) / p) * mag_p) / np.abs(p)
    for name in VALUE_COLUMNS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        idle_a, idle_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(idle_a, idle_b):
            row, col = np.argwhere(idle_a != idle_b)[0]
            raise AssertionError(
                f"{name}: idle at line {got.line[row]}, tick {got.tick_ms[row]}, window {col} "
                f"for one side only: kernel {a[row, col]!r}, reference {b[row, col]!r}"
            )
        finite = b[~idle_b]
        column_scale = float(np.abs(finite).max()) if finite.size else 0.0
        scale = np.maximum(column_scale, np.nan_to_num(slack[name], nan=0.0, posinf=0.0)) \
            if name in slack else column_scale
        ok = np.isclose(a, b, rtol=rtol, atol=0.0, equal_nan=True) | (
            np.abs(a - b) <= rtol * scale)
        if not ok.all():
            row, col = np.argwhere(~ok)[0]
            raise AssertionError(
                f"{name} differs at line {got.line[row]}, tick {got.tick_ms[row]}, window "
                f"{col}: kernel {a[row, col]!r}, reference {b[row, col]!r}"
            )


def assert_identical(got: Ticks, want: Ticks) -> None:
    """Bit for bit: the same computation, merely interrupted."""
    assert got.line.tolist() == want.line.tolist()
    assert got.tick_ms.tolist() == want.tick_ms.tolist()
    for name in VALUE_COLUMNS:
        assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), name
    assert got.drops.tolist() == want.drops.tolist()


def assert_ticks_follow_each_other(ticks: Ticks, emit_every_ms: int) -> None:
    """Per line: every tick on a multiple of emit_every, each once, none skipped."""
    for line in np.unique(ticks.line).tolist():
        times = ticks.tick_ms[ticks.line == line]
        assert (times % emit_every_ms == 0).all()
        assert (np.diff(times) == emit_every_ms).all()


@PROPERTY_SETTINGS
@given(streams())
def test_kernel_matches_the_reference(stream: Stream) -> None:
    got, state_drops = run_kernel(stream)
    want, magnitudes = run_reference(stream)
    assert_same_ticks(got, want, magnitudes)
    assert dict(zip(DROP_REASONS, got.drops.tolist(), strict=True)) == dict(
        zip(DROP_REASONS, want.drops.tolist(), strict=True))
    assert state_drops.tolist() == got.drops.tolist()  # the state counts what calls report
    assert_ticks_follow_each_other(got, stream.config.emit_every_ms)


@PROPERTY_SETTINGS
@given(streams(min_production=True))
def test_kernel_matches_the_reference_with_a_minimum_production(stream: Stream) -> None:
    got, _ = run_kernel(stream)
    want, magnitudes = run_reference(stream)
    assert_same_ticks(got, want, magnitudes)
    assert got.drops.tolist() == want.drops.tolist()


@PROPERTY_SETTINGS
@given(streams(wall_clocks=("none", "same")))
def test_one_batch_gives_the_same_ticks_as_any_split(stream: Stream) -> None:
    split, split_drops = run_kernel(stream)
    whole, whole_drops = run_kernel(stream, [concatenate(stream.batches)])
    assert_identical(split, whole)
    assert split_drops.tolist() == whole_drops.tolist()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(stream=streams(), cut_percent=st.integers(0, 100))
def test_save_restore_continue_equals_running_straight_through(
    stream: Stream, cut_percent: int, tmp_path: Path
) -> None:
    straight, straight_drops = run_kernel(stream)
    cut = len(stream.batches) * cut_percent // 100
    state = fresh_state(stream)
    parts = [advance(state, stream.config, stream.meters, b, max_pending=stream.max_pending,
                     now_ms=stream.now_of(k))
             for k, b in enumerate(stream.batches[:cut])]
    path = tmp_path / f"state-{cut_percent}.npz"
    save_state(state, path)
    del state
    restored = load_state(path)
    parts += [advance(restored, stream.config, stream.meters, b, max_pending=stream.max_pending,
                      now_ms=stream.now_of(k))
              for k, b in enumerate(stream.batches[cut:], start=cut)]
    # Bit for bit, not just close: a restart must not change a single point or count.
    assert_identical(_joined(parts, len(stream.config.windows_ms)), straight)
    assert restored.drops.tolist() == straight_drops.tolist()


@PROPERTY_SETTINGS
@given(streams())
def test_export_meters_count_exactly_negatively(stream: Stream) -> None:
    """Every energy meter turned into its export twin: energy, kWh, CO2 and their
    intensities change sign bit for bit; production, drops and which windows are idle
    do not."""
    m = stream.meters
    assert m.co2_direct_per_unit is not None and m.co2_indirect_per_unit is not None
    flipped = MeterTable(line=m.line, kgce_per_unit=-m.kgce_per_unit,
                         kwh_per_unit=-m.kwh_per_unit, t_per_unit=m.t_per_unit,
                         delta_mode=m.delta_mode, rollover=m.rollover, n_lines=m.n_lines,
                         max_rate=m.max_rate, co2_direct_per_unit=-m.co2_direct_per_unit,
                         co2_indirect_per_unit=-m.co2_indirect_per_unit)
    imported, _ = run_kernel(stream)
    exported, _ = run_kernel(dataclasses.replace(stream, meters=flipped))
    assert exported.tick_ms.tolist() == imported.tick_ms.tolist()
    for name in ("energy_kgce", "electricity_kwh", "kgce_per_t", "kwh_per_t", "co2_direct_t",
                 "co2_indirect_t", "co2_per_t"):
        assert np.array_equal(getattr(exported, name), -getattr(imported, name),
                              equal_nan=True), name
    assert np.array_equal(exported.production_t, imported.production_t)
    assert exported.drops.tolist() == imported.drops.tolist()


def _logged_lines(stream: Stream, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(stream.meters.n_lines) < 0.7


@PROPERTY_SETTINGS
@given(streams(), st.integers(0, 2**32 - 1))
def test_the_finalised_log_of_batch_lines_matches_the_reference(stream: Stream,
                                                                 seed: int) -> None:
    """What the kernel logs for batch lines is every reading the reference finalises on
    them (baselines with zero deltas), with the same converted deltas, tick by tick per
    line, and nothing for other lines; the ticks are those of a run without a log."""
    logged = _logged_lines(stream, seed)
    state = fresh_state(stream)
    got: list[tuple] = []
    parts = []
    for k, batch in enumerate(stream.batches):
        ticks = advance(state, stream.config, stream.meters, batch,
                        max_pending=stream.max_pending, now_ms=stream.now_of(k),
                        logged_lines=logged)
        parts.append(ticks)
        f = ticks.finalised
        assert f is not None
        got += list(zip(f.line.tolist(), f.ts_ms.tolist(), f.kgce.tolist(), f.kwh.tolist(),
                        f.t.tolist(), f.co2_direct.tolist(), f.co2_indirect.tolist(),
                        strict=True))
    plain, _ = run_kernel(stream)
    assert_identical(_joined(parts, len(stream.config.windows_ms)), plain)
    ref = ReferenceState(logged=frozenset(np.flatnonzero(logged).tolist()))
    for k, batch in enumerate(stream.batches):
        reference_advance(ref, stream.config, stream.meters, batch,
                          max_pending=stream.max_pending, now_ms=stream.now_of(k))
    for line in range(stream.meters.n_lines):
        mine = [r for r in got if r[0] == line]
        e = stream.config.emit_every_ms
        ticks = [-(-r[1] // e) for r in mine]  # tick by tick; within a tick, meter by meter
        assert ticks == sorted(ticks)
        # Within one time the order is the meters'; compare as sorted rows.
        assert sorted(mine) == sorted(r for r in ref.finalised if r[0] == line)
