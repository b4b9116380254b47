"""The Numba alert rules against the plain-Python reference on random ticks (hypothesis).

Tick streams mix lines, idle stretches (NaN intensity), zero and negative long
windows, positive, zero and negative national levels (a BOF's), values drawn from a
few levels so that comparisons land exactly on a limit, steps and spikes in the
energy rate, and calls cut at random rows. Kernel and reference must give the same
events with bit-identical values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattline.kernels import Ticks
from wattline.kernels.alerts import (
    LEVEL_KGCE_PER_T,
    LEVEL_KWH_PER_T,
    LEVEL_NONE,
    RULES,
    AlertConfig,
    LineRules,
    alert_state_arrays,
    alert_state_from_arrays,
    evaluate_alerts,
    evaluate_batch_alerts,
    new_alert_state,
)
from wattline.kernels.batches import Batches
from wattline.kernels.naive_alerts import (
    ReferenceAlerts,
    reference_alerts,
    reference_batch_alerts,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
LEVELS = (0.0, 50.0, 60.0, 61.0, 72.0, 90.0, 100.0, 150.0, 1e4,
          -30.0, -10.2, -10.0, -9.8, -5.0)  # a BOF's negative levels and either side of them


@st.composite
def tick_streams(draw: st.DrawFn) -> tuple[Ticks, AlertConfig, LineRules]:
    n_lines = draw(st.integers(1, 3))
    n_windows = 3
    n = draw(st.integers(0, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    line = rng.integers(0, n_lines, n).astype(np.int32)
    tick_ms = np.zeros(n, dtype=np.int64)
    for ln in range(n_lines):
        rows = np.nonzero(line == ln)[0]
        tick_ms[rows] = (np.arange(rows.size) + 100) * 10_000
    idle_rate = draw(st.sampled_from((0.0, 0.1, 0.5)))
    kgce_t = rng.choice(LEVELS, size=(n, n_windows)) * rng.choice((1.0, 1.0, 1.3, 2.0),
                                                                     size=(n, n_windows))
    kgce_t[rng.random((n, n_windows)) < idle_rate] = np.nan
    kwh_t = rng.choice((12_000.0, 13_000.0, 13_100.0, 13_350.0, 14_000.0, np.nan),
                       size=(n, n_windows))
    base_rate = rng.choice((0.0, 10.0, 100.0), size=(n, 1))
    surges = np.where(rng.random((n, 1)) < draw(st.sampled_from((0.0, 0.05, 0.3))),
                      rng.choice((3.0, 10.0)), 1.0)
    energy = base_rate * surges * rng.choice((1.0, 1.01, 0.99), size=(n, n_windows))
    ticks = Ticks(
        line=line, tick_ms=tick_ms, energy_kgce=energy, electricity_kwh=energy * 8,
        production_t=np.ones((n, n_windows)), kgce_per_t=kgce_t, kwh_per_t=kwh_t,
        drops=np.zeros(3, dtype=np.int64), co2_direct_t=np.zeros((n, n_windows)),
        co2_indirect_t=np.zeros((n, n_windows)), co2_per_t=np.zeros((n, n_windows)),
    )
    config = AlertConfig(
        short_window=0, long_window=2, level_window=draw(st.integers(0, 2)),
        surge_window=draw(st.integers(0, 2)), surge_window_ticks=draw(st.integers(1, 20)),
        surge_window_hours=draw(st.sampled_from((0.25, 1.0))),
        surge_alpha=draw(st.sampled_from((0.05, 0.3, 1.0))),
        surge_warmup=draw(st.integers(1, 40)),
        surge_clear_k=draw(st.sampled_from((0.0, 2.0))),
        surge_min_band=draw(st.sampled_from((0.0, 0.05))),
        level_clear_margin=draw(st.sampled_from((0.0, 0.02))),
    )
    ratio = np.array(draw(st.lists(st.sampled_from((1.0, 1.3, 1.5)), min_size=n_lines,
                                   max_size=n_lines)))
    rules = LineRules(
        for_ticks=np.array(draw(st.lists(st.integers(1, 4), min_size=n_lines,
                                         max_size=n_lines))),
        spike_ratio=ratio,
        spike_clear_ratio=ratio * draw(st.sampled_from((1.0, 0.8))),
        surge_k=np.full(n_lines, draw(st.sampled_from((2.0, 4.0)))),
        level_unit=np.array(draw(st.lists(st.sampled_from(
            (LEVEL_NONE, LEVEL_KGCE_PER_T, LEVEL_KWH_PER_T)), min_size=n_lines,
            max_size=n_lines))),
        baseline=np.array(draw(st.lists(st.sampled_from((72.0, 13_350.0, -10.0, 0.0, math.nan)),
                                        min_size=n_lines, max_size=n_lines))),
        benchmark=np.array(draw(st.lists(st.sampled_from((61.0, 13_000.0, -30.0, math.nan)),
                                         min_size=n_lines, max_size=n_lines))),
        batch_line=np.array(draw(st.lists(st.booleans(), min_size=n_lines, max_size=n_lines))),
        # Rates are 0, 10, 100 x surges x hours: limits on either side and at them.
        idle_kgce_per_h=np.array(draw(st.lists(st.sampled_from((math.nan, math.nan, 10.0, 50.0,
                                                                400.0)),
                                                min_size=n_lines, max_size=n_lines))),
    )
    return ticks, config, rules


def _rows(ticks: Ticks, start: int, stop: int) -> Ticks:
    return Ticks(*(getattr(ticks, name)[start:stop] for name in
                   ("line", "tick_ms", "energy_kgce", "electricity_kwh", "production_t",
                    "kgce_per_t", "kwh_per_t")), drops=ticks.drops,
                 **{name: getattr(ticks, name)[start:stop]
                    for name in ("co2_direct_t", "co2_indirect_t", "co2_per_t")})


def _as_tuples(events) -> list[tuple]:
    return [(int(ln), int(t), RULES[int(r)], int(s), float(v), float(th))
            for ln, t, r, s, v, th in zip(events.line, events.tick_ms, events.rule,
                                           events.state, events.value, events.threshold,
                                           strict=True)]


def _same(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert g[:4] == w[:4], (g, w)
        for a, b in zip(g[4:], w[4:], strict=True):
            assert (math.isnan(a) and math.isnan(b)) or a == b, (g, w)


@PROPERTY_SETTINGS
@given(tick_streams())
def test_alert_kernel_matches_the_reference(case) -> None:
    ticks, config, rules = case
    got = evaluate_alerts(new_alert_state(rules.n_lines), config, rules, ticks)
    want = reference_alerts(ReferenceAlerts(), config, rules, ticks)
    _same(_as_tuples(got), want)


@PROPERTY_SETTINGS
@given(tick_streams(), st.lists(st.integers(0, 300), max_size=4))
def test_alerts_cut_into_calls_and_restored_equal_one_call(case, cuts) -> None:
    ticks, config, rules = case
    whole = _as_tuples(evaluate_alerts(new_alert_state(rules.n_lines), config, rules, ticks))
    bounds = [0, *sorted(c for c in cuts if c <= len(ticks)), len(ticks)]
    state = new_alert_state(rules.n_lines)
    parts: list[tuple] = []
    for a, b in itertools.pairwise(bounds):
        parts += _as_tuples(evaluate_alerts(state, config, rules, _rows(ticks, a, b)))
        state = alert_state_from_arrays({k: v.copy() for k, v in
                                         alert_state_arrays(state).items()})
    _same(parts, whole)


@PROPERTY_SETTINGS
@given(tick_streams())
def test_alerts_alternate_start_and_end_per_line_and_rule(case) -> None:
    ticks, config, rules = case
    events = _as_tuples(evaluate_alerts(new_alert_state(rules.n_lines), config, rules, ticks))
    last: dict[tuple[int, str], int] = {}
    for line, _, rule, state, _, _ in events:
        assert last.get((line, rule), 0) != state, "an alert started twice or ended unstarted"
        last[(line, rule)] = state


@st.composite
def batch_streams(draw: st.DrawFn):
    """Ticks and, after each of a few cuts of them, the batches closed meanwhile."""
    ticks, config, rules = draw(tick_streams())
    n_cuts = draw(st.integers(0, 4))
    bounds = [0, *sorted(draw(st.lists(st.integers(0, len(ticks)), min_size=n_cuts,
                                       max_size=n_cuts))), len(ticks)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    calls = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        n = int(rng.integers(0, 30))
        kgce_t = rng.choice((40.0, 60.0, 61.0, 90.0, 100.0, 200.0, -5.0, 0.0, np.nan), size=n)
        batches = Batches(
            line=rng.integers(0, rules.n_lines, n).astype(np.int32),
            close_ms=np.full(n, 10_000 * (k + 1), dtype=np.int64),
            start_ms=np.zeros(n, dtype=np.int64), energy_kgce=kgce_t,
            electricity_kwh=kgce_t, production_t=np.ones(n), kgce_per_t=kgce_t,
            kwh_per_t=kgce_t, co2_direct_t=np.zeros(n), co2_indirect_t=np.zeros(n),
            co2_per_t=np.zeros(n))
        calls.append((_rows(ticks, a, b), batches))
    return config, rules, calls


@PROPERTY_SETTINGS
@given(batch_streams())
def test_batch_spike_and_idle_match_the_reference(case) -> None:
    config, rules, calls = case
    state, ref = new_alert_state(rules.n_lines), ReferenceAlerts()
    got: list[tuple] = []
    want: list[tuple] = []
    for ticks, batches in calls:
        on_ticks = _as_tuples(evaluate_alerts(state, config, rules, ticks))
        # A batch line's spike rule judges batches only: no tick starts it.
        assert not [e for e in on_ticks if e[2] == "spike" and e[3] == 1
                    and rules.batch_line[e[0]]]
        got += on_ticks
        got += _as_tuples(evaluate_batch_alerts(state, rules, batches))
        want += reference_alerts(ref, config, rules, ticks)
        want += reference_batch_alerts(ref, rules, batches.line.tolist(),
                                       batches.close_ms.tolist(), batches.kgce_per_t.tolist())
        state = alert_state_from_arrays({k: v.copy() for k, v in
                                         alert_state_arrays(state).items()})
    _same(got, want)
