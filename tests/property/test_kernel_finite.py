"""One wild delta must not poison a line: the kernel's sums stay finite while it is in a
window, and once it has left they are what they would be had it never been there.

A counter with a 64-bit rollover that reads a little less than before (a bad read,
or a register written back) has a delta of about 1.8e19 units. The streams here are
the property tests' random streams with such a meter added to line 0; the same
stream with that meter's values all equal (its readings still there, at the same
times, so every watermark and tick is the same, but every delta zero) is the
comparison. Every sum the kernel emits must be finite, and every window that no
longer holds the wild delta must equal the reference's, to 1e-12 relative (of the
magnitudes of the terms in the window, where those cancel).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.kernel_streams import Stream, concatenate
from tests.property.test_kernel_properties import (
    assert_same_ticks,
    run_kernel,
    run_reference,
    streams,
)
from wattline.kernels import MeterTable, Readings, Ticks

SUMS = ("energy_kgce", "electricity_kwh", "production_t", "co2_direct_t", "co2_indirect_t")
RATIOS = ("kgce_per_t", "kwh_per_t", "co2_per_t")
WILD_FROM, WILD_TO = 5e14, 3.0  # a decrease: the delta is 3 + 2**64 - 5e14, about 1.8e19
# kgce, kWh, t, tCO2 direct, tCO2 indirect per unit
FACTORS = {"electricity": (0.1229, 1.0, 0.0, 0.0, 0.0005306),
           "gas": (1.2143, 0.0, 0.0, 0.001994, 0.0), "production": (0.0, 0.0, 1.0, 0.0, 0.0)}


def with_wild_meter(stream: Stream, kind: str, first: int, second: int,
                    wild: bool) -> tuple[Stream, int]:
    """``stream`` with one more meter on line 0 (a counter rolling over at 2**64, of
    ``kind``), whose two readings follow the ``first``-th and ``second``-th messages of
    line 0 (in arrival order), each 1 ms after that message's newest reading; with
    ``wild``, the second one reads less than the first. Also the wild delta's time."""
    mt = stream.meters
    wild_meter = mt.n_meters
    kgce, kwh, tonnes, direct, indirect = FACTORS[kind]
    assert mt.co2_direct_per_unit is not None and mt.co2_indirect_per_unit is not None
    meters = MeterTable(
        line=np.append(mt.line, 0).astype(np.int32),
        kgce_per_unit=np.append(mt.kgce_per_unit, kgce),
        kwh_per_unit=np.append(mt.kwh_per_unit, kwh),
        t_per_unit=np.append(mt.t_per_unit, tonnes),
        delta_mode=np.append(mt.delta_mode, False),
        rollover=np.append(mt.rollover, 2.0**64),
        n_lines=mt.n_lines, max_rate=np.append(mt.max_rate, 0.0),
        co2_direct_per_unit=np.append(mt.co2_direct_per_unit, direct),
        co2_indirect_per_unit=np.append(mt.co2_indirect_per_unit, indirect),
    )
    values = (WILD_FROM, WILD_TO if wild else WILD_FROM)
    times = []
    batches = []
    seen = 0  # messages of line 0 so far
    fresh_id = 1 << 40
    for batch in stream.batches:
        meter, ts, value, message = [], [], [], []
        k = 0
        n = len(batch)
        while k < n:
            end = k + 1
            while end < n and batch.message[end] == batch.message[k]:
                end += 1
            meter += batch.meter[k:end].tolist()
            ts += batch.ts_ms[k:end].tolist()
            value += batch.value[k:end].tolist()
            message += batch.message[k:end].tolist()
            if mt.line[batch.meter[k]] == 0:
                if seen in (first, second):
                    t = int(batch.ts_ms[k:end].max()) + 1
                    meter.append(wild_meter)
                    ts.append(t)
                    value.append(values[len(times)])
                    message.append(fresh_id + len(times))
                    times.append(t)
                seen += 1
            k = end
        batches.append(Readings.from_arrays(meter, ts, value, message))
    assume(len(times) == 2)
    return replace(stream, meters=meters, batches=batches), max(times)


def assert_finite(ticks: Ticks) -> None:
    for name in SUMS:
        assert np.isfinite(getattr(ticks, name)).all(), name
    for name in RATIOS:
        values = getattr(ticks, name)
        assert not np.isinf(values).any(), name


def without_window_holding(ticks: Ticks, t_ms: int, windows_ms: tuple[int, ...]) -> Ticks:
    """``ticks`` with every window that holds time ``t_ms`` (T - W < t <= T) set to NaN
    in every column, so that a comparison skips it."""
    out = replace(ticks, **{n: getattr(ticks, n).copy() for n in (*SUMS, *RATIOS)})
    for w, window in enumerate(windows_ms):
        holds = (ticks.tick_ms - window < t_ms) & (t_ms <= ticks.tick_ms)
        for name in (*SUMS, *RATIOS):
            getattr(out, name)[holds, w] = np.nan
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.filter_too_much])
@given(stream=streams(), kind=st.sampled_from(sorted(FACTORS)), first=st.integers(0, 20),
       gap=st.integers(1, 40))
def test_a_wild_delta_leaves_no_trace_once_it_has_left_the_window(
    stream: Stream, kind: str, first: int, gap: int
) -> None:
    wild, t_wild = with_wild_meter(stream, kind, first, first + gap, wild=True)
    tame, _ = with_wild_meter(stream, kind, first, first + gap, wild=False)
    got, got_drops = run_kernel(wild)
    assert_finite(got)
    # It did enter a window (not dropped as late, not lost in an overflowing buffer).
    column = {"electricity": "electricity_kwh", "gas": "energy_kgce",
              "production": "production_t"}[kind]
    assume(bool((np.abs(getattr(got, column)) > 1e18).any()))
    want, magnitudes = run_reference(tame)
    windows = wild.config.windows_ms
    assert_same_ticks(without_window_holding(got, t_wild, windows),
                      without_window_holding(want, t_wild, windows), magnitudes, rtol=1e-12)
    # The reference, given the wild stream, agrees with the kernel everywhere.
    want_wild, magnitudes_wild = run_reference(wild)
    assert_same_ticks(got, want_wild, magnitudes_wild)
    assert got_drops.tolist() == want_wild.drops.tolist()
    # Any cut into batches gives the same, bit for bit (when the wall clock allows).
    if wild.now_ms is None or len(set(wild.now_ms)) == 1:
        whole, _ = run_kernel(wild, [concatenate(wild.batches)])
        assert np.array_equal(whole.energy_kgce, got.energy_kgce)
