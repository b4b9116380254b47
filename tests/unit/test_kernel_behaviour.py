"""Named examples of the intensity kernel's behaviour (docs/semantics.md), one rule each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattline.kernels import (
    KernelConfig,
    MeterTable,
    Readings,
    StreamState,
    Ticks,
    advance,
    new_state,
)
from wattline.kernels.naive import ReferenceState, as_ticks, reference_advance

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
    assert ticks.drops.tolist() == [0, 0, 0, 0]
    assert math.isnan(_by_tick(ticks, "kgce_per_t")[20_000])
    assert _by_tick(ticks, "production_t")[20_000] == 0.0


def test_a_producing_window_divides_energy_by_production() -> None:
    ticks = _run([(SCALE, 0, 0.0), (ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 420.0),
                  (SCALE, 10_000, 1.0), (SCALE, 20_000, 1.0)], config=LATE_5S)
    assert ticks.drops.tolist() == [0, 0, 0, 0]
    assert _by_tick(ticks, "kwh_per_t")[10_000] == 420.0
    assert _by_tick(ticks, "kgce_per_t")[10_000] == pytest.approx(420.0 * 0.1229)


def test_below_min_production_a_window_is_idle() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=0,
                          min_production_t=2.0)
    ticks = _run([(SCALE, 0, 0.0), (SCALE, 10_000, 1.0), (SCALE, 20_000, 2.0),
                  (SCALE, 30_000, 4.0), (SCALE, 50_000, 4.0)], config=config)
    per_t = _by_tick(ticks, "kwh_per_t")
    assert math.isnan(per_t[10_000])  # 1 t < 2 t
    assert per_t[20_000] == 0.0  # exactly 2 t: producing (at least the minimum), no electricity
    assert per_t[30_000] == 0.0  # 3 t
    assert math.isnan(per_t[50_000])  # nothing left in the window


def test_a_reading_at_or_before_the_watermark_is_dropped_as_late() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=5_000)
    ticks = _run([(ELECTRICITY, 20_000, 1.0), (ELECTRICITY, 15_000, 0.5),
                  (ELECTRICITY, 15_001, 0.6)], config=config)
    assert ticks.drops.tolist() == [1, 0, 0, 0]


def test_a_late_but_acceptable_reading_is_put_in_order() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=30_000)
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 20_000, 10.0),
                  (ELECTRICITY, 10_000, 4.0), (ELECTRICITY, 70_000, 10.0)], config=config)
    # The first tick sits early enough for any reading the lateness still admits.
    assert _by_tick(ticks, "electricity_kwh") == {-20_000: 0.0, -10_000: 0.0, 0: 0.0,
                                                  10_000: 4.0, 20_000: 10.0, 30_000: 6.0,
                                                  40_000: 0.0}
    assert ticks.drops.tolist() == [0, 0, 0, 0]


def test_a_second_reading_with_the_same_meter_and_time_is_a_duplicate() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=30_000)
    ticks = _run([(ELECTRICITY, 0, 0.0), (ELECTRICITY, 10_000, 4.0),
                  (ELECTRICITY, 10_000, 4.0), (ELECTRICITY, 60_000, 4.0)], config=config)
    assert ticks.drops.tolist() == [0, 1, 0, 0]
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
    assert advance(state, config, meters, batch).drops.tolist() == [0, 0, 0, 0]
    # The next message meets the watermark the last one left: 40 s - 5 s.
    after = Readings.from_arrays([1, 1], [T0 + 35_000, T0 + 35_001], [0.0, 1.0], [2, 2])
    assert advance(state, config, meters, after).drops.tolist() == [1, 0, 0, 0]


def test_a_full_pending_buffer_drops_and_counts_the_overflow() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E,), allowed_lateness_ms=30_000)
    meters = _meters()
    state = new_state(config, 1, 2, pending_capacity=2)
    # Six readings within the lateness: none is final yet, and only four fit.
    batch = Readings.from_arrays([0] * 6, [T0 + s * 1_000 for s in range(1, 7)],
                                 [float(s) for s in range(1, 7)])
    ticks = advance(state, config, meters, batch, max_pending=4)
    assert ticks.drops.tolist() == [0, 0, 2, 0]
    assert state.pending_len[0] == 4
    # A duplicate is still a duplicate when the buffer is full.
    again = Readings.from_arrays([0], [T0 + 2_000], [2.0])
    assert advance(state, config, meters, again, max_pending=4).drops.tolist() == [0, 1, 0, 0]


def _state_bytes(state: StreamState) -> int:
    return sum(a.nbytes for a in vars(state).values() if isinstance(a, np.ndarray))


def test_state_memory_does_not_grow_with_the_streams_length() -> None:
    config = KernelConfig(emit_every_ms=E, windows_ms=(2 * E, 6 * E), allowed_lateness_ms=30_000)
    meters = _meters()
    state = new_state(config, 1, 2)
    rng = np.random.default_rng(3)
    sizes = []
    for hour in range(4):
        # Both meters every second, arriving up to 20 s out of order.
        ts = T0 + hour * 3_600_000 + np.arange(0, 3_600_000, 1_000, dtype=np.int64)
        meter = np.tile(np.array([0, 1], dtype=np.int32), ts.size)
        ts = np.repeat(ts, 2)
        order = np.argsort(ts + rng.integers(0, 20_000, ts.size), kind="stable")
        value = (ts - T0) / 1_000.0  # a counter rising by one unit a second
        ticks = advance(state, config, meters,
                        Readings.from_arrays(meter[order], ts[order], value[order]))
        assert ticks.drops.tolist() == [0, 0, 0, 0]
        assert len(ticks) >= 355  # the line keeps ticking hour after hour
        sizes.append(_state_bytes(state))
    assert sizes[0] == sizes[1] == sizes[2] == sizes[3]


def test_a_24h_window_sliding_for_a_year_does_not_drift() -> None:
    """A year of one-minute ticks with values that binary floats cannot hold exactly.

    The line stops for 30 hours every week: its production counter (0.1 t steps)
    stands still and its electricity (a delta meter, 1,000-3,000 kWh a minute when
    running, a few Wh of standby when stopped) falls by five orders of magnitude,
    so the 24 h window empties and refills 52 times. Every ~1,000th tick's sums
    must match ``math.fsum`` of the deltas really inside the window to 1e-9
    relative (a plain running sum misses that by about 5x on the standby windows);
    every tick whose window holds no production must be exactly 0 t and idle; after
    a day standing still at the end, everything must be exactly 0 and idle.
    """
    emit = 60_000
    day = 86_400_000
    config = KernelConfig(emit_every_ms=emit, windows_ms=(day,), allowed_lateness_ms=30_000)
    meters = _meters(delta_mode=True)
    state = new_state(config, 1, 2)
    minutes = 365 * 24 * 60
    rng = np.random.default_rng(7)
    i = np.arange(minutes)
    stopped = (i // 60) % 168 >= 138  # the last 30 hours of every week
    kwh = np.where(stopped, np.round(0.001 * rng.integers(1, 20, minutes), 3),
                   np.round(rng.uniform(1_000, 3_000, minutes), 2))
    tonnes = np.where(stopped, 0, rng.integers(0, 30, minutes))
    counter = np.round(0.1 * np.cumsum(tonnes), 1)
    # The meters report every minute; after the year they go on for a day with
    # nothing moving.
    quiet = 24 * 60 + 2
    ts = T0 + emit * np.arange(1, minutes + quiet + 1, dtype=np.int64)
    kwh = np.concatenate([kwh, np.zeros(quiet)])
    counter = np.concatenate([counter, np.full(quiet, counter[-1])])
    batch = Readings.from_arrays(
        np.tile(np.array([ELECTRICITY, SCALE], dtype=np.int32), ts.size), np.repeat(ts, 2),
        np.column_stack([kwh, counter]).ravel())
    ticks = advance(state, config, meters, batch)
    assert ticks.drops.tolist() == [0, 0, 0, 0]
    assert ticks.tick_ms[0] == ts[0] and (np.diff(ticks.tick_ms) == emit).all()

    # What the window really holds: energy at ts, the counter's deltas at ts[1:].
    produced = np.diff(counter)

    def inside(times: np.ndarray, T: int) -> slice:
        return slice(int(np.searchsorted(times, T - day, "right")),
                     int(np.searchsorted(times, T, "right")))

    year_end = minutes - 1  # the row of the year's last tick
    rows = [*range(1_440, year_end, 997), year_end]
    worst = 0.0
    for row in rows:
        T = int(ticks.tick_ms[row])
        e, p = inside(ts, T), inside(ts[1:], T)
        want_kwh = math.fsum(kwh[e].tolist())
        want_kgce = math.fsum((kwh[e] * 0.1229).tolist())
        want_t = math.fsum(produced[p].tolist())
        for got, want in ((ticks.electricity_kwh[row, 0], want_kwh),
                          (ticks.energy_kgce[row, 0], want_kgce),
                          (ticks.production_t[row, 0], want_t)):
            if want == 0.0:
                assert got == 0.0, (T, got)
                continue
            assert got == pytest.approx(want, rel=1e-9), (T, got, want)
            worst = max(worst, abs(got - want) / abs(want))
        if want_t > 0:
            assert ticks.kwh_per_t[row, 0] == pytest.approx(want_kwh / want_t, rel=1e-9)
        else:
            assert math.isnan(ticks.kwh_per_t[row, 0])
    assert worst < 1e-9

    # Every tick whose window holds no production is exactly 0 t and idle, and only those.
    # moving[k]: how many production deltas the first k readings brought (the first none).
    moving = np.concatenate([[0, 0], np.cumsum(produced > 0)])
    empty = (moving[np.searchsorted(ts, ticks.tick_ms, "right")]
             == moving[np.searchsorted(ts, ticks.tick_ms - day, "right")])
    assert 52 * 300 < int(empty.sum()) < 53 * 360 + quiet  # ~6 idle hours a week
    assert (ticks.production_t[empty, 0] == 0.0).all()
    assert np.array_equal(np.isnan(ticks.kwh_per_t[:, 0]), empty)
    assert np.array_equal(np.isnan(ticks.kgce_per_t[:, 0]), empty)

    # The last tick whose window still holds the year's final minute is not empty ...
    assert ticks.electricity_kwh[year_end + 1_439, 0] == pytest.approx(kwh[minutes - 1])
    # ... and from the next one on the window holds only zeros: exactly 0, idle.
    quiet_rows = slice(year_end + 1_440, None)
    assert ticks.tick_ms[quiet_rows].size >= 1
    for name in ("electricity_kwh", "energy_kgce", "production_t"):
        assert (getattr(ticks, name)[quiet_rows, 0] == 0.0).all(), name
    assert np.isnan(ticks.kgce_per_t[quiet_rows, 0]).all()


@pytest.mark.parametrize("seed", range(5))
def test_an_emptied_window_is_exactly_zero_after_readings_of_any_size(seed: int) -> None:
    """Delta meters whose readings span twelve orders of magnitude (standby trickles
    and full-load bursts), then a quiet day: the 24 h window must come back to
    exactly 0 and idle, not to a rounding residue that looks like production."""
    emit = 60_000
    config = KernelConfig(emit_every_ms=emit, windows_ms=(10 * emit, 1_440 * emit),
                          allowed_lateness_ms=0)
    meters = _meters(delta_mode=True)
    meters.delta_mode[SCALE] = True
    rng = np.random.default_rng(seed)
    busy, quiet = 20_000, 1_500
    ts = T0 + emit * np.arange(1, busy + quiet + 1, dtype=np.int64)
    value = np.zeros(ts.size)
    value[:busy] = rng.uniform(0, 1, busy) * 10.0 ** rng.uniform(-6, 6, busy)
    meter = (np.arange(ts.size) % 2).astype(np.int32)  # electricity and tonnes by turns
    ticks = advance(new_state(config, 1, 2), config, meters,
                    Readings.from_arrays(meter, ts, value))
    last_busy = int(np.searchsorted(ticks.tick_ms, ts[busy - 1]))
    assert ticks.production_t[last_busy, 1] > 0
    emptied = slice(last_busy + 1_440, None)
    assert ticks.tick_ms[emptied].size == quiet - 1_440 + 1
    for name in ("energy_kgce", "electricity_kwh", "production_t"):
        assert (getattr(ticks, name)[emptied] == 0.0).all(), name
    assert np.isnan(ticks.kgce_per_t[emptied]).all()
    assert np.isnan(ticks.kwh_per_t[emptied]).all()


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
