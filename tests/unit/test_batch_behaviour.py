"""The batch rule on small, hand-made logs: what an energy manager would check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattline.kernels.batches import (
    FinalisedDeltas,
    _order,
    close_batches,
    grow_batch_state,
    new_batch_state,
)

T0 = 1_732_406_400_000
KGCE = 0.1229
GRID_T_PER_KWH = 0.5306 / 1000  # tCO2 per kWh at the 2023 national grid factor


def log(*entries: tuple[int, int, float, float]) -> FinalisedDeltas:
    """(line, seconds after T0, kWh, t) entries of electricity and production."""
    line, s, kwh, t = (list(c) for c in zip(*entries, strict=True))
    kwh_a = np.array(kwh, dtype=float)
    return FinalisedDeltas(np.array(line), T0 + np.array(s) * 1000, kwh_a * KGCE, kwh_a,
                           np.array(t, dtype=float), np.zeros(kwh_a.shape),
                           kwh_a * GRID_T_PER_KWH)


def test_a_tap_closes_a_heat_with_the_energy_since_the_previous_tap() -> None:
    state = new_batch_state(1)
    # Baseline readings at 0 s, 30 MWh over two heats, taps at 60 s and 130 s.
    got = close_batches(state, log((0, 0, 0.0, 0.0), (0, 0, 0.0, 0.0), (0, 20, 8000.0, 0.0),
                                   (0, 60, 4000.0, 0.0), (0, 60, 0.0, 100.0),
                                   (0, 90, 18000.0, 0.0), (0, 130, 0.0, 120.0)))
    assert got.close_ms.tolist() == [T0 + 60_000, T0 + 130_000]
    assert got.start_ms.tolist() == [T0, T0 + 60_000]  # the first heat from the first reading
    assert got.duration_s.tolist() == [60.0, 70.0]
    assert got.electricity_kwh.tolist() == [12_000.0, 18_000.0]
    assert got.production_t.tolist() == [100.0, 120.0]
    assert got.kwh_per_t.tolist() == [120.0, 150.0]
    assert got.kgce_per_t.tolist() == pytest.approx([120.0 * KGCE, 150.0 * KGCE], rel=1e-12)
    # Electricity is scope 2: a heat's CO2 is all indirect, at the grid factor.
    assert got.co2_direct_t.tolist() == [0.0, 0.0]
    assert got.co2_indirect_t.tolist() == pytest.approx(
        [12_000.0 * GRID_T_PER_KWH, 18_000.0 * GRID_T_PER_KWH], rel=1e-12)
    assert got.co2_per_t.tolist() == pytest.approx(
        [120.0 * GRID_T_PER_KWH, 150.0 * GRID_T_PER_KWH], rel=1e-12)


def test_energy_stamped_with_the_close_belongs_to_the_closing_batch_in_any_order() -> None:
    state = new_batch_state(1)
    got = close_batches(state, log((0, 5, 0.0, 2.0), (0, 0, 0.0, 0.0), (0, 5, 10.0, 0.0)))
    assert got.electricity_kwh.tolist() == [10.0]


def test_a_batch_stays_open_across_calls_until_its_tap() -> None:
    state = new_batch_state(2)
    assert len(close_batches(state, log((0, 0, 0.0, 0.0), (0, 10, 5.0, 0.0),
                                        (1, 3, 7.0, 0.0)))) == 0
    got = close_batches(state, log((1, 30, 0.0, 1.0), (0, 40, 6.0, 0.0), (0, 50, 0.0, 0.5)))
    assert got.line.tolist() == [0, 1]  # lines in order within a call
    assert got.electricity_kwh.tolist() == [11.0, 7.0]
    assert got.start_ms.tolist() == [T0, T0 + 3_000]
    assert got.kwh_per_t.tolist() == [22.0, 7.0]


def test_no_production_or_a_negative_correction_closes_nothing() -> None:
    state = new_batch_state(1)
    assert len(close_batches(state, log((0, 0, 3.0, 0.0), (0, 1, 0.0, -0.5),
                                        (0, 2, 0.0, 0.0)))) == 0
    got = close_batches(state, log((0, 3, 0.0, 1.5)))
    assert got.electricity_kwh.tolist() == [3.0] and got.production_t.tolist() == [1.5]


def test_export_makes_a_batch_negative_and_a_tiny_tap_has_no_intensity() -> None:
    state = new_batch_state(1)
    got = close_batches(state, log((0, 0, 20.0, 0.0), (0, 1, -50.0, 0.0), (0, 2, 0.0, 2.0),
                                   (0, 3, 1e300, 0.0), (0, 4, 0.0, 1e-300)))
    assert got.electricity_kwh.tolist()[0] == -30.0 and got.kwh_per_t.tolist()[0] == -15.0
    assert math.isnan(got.kwh_per_t[1]) and math.isnan(got.kgce_per_t[1])


def test_an_entry_older_than_an_earlier_calls_is_refused_whole() -> None:
    state = new_batch_state(1)
    close_batches(state, log((0, 10, 1.0, 0.0)))
    with pytest.raises(ValueError, match="time order"):
        close_batches(state, log((0, 20, 1.0, 1.0), (0, 9, 1.0, 0.0)))
    assert state.newest_ms.tolist() == [T0 + 10_000]  # untouched
    with pytest.raises(ValueError, match="grow the state"):
        close_batches(state, log((1, 20, 1.0, 0.0)))
    grow_batch_state(state, 2)
    assert len(close_batches(state, log((1, 20, 1.0, 1.0)))) == 1


@pytest.mark.parametrize("shuffled", [False, True], ids=["tick_by_tick", "shuffled"])
def test_the_log_is_ordered_as_by_line_time_and_energy_first_whatever_its_disorder(
        shuffled: bool) -> None:
    """The kernel's fast order (a log nearly in order, as the intensity kernel writes it)
    and its fallback (a log far from order) both give the lexsort rule 1 defines, ties
    kept in log order."""
    rng = np.random.default_rng(5)
    n = 3_000
    line = rng.integers(0, 7, n).astype(np.int32)
    ts = T0 + np.sort(rng.integers(0, 600, n)) * 1000  # many ties
    closing = rng.random(n) < 0.2
    if shuffled:
        at = rng.permutation(n)
        line, ts, closing = line[at], ts[at], closing[at]
    else:  # in time order, except each tick's entries are grouped meter by meter
        tick = (ts - T0) // 10_000
        meter = rng.integers(0, 4, n)
        at = np.lexsort((ts, meter, tick))
        line, ts, closing = line[at], ts[at], closing[at]
    want = np.lexsort((closing, ts, line))
    assert np.array_equal(_order(line, ts, closing, 7), want)
