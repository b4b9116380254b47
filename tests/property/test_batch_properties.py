"""The Numba batch kernel against the plain-Python reference on random logs (hypothesis).

Logs mix lines, energy meters (import and export: negative deltas), counter
baselines (zero deltas), production of random size and spacing (none for long
stretches, several weighers closing at one time, delta-mode corrections of zero or
less), energy and production stamped at the same time, and calls cut at random times
with each call's entries in a random order (the kernel sorts them as the rule says).
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernel_streams import random_stream
from wattline.kernels import advance, new_state
from wattline.kernels.batches import (
    Batches,
    FinalisedDeltas,
    batch_state_arrays,
    batch_state_from_arrays,
    close_batches,
    new_batch_state,
)
from wattline.kernels.naive import ReferenceState, reference_advance
from wattline.kernels.naive_batches import ReferenceBatches, reference_batches

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

Entry = tuple[int, int, float, float, float, float, float]
"""line, ts, kgce, kwh, t, tCO2 direct, tCO2 indirect"""


def random_log(seed: int, n_lines: int, n: int) -> list[Entry]:
    """Entries in time order per line (ties included)."""
    rng = random.Random(seed)
    out: list[Entry] = []
    for line in range(n_lines):
        ts = 1_732_406_400_000 + rng.randrange(0, 5_000)
        every = rng.choice((1, 3, 10, 50))  # about one production entry in every
        for _ in range(n):
            ts += rng.choice((0, 0, 1, 250, 1_000, 60_000))
            kind = rng.random()
            if kind < 1 / every:
                t = rng.choice((0.25, 1.0, 87.5, 120.0, 0.0, -0.5, 1e-300))
                out.append((line, ts, 0.0, 0.0, t, 0.0, 0.0))
            elif kind < 0.1:
                out.append((line, ts, 0.0, 0.0, 0.0, 0.0, 0.0))  # a counter's baseline
            else:
                kwh = rng.uniform(0.0, 900.0) * rng.choice((1.0, 1.0, -1.0))  # export
                electric = rng.random() < 0.6
                kgce = kwh * (0.1229 if electric else 1.2143)
                # Electricity at a grid factor (scope 2), else natural gas burnt (scope 1).
                direct = 0.0 if electric else kwh * 0.001994
                indirect = kwh * 0.0005306 if electric else 0.0
                out.append((line, ts, kgce, kwh if electric else 0.0, 0.0, direct, indirect))
    return out


def calls(rng: random.Random, log: list[Entry], n_calls: int) -> list[list[Entry]]:
    """The log cut at random times (as ticks cut it), each call's entries shuffled."""
    times = sorted({e[1] for e in log})
    cuts = sorted(rng.sample(times, min(len(times), max(0, n_calls - 1))))
    out: list[list[Entry]] = [[] for _ in range(len(cuts) + 1)]
    for e in log:
        out[sum(1 for c in cuts if e[1] > c)].append(e)
    for part in out:
        rng.shuffle(part)
    return out


def as_deltas(entries: list[Entry]) -> FinalisedDeltas:
    if not entries:
        return FinalisedDeltas.empty()
    cols = list(zip(*entries, strict=True))
    return FinalisedDeltas(*(np.array(c) for c in cols))


def rows(batches: Batches) -> list[tuple]:
    return list(zip(batches.line.tolist(), batches.close_ms.tolist(), batches.start_ms.tolist(),
                    batches.energy_kgce.tolist(), batches.electricity_kwh.tolist(),
                    batches.production_t.tolist(), batches.kgce_per_t.tolist(),
                    batches.kwh_per_t.tolist(), batches.co2_direct_t.tolist(),
                    batches.co2_indirect_t.tolist(), batches.co2_per_t.tolist(), strict=True))


# Per value column of ``rows``: the absolute slack for net sums that cancel (the CO2
# columns are about a thousandth of the energy ones).
ABS_SLACK = (1e-6,) * 5 + (1e-9,) * 3


def assert_same(got: list[tuple], want: list[tuple]) -> None:
    assert [r[:3] for r in got] == [r[:3] for r in want]
    for g, w in zip(got, want, strict=True):
        for a, b, slack in zip(g[3:], w[3:], ABS_SLACK, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9,
                                                                          abs=slack), (g, w)


@st.composite
def logs(draw: st.DrawFn) -> tuple[int, list[list[Entry]]]:
    n_lines = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    log = random_log(seed, n_lines, draw(st.integers(0, 80)))
    return n_lines, calls(random.Random(seed + 1), log, draw(st.integers(1, 8)))


