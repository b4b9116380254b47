"""Named examples of the intensity kernel's behaviour (contract section 3), one rule each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattline.kernels import KernelConfig, MeterTable, Readings, Ticks, advance, new_state
from wattline.kernels.reference import ReferenceState, as_ticks, reference_advance

E = 10_000  # emit every 10 s
T0 = 1_732_406_400_000  # a multiple of E
CONFIG = KernelConfig(emit_every_ms=E, windows_ms=(2 * E, 6 * E), allowed_lateness_ms=0)
ELECTRICITY, SCALE = 0, 1


def _meters(*, delta_mode: bool = False, rollover: float = 0.0) -> MeterTable:
    """Line 0: an electricity meter (kWh) and a production counter (t)."""
    return MeterTable(
        line=np.array([0, 0], dtype=np.int32), kgce_per_unit=np.array([0.1229, 0.0]),
        kwh_per_unit=np.array([1.0, 0.0]), t_per_unit=np.array([0.0, 1.0]),
        delta_mode=np.array([delta_mode, False]), rollover=np.array([rollover, 0.0]), n_lines=1,
    )


def _run(readings: list[tuple[int, int, float]], meters: MeterTable | None = None,
         config: KernelConfig = CONFIG) -> Ticks:
    """Readings as (meter, ts offset from T0 in ms, value), one message each."""
    meters = meters or _meters()
    state = new_state(config, meters.n_lines, meters.n_meters)
    batch = Readings.from_arrays([r[0] for r in readings], [T0 + r[1] for r in readings],
                                 [r[2] for r in readings])
    return advance(state, config, meters, batch)


def _by_tick(ticks: Ticks, name: str, window: int = 0) -> dict[int, float]:
    values = getattr(ticks, name)[:, window]
    return {int(t - T0): float(v) for t, v in zip(ticks.tick_ms, values, strict=True)}


def test_a_counters_first_reading_only_sets_its_baseline() -> None:
    ticks = _run([(ELECTRICITY, 5_000, 1000.0), (ELECTRICITY, 15_000, 1010.0),
                  (ELECTRICITY, 40_000, 1010.0)])
    assert _by_tick(ticks, "electricity_kwh") == {10_000: 0.0, 20_000: 10.0, 30_000: 10.0,
                                                  40_000: 0.0}


def test_a_delta_is_attributed_to_its_readings_time() -> None:
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_001, 7.0),
                  (ELECTRICITY, 60_000, 7.0)])
    electricity = _by_tick(ticks, "electricity_kwh", window=0)
    assert electricity[10_000] == 0.0 and electricity[20_000] == 7.0


def test_a_decrease_wraps_at_the_rollover() -> None:
    ticks = _run([(ELECTRICITY, 0, 999_990.0), (ELECTRICITY, 10_000, 5.0),
                  (ELECTRICITY, 30_000, 5.0)], _meters(rollover=1_000_000.0))
    assert _by_tick(ticks, "electricity_kwh")[10_000] == 15.0


def test_a_decrease_without_rollover_is_a_reset_whose_delta_is_the_new_value() -> None:
    ticks = _run([(ELECTRICITY, 0, 5000.0), (ELECTRICITY, 10_000, 3.0),
                  (ELECTRICITY, 30_000, 3.0)])
    assert _by_tick(ticks, "electricity_kwh")[10_000] == 3.0


def test_a_delta_mode_reading_is_its_own_delta() -> None:
    ticks = _run([(ELECTRICITY, 10_000, 4.0), (ELECTRICITY, 20_000, 6.0),
                  (ELECTRICITY, 40_000, 0.0)], _meters(delta_mode=True))
    assert _by_tick(ticks, "electricity_kwh") == {10_000: 4.0, 20_000: 10.0, 30_000: 6.0,
                                                  40_000: 0.0}


def test_energy_converts_by_the_carriers_kgce_factor() -> None:
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 100.0),
                  (ELECTRICITY, 20_000, 100.0)])
    assert _by_tick(ticks, "energy_kgce")[10_000] == pytest.approx(12.29)


def test_a_window_holds_deltas_after_its_start_and_up_to_its_end() -> None:
    # Window 0 is 20 s: tick T sums deltas with T - 20 s < t <= T.
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 1.0),
                  (ELECTRICITY, 20_000, 3.0), (ELECTRICITY, 30_000, 7.0),
                  (ELECTRICITY, 50_000, 7.0)])
    assert _by_tick(ticks, "electricity_kwh", window=0) == {
        0: 0.0, 10_000: 1.0, 20_000: 3.0, 30_000: 6.0, 40_000: 4.0, 50_000: 0.0}


def test_ticks_sit_on_multiples_of_emit_every_since_the_epoch() -> None:
    ticks = _run([(ELECTRICITY, 3_333, 0.0), (ELECTRICITY, 47_777, 1.0)])
    assert all(t % E == 0 for t in ticks.tick_ms.tolist())
    assert ticks.tick_ms.tolist() == [T0 + k * E for k in range(1, 5)]


LATE_5S = KernelConfig(emit_every_ms=E, windows_ms=(2 * E, 6 * E), allowed_lateness_ms=5_000)


def test_an_idle_window_has_no_intensity() -> None:
    ticks = _run([(SCALE, 0, 0.0), (ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 50.0),
                  (SCALE, 10_000, 0.0), (ELECTRICITY, 20_000, 60.0), (SCALE, 20_000, 0.0),
                  (SCALE, 30_000, 0.0)], config=LATE_5S)
    assert ticks.drops.tolist() == [0, 0, 0]
    assert math.isnan(_by_tick(ticks, "kgce_per_t")[20_000])
    assert _by_tick(ticks, "production_t")[20_000] == 0.0


def test_a_producing_window_divides_energy_by_production() -> None:
    ticks = _run([(SCALE, 0, 0.0), (ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 420.0),
                  (SCALE, 10_000, 1.0), (SCALE, 20_000, 1.0)], config=LATE_5S)
    assert ticks.drops.tolist() == [0, 0, 0]
    assert _by_tick(ticks, "kwh_per_t")[10_000] == 420.0
    assert _by_tick(ticks, "kgce_per_t")[10_000] == pytest.approx(420.0 * 0.1229)


def test_below_min_production_a_window_is_idle() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=0,
                          min_production_t=2.0)
    ticks = _run([(SCALE, 0, 0.0), (SCALE, 10_000, 1.0), (SCALE, 20_000, 3.0),
                  (SCALE, 40_000, 3.0)], config=config)
    per_t = _by_tick(ticks, "kwh_per_t")
    assert math.isnan(per_t[10_000])  # 1 t < 2 t
    assert per_t[20_000] == 0.0  # 3 t: producing, with no electricity


def test_a_reading_at_or_before_the_watermark_is_dropped_as_late() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=5_000)
    ticks = _run([(ELECTRICITY, 20_000, 1.0), (ELECTRICITY, 15_000, 0.5),
                  (ELECTRICITY, 15_001, 0.6)], config=config)
    assert ticks.drops.tolist() == [1, 0, 0]


def test_a_late_but_acceptable_reading_is_put_in_order() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=30_000)
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 20_000, 10.0),
                  (ELECTRICITY, 10_000, 4.0), (ELECTRICITY, 70_000, 10.0)], config=config)
    # The first tick sits early enough for any reading the lateness still admits.
    assert _by_tick(ticks, "electricity_kwh") == {-20_000: 0.0, -10_000: 0.0, 0: 0.0,
                                                  10_000: 4.0, 20_000: 10.0, 30_000: 6.0,
                                                  40_000: 0.0}
    assert ticks.drops.tolist() == [0, 0, 0]


def test_a_second_reading_with_the_same_meter_and_time_is_a_duplicate() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=30_000)
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 4.0),
                  (ELECTRICITY, 10_000, 4.0), (ELECTRICITY, 60_000, 4.0)], config=config)
    assert ticks.drops.tolist() == [0, 1, 0]
    assert _by_tick(ticks, "electricity_kwh")[10_000] == 4.0


def test_a_messages_readings_are_judged_against_the_watermark_before_it() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=5_000)
    meters = _meters()
    state = new_state(config, 1, 2)
    first = Readings.from_arrays([0], [T0 + 10_000], [1.0], [0])
    # One message of three readings: 40 s moves the watermark only after the message,
    # so 6 s and 7 s (after the old watermark of 5 s) are kept.
    batch = Readings.from_arrays([0, 0, 0], [T0 + 40_000, T0 + 6_000, T0 + 7_000],
                                 [4.0, 2.0, 3.0], [1, 1, 1])
    advance(state, config, meters, first)
    ticks = advance(state, config, meters, batch)
    assert ticks.drops.tolist() == [0, 0, 0]


def test_state_memory_does_not_grow_with_the_streams_length() -> None:
    meters = _meters()
    state = new_state(CONFIG, 1, 2)
    sizes = []
    for hour in range(3):
        ts = T0 + hour * 3_600_000 + np.arange(0, 3_600_000, 1_000, dtype=np.int64)
        values = np.arange(ts.size, dtype=np.float64) + hour * ts.size
        batch = Readings.from_arrays(np.zeros(ts.size, dtype=np.int32), ts, values)
        advance(state, CONFIG, meters, batch)
        sizes.append(sum(a.nbytes for a in vars(state).values() if isinstance(a, np.ndarray)))
    assert sizes[0] == sizes[1] == sizes[2]


def test_a_24h_window_sliding_for_a_year_does_not_drift() -> None:
    """A year of one-minute ticks with values that binary floats cannot hold exactly."""
    emit = 60_000
    config = KernelConfig(emit_every_ms=emit, windows_ms=(86_400_000,), allowed_lateness_ms=0)
    meters = _meters(delta_mode=True)
    state = new_state(config, 1, 2)
    minutes = 365 * 24 * 60
    rng = np.random.default_rng(7)
    # Energy per minute: 0.1 kWh steps plus a daily pattern of awkward decimals.
    energy = np.round(0.1 * rng.integers(1, 50, minutes) + 0.01 * (np.arange(minutes) % 7), 2)
    ts = T0 + emit * np.arange(1, minutes + 1, dtype=np.int64)
    batch = Readings.from_arrays(np.zeros(minutes, np.int32), ts, energy)
    ticks = advance(state, config, meters, batch)
    window = 24 * 60
    checked = 0
    for i in [window, minutes // 3, minutes // 2, minutes - 2]:
        row = int(np.searchsorted(ticks.tick_ms, ts[i]))
        want = math.fsum(energy[i - window + 1: i + 1].tolist())
        got = ticks.electricity_kwh[row, 0]
        assert got == pytest.approx(want, rel=1e-12), (i, got, want)
        checked += 1
    assert checked == 4
    # Then the line stands still for a day: the window must come back to exactly zero.
    quiet = Readings.from_arrays([0], [ts[-1] + 86_400_000 + emit], [0.0])
    after = advance(state, config, meters, quiet)
    assert after.electricity_kwh[-1, 0] == 0.0
    assert math.isnan(after.kwh_per_t[-1, 0])


def test_the_reference_agrees_on_the_named_examples() -> None:
    """The oracle itself, on a hand-checked stream: same ticks as the kernel."""
    readings = [(SCALE, 0, 0.0), (ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 420.0),
                (SCALE, 10_000, 1.0), (ELECTRICITY, 20_000, 400.0), (SCALE, 30_000, 2.0)]
    ticks = _run(readings)
    state = ReferenceState()
    batch = Readings.from_arrays([r[0] for r in readings], [T0 + r[1] for r in readings],
                                 [r[2] for r in readings])
    ref = as_ticks(reference_advance(state, CONFIG, _meters(), batch), 2, state.drops)
    assert ref.tick_ms.tolist() == ticks.tick_ms.tolist()
    assert np.allclose(ref.electricity_kwh, ticks.electricity_kwh)
    assert _by_tick(ticks, "electricity_kwh")[20_000] == 400.0  # reset: delta is the value
