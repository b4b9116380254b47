"""Live carbon in the kernels (contract section 8), one rule each, on a small kiln line:
coal burnt (scope 1), electricity bought (scope 2), waste heat sent out (export, scope 2)
and a clinker counter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattline.ingest.calendar import Calendar
from wattline.kernels import KernelConfig, MeterTable, Readings, advance, new_state
from wattline.kernels.batches import (
    batch_state_arrays,
    batch_state_from_arrays,
    close_batches,
    new_batch_state,
)
from wattline.kernels.periods import (
    PeriodConfig,
    advance_periods,
    new_period_state,
    period_state_arrays,
    period_state_from_arrays,
)
from wattline.kernels.state import state_arrays, state_from_arrays

E = 10_000
T0 = 1_732_406_400_000  # 2024-11-24 00:00 UTC, a multiple of E
CONFIG = KernelConfig(emit_every_ms=E, windows_ms=(6 * E,), allowed_lateness_ms=1_000)
COAL_T_PER_KG = 0.001978  # raw coal, tCO2 per kg (reference data)
GRID_T_PER_KWH = 0.5306 / 1000  # the 2023 national grid factor, tCO2 per kWh
HEAT_T_PER_MJ = 0.00011  # purchased heat, tCO2 per MJ
COAL, POWER, HEAT_OUT, CLINKER = range(4)


def kiln() -> MeterTable:
    """Line 0: a coal weigher (kg), an electricity meter (kWh), a waste-heat export meter
    (MJ, negative factors) and a clinker counter (t)."""
    return MeterTable(
        line=np.zeros(4, dtype=np.int32),
        kgce_per_unit=np.array([0.7143, 0.1229, -0.03412, 0.0]),
        kwh_per_unit=np.array([0.0, 1.0, 0.0, 0.0]),
        t_per_unit=np.array([0.0, 0.0, 0.0, 1.0]),
        delta_mode=np.zeros(4, dtype=np.bool_), rollover=np.zeros(4), n_lines=1,
        co2_direct_per_unit=np.array([COAL_T_PER_KG, 0.0, 0.0, 0.0]),
        co2_indirect_per_unit=np.array([0.0, GRID_T_PER_KWH, -HEAT_T_PER_MJ, 0.0]),
    )


def minute(clinker_t: float = 2.0) -> Readings:
    """Baselines at T0 (to 3 ms after), then one step at T0 + 5 s: 300 kg coal, 1000 kWh,
    400 MJ of heat sent out, ``clinker_t`` of clinker; and a last electricity reading
    that moves the watermark a window on."""
    rows = [(COAL, 0, 0.0), (POWER, 1, 0.0), (HEAT_OUT, 2, 0.0), (CLINKER, 3, 0.0),
            (COAL, 5_000, 300.0), (POWER, 5_000, 1000.0), (HEAT_OUT, 5_000, 400.0),
            (CLINKER, 5_000, clinker_t), (POWER, 71_000, 1000.0)]
    return Readings.from_arrays([r[0] for r in rows], [T0 + r[1] for r in rows],
                                [r[2] for r in rows])


DIRECT = 300 * COAL_T_PER_KG
INDIRECT = 1000 * GRID_T_PER_KWH - 400 * HEAT_T_PER_MJ


def test_a_window_splits_co2_into_scope_1_and_scope_2_with_exports_negative() -> None:
    ticks = advance(new_state(CONFIG, 1, 4), CONFIG, kiln(), minute())
    at = {int(t - T0): i for i, t in enumerate(ticks.tick_ms)}
    row = at[10_000]  # the window (-50 s, 10 s] holds the step at 5 s
    assert ticks.co2_direct_t[row, 0] == pytest.approx(DIRECT, rel=1e-12)
    assert ticks.co2_indirect_t[row, 0] == pytest.approx(INDIRECT, rel=1e-12)
    assert ticks.co2_per_t[row, 0] == pytest.approx((DIRECT + INDIRECT) / 2.0, rel=1e-12)
    # At 70 s the step has left the window (10 s, 70 s]: nothing, and idle.
    last = at[70_000]
    assert (ticks.co2_direct_t[last, 0], ticks.co2_indirect_t[last, 0]) == (0.0, 0.0)
    assert math.isnan(ticks.co2_per_t[last, 0])


def test_an_idle_window_keeps_its_co2_sums_but_has_no_co2_per_t() -> None:
    ticks = advance(new_state(CONFIG, 1, 4), CONFIG, kiln(), minute(clinker_t=0.0))
    row = int(np.flatnonzero(ticks.tick_ms == T0 + 10_000)[0])
    assert ticks.co2_direct_t[row, 0] == pytest.approx(DIRECT, rel=1e-12)
    assert math.isnan(ticks.co2_per_t[row, 0]) and math.isnan(ticks.kgce_per_t[row, 0])


def test_a_meter_table_without_co2_factors_emits_no_co2() -> None:
    m = kiln()
    plain = MeterTable(line=m.line, kgce_per_unit=m.kgce_per_unit, kwh_per_unit=m.kwh_per_unit,
                       t_per_unit=m.t_per_unit, delta_mode=m.delta_mode, rollover=m.rollover,
                       n_lines=1)
    ticks = advance(new_state(CONFIG, 1, 4), CONFIG, plain, minute())
    assert not ticks.co2_direct_t.any() and not ticks.co2_indirect_t.any()
    assert np.array_equal(np.isnan(ticks.co2_per_t), np.isnan(ticks.kgce_per_t))


def test_a_co2_factor_beyond_the_limit_is_refused() -> None:
    m = kiln()
    with pytest.raises(ValueError, match="co2_direct_per_unit"):
        MeterTable(line=m.line, kgce_per_unit=m.kgce_per_unit, kwh_per_unit=m.kwh_per_unit,
                   t_per_unit=m.t_per_unit, delta_mode=m.delta_mode, rollover=m.rollover,
                   n_lines=1, co2_direct_per_unit=np.array([np.nan, 0.0, 0.0, 0.0]))


def _without_co2(arrays: dict[str, np.ndarray], names: tuple[str, ...], keep: int
                 ) -> dict[str, np.ndarray]:
    """A saved state as a version before the CO2 sums wrote it: only ``keep`` sums."""
    return {k: (v[..., :keep].copy() if k in names else v) for k, v in arrays.items()}


def test_a_window_state_saved_before_the_co2_sums_loads_and_goes_on() -> None:
    state = new_state(CONFIG, 1, 4)
    readings = minute()
    first = Readings(readings.meter[:4], readings.ts_ms[:4], readings.value[:4],
                     readings.message[:4])
    rest = Readings(readings.meter[4:], readings.ts_ms[4:], readings.value[4:],
                    readings.message[4:])
    advance(state, CONFIG, kiln(), first)
    old = _without_co2(state_arrays(state), ("ring", "window_sum", "window_comp",
                                             "window_peak", "window_nonzero"), 3)
    restored = state_from_arrays(old)
    assert restored.ring.shape[-1] == 5
    ticks = advance(restored, CONFIG, kiln(), rest)
    row = int(np.flatnonzero(ticks.tick_ms == T0 + 10_000)[0])
    assert ticks.co2_direct_t[row, 0] == pytest.approx(DIRECT, rel=1e-12)


def test_a_batch_holds_the_co2_since_the_previous_tap_and_old_states_load() -> None:
    logged = np.ones(1, dtype=np.bool_)
    ticks = advance(new_state(CONFIG, 1, 4), CONFIG, kiln(), minute(), logged_lines=logged)
    assert ticks.finalised is not None
    state = new_batch_state(1)
    old = _without_co2(batch_state_arrays(state), ("sums", "comps"), 2)
    closed = close_batches(batch_state_from_arrays(old), ticks.finalised)
    assert closed.co2_direct_t.tolist() == pytest.approx([DIRECT], rel=1e-12)
    assert closed.co2_indirect_t.tolist() == pytest.approx([INDIRECT], rel=1e-12)
    assert closed.co2_per_t.tolist() == pytest.approx([(DIRECT + INDIRECT) / 2.0], rel=1e-12)


def test_a_day_holds_its_co2_and_a_period_state_from_before_loads() -> None:
    old = _without_co2(period_state_arrays(new_period_state(1, 4)), ("open_sum", "open_comp"), 3)
    state = period_state_from_arrays(old)
    out = advance_periods(state, PeriodConfig(grace_ms=0), kiln(), minute(), Calendar("UTC"))
    days = [i for i in range(len(out)) if out.kind[i] == 1 and out.start_ms[i] == T0]
    assert days, "a provisional day row"
    i = days[-1]
    assert out.co2_direct_t[i] == pytest.approx(DIRECT, rel=1e-12)
    assert out.co2_indirect_t[i] == pytest.approx(INDIRECT, rel=1e-12)
    assert out.co2_per_t[i] == pytest.approx((DIRECT + INDIRECT) / 2.0, rel=1e-12)