@PROPERTY_SETTINGS
@given(logs())
def test_batch_kernel_matches_the_reference(case) -> None:
    n_lines, parts = case
    state, ref = new_batch_state(n_lines), ReferenceBatches()
    got, want = [], []
    for part in parts:
        got += rows(close_batches(state, as_deltas(part)))
        want += reference_batches(ref, *(list(c) for c in zip(*part, strict=True))) \
            if part else []
    # Lines come in increasing order within a call, so compare per line.
    for line in range(n_lines):
        assert_same([r for r in got if r[0] == line], [r for r in want if r[0] == line])


@PROPERTY_SETTINGS
@given(logs(), st.integers(0, 100))
def test_batches_cut_into_calls_and_restored_equal_one_call(case, cut_percent) -> None:
    n_lines, parts = case
    whole = rows(close_batches(new_batch_state(n_lines), as_deltas(list(itertools.chain(*parts)))))
    cut = len(parts) * cut_percent // 100
    state = new_batch_state(n_lines)
    split = []
    for part in parts[:cut]:
        split += rows(close_batches(state, as_deltas(part)))
    state = batch_state_from_arrays({k: v.copy() for k, v in batch_state_arrays(state).items()})
    for part in parts[cut:]:
        split += rows(close_batches(state, as_deltas(part)))
    for line in range(n_lines):
        assert_same([r for r in split if r[0] == line], [r for r in whole if r[0] == line])


@PROPERTY_SETTINGS
@given(logs())
def test_batches_tile_each_lines_time_and_hold_all_its_energy(case) -> None:
    """Each batch starts where the previous one closed; together with the open batch
    they hold every entry's energy, and every positive production closes one."""
    n_lines, parts = case
    state = new_batch_state(n_lines)
    closed = []
    for part in parts:
        closed += rows(close_batches(state, as_deltas(part)))
    log = list(itertools.chain(*parts))
    for line in range(n_lines):
        mine = [r for r in closed if r[0] == line]
        entries = [e for e in log if e[0] == line]
        assert len(mine) == sum(1 for e in entries if e[4] > 0)
        if entries:
            assert not mine or mine[0][2] == min(e[1] for e in entries)
        for before, after in itertools.pairwise(mine):
            assert after[2] == before[1]
            assert before[1] <= after[1]
        total = math.fsum(e[2] for e in entries)
        held = math.fsum([r[3] for r in mine] + [float(state.sums[line, 0]),
                                                  float(state.comps[line, 0])])
        scale = math.fsum(abs(e[2]) for e in entries)
        assert abs(held - total) <= 1e-9 * max(scale, 1.0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 4), st.integers(1, 60),
       st.integers(1, 6), st.sampled_from((0.0, 0.5)))
def test_batches_from_meter_readings_match_the_references_end_to_end(
        seed: int, n_lines: int, meters_per_line: int, n_per_meter: int, n_batches: int,
        max_rate_share: float) -> None:
    """Readings through ``advance`` (every line a batch line) and ``close_batches`` give
    the batches that the intensity reference's finalised readings give the batch
    reference."""
    stream = random_stream(seed, n_lines=n_lines, meters_per_line=meters_per_line,
                           n_per_meter=n_per_meter, emit_every_ms=10_000, windows=(6,),
                           lateness_ms=5_000, jitter_ms=10_000, duplicate_rate=0.1,
                           reset_rate=0.05, n_batches=n_batches,
                           max_rate_share=max_rate_share, bad_read_rate=0.05)
    logged = np.ones(n_lines, dtype=np.bool_)
    state = new_state(stream.config, n_lines, stream.meters.n_meters)
    batch_state = new_batch_state(n_lines)
    ref = ReferenceState(logged=frozenset(range(n_lines)))
    ref_batches = ReferenceBatches()
    got, want = [], []
    for k, readings in enumerate(stream.batches):
        ticks = advance(state, stream.config, stream.meters, readings, now_ms=stream.now_of(k),
                        logged_lines=logged)
        assert ticks.finalised is not None
        got += rows(close_batches(batch_state, ticks.finalised))
        ref.finalised.clear()
        reference_advance(ref, stream.config, stream.meters, readings, now_ms=stream.now_of(k))
        if ref.finalised:
            want += reference_batches(ref_batches, *(list(c) for c in zip(*ref.finalised,
                                                                          strict=True)))
    for line in range(n_lines):
        assert_same([r for r in got if r[0] == line], [r for r in want if r[0] == line])
