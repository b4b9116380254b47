"""The Numba kernel against the plain-Python reference on random streams (hypothesis).

Streams mix several lines and carriers, counters and delta meters, rollovers and
resets, gaps and idle stretches, readings out of order within and beyond the
allowed lateness, duplicates, multi-reading messages and batches cut at random
message boundaries. Kernel and reference must emit the same (line, tick) rows, the
same window sums and intensities (to 1e-9 relative), and the same drops.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernel_streams import Stream, concatenate, random_stream
from wattline.kernels import Ticks, advance, load_state, new_state, save_state
from wattline.kernels.reference import ReferenceState, as_ticks, reference_advance

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw: st.DrawFn, min_production: bool = False) -> Stream:
    emit_every_ms = draw(st.sampled_from((1_000, 10_000)))
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
    )


def run_kernel(stream: Stream, batches: list | None = None) -> tuple[Ticks, np.ndarray]:
    state = new_state(stream.config, stream.meters.n_lines, stream.meters.n_meters,
                      pending_capacity=4)  # small: the kernel must grow it by itself
    parts = [advance(state, stream.config, stream.meters, b)
             for b in (stream.batches if batches is None else batches)]
    return _joined(parts, len(stream.config.windows_ms)), state.drops.copy()


def run_reference(stream: Stream) -> Ticks:
    state = ReferenceState()
    emitted = []
    for batch in stream.batches:
        emitted += reference_advance(state, stream.config, stream.meters, batch)
    return as_ticks(emitted, len(stream.config.windows_ms), state.drops)


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
        drops=np.sum([p.drops for p in parts], axis=0) if parts else np.zeros(3, np.int64),
    )


def assert_same_ticks(got: Ticks, want: Ticks, scale: float) -> None:
    """Same rows; values equal to 1e-9 relative (absolute 1e-9 of the stream's scale)."""
    assert got.line.tolist() == want.line.tolist()
    assert got.tick_ms.tolist() == want.tick_ms.tolist()
    for name in ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: idle windows differ"
        ok = np.isclose(a, b, rtol=1e-9, atol=1e-9 * scale, equal_nan=True)
        if not ok.all():
            row, col = np.argwhere(~ok)[0]
            raise AssertionError(
                f"{name} differs at line {got.line[row]}, tick {got.tick_ms[row]}, window "
                f"{col}: kernel {a[row, col]!r}, reference {b[row, col]!r}"
            )


def _scale(stream: Stream) -> float:
    return max([1.0] + [float(np.abs(b.value).max()) for b in stream.batches if len(b)])


@PROPERTY_SETTINGS
@given(streams())
def test_kernel_matches_the_reference(stream: Stream) -> None:
    got, _ = run_kernel(stream)
    want = run_reference(stream)
    assert_same_ticks(got, want, _scale(stream))
    assert got.drops.tolist() == want.drops.tolist()


@PROPERTY_SETTINGS
@given(streams(min_production=True))
def test_kernel_matches_the_reference_with_a_minimum_production(stream: Stream) -> None:
    assert_same_ticks(run_kernel(stream)[0], run_reference(stream), _scale(stream))


@PROPERTY_SETTINGS
@given(streams())
def test_one_batch_gives_the_same_ticks_as_any_split(stream: Stream) -> None:
    split, split_drops = run_kernel(stream)
    whole, whole_drops = run_kernel(stream, [concatenate(stream.batches)])
    assert_same_ticks(split, whole, _scale(stream))
    assert split_drops.tolist() == whole_drops.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(stream=streams(), cut_percent=st.integers(0, 100))
def test_save_restore_continue_equals_running_straight_through(
    stream: Stream, cut_percent: int, tmp_path: Path
) -> None:
    straight, _ = run_kernel(stream)
    cut = len(stream.batches) * cut_percent // 100
    state = new_state(stream.config, stream.meters.n_lines, stream.meters.n_meters, 4)
    parts = [advance(state, stream.config, stream.meters, b) for b in stream.batches[:cut]]
    path = tmp_path / f"state-{cut_percent}.npz"
    save_state(state, path)
    del state
    restored = load_state(path)
    parts += [advance(restored, stream.config, stream.meters, b) for b in stream.batches[cut:]]
    resumed = _joined(parts, len(stream.config.windows_ms))
    assert_same_ticks(resumed, straight, _scale(stream))
    # Bit for bit, not just close: a restart must not change a single point.
    assert np.array_equal(resumed.energy_kgce, straight.energy_kgce)
    assert math.isclose(float(resumed.drops.sum()), float(straight.drops.sum()))
