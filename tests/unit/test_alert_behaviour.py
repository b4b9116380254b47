"""Alert rules on small, hand-made tick streams: what an operator would see."""

from __future__ import annotations

import numpy as np

from wattline.kernels import Ticks
from wattline.kernels.alerts import (
    LEVEL_KGCE_PER_T,
    LEVEL_KWH_PER_T,
    RULES,
    AlertConfig,
    LineRules,
    evaluate_alerts,
    new_alert_state,
)

E = 10_000  # tick, ms
CONFIG = AlertConfig(short_window=0, long_window=1, level_window=1, surge_window=0,
                     surge_window_ticks=3, surge_window_hours=0.25, surge_warmup=10)


def ticks(short_kgce_t=None, long_kgce_t=None, energy=None, long_kwh_t=None) -> Ticks:
    """One line's ticks; each argument is one value per tick (missing: a steady default)."""
    n = len(next(x for x in (short_kgce_t, long_kgce_t, energy, long_kwh_t) if x is not None))

    def col(values, default):
        return np.full(n, default) if values is None else np.asarray(values, dtype=float)

    kgce_t = np.stack([col(short_kgce_t, 60.0), col(long_kgce_t, 60.0)], axis=1)
    kwh_t = np.stack([np.full(n, np.nan), col(long_kwh_t, np.nan)], axis=1)
    e = np.repeat(col(energy, 100.0)[:, None], 2, axis=1)
    return Ticks(line=np.zeros(n, dtype=np.int32), tick_ms=(np.arange(n) + 1) * E,
                 energy_kgce=e, electricity_kwh=e, production_t=np.ones((n, 2)),
                 kgce_per_t=kgce_t, kwh_per_t=kwh_t, drops=np.zeros(3, dtype=np.int64),
                 co2_direct_t=np.zeros((n, 2)), co2_indirect_t=np.zeros((n, 2)),
                 co2_per_t=np.zeros((n, 2)))


def events(t: Ticks, rules: LineRules | None = None) -> list[tuple[str, int, int]]:
    out = evaluate_alerts(new_alert_state(1), CONFIG, rules or LineRules.uniform(1), t)
    return [(RULES[r], s, int(ms // E)) for r, s, ms in zip(out.rule, out.state, out.tick_ms,
                                                            strict=True)]


def test_spike_starts_after_three_ticks_above_ratio_and_ends_after_three_below_clear():
    short = [60, 100, 100, 100, 100, 60, 60, 60, 60]
    got = [e for e in events(ticks(short_kgce_t=short)) if e[0] == "spike"]
    assert got == [("spike", 1, 4), ("spike", 0, 8)]


def test_spike_reports_short_intensity_and_its_limit():
    out = evaluate_alerts(new_alert_state(1), CONFIG, LineRules.uniform(1),
                          ticks(short_kgce_t=[100, 100, 100], long_kgce_t=[60, 60, 60]))
    assert out.value.tolist() == [100.0] and out.threshold.tolist() == [90.0]


def test_spike_hovering_between_clear_and_fire_ratio_does_not_flap():
    # 1.3x is under the 1.5x start but above the 1.2x end: once started, it stays.
    short = [100, 100, 100] + [78, 95, 78, 95, 78, 95] * 3
    got = [e for e in events(ticks(short_kgce_t=short)) if e[0] == "spike"]
    assert got == [("spike", 1, 3)]


def test_spike_interrupted_run_does_not_start():
    short = [100, 100, 60, 100, 100, 60, 100, 100]
    assert [e for e in events(ticks(short_kgce_t=short)) if e[0] == "spike"] == []


def test_spike_ends_when_the_line_stops_producing():
    nan = float("nan")
    short = [100, 100, 100, nan, nan, nan]
    got = [e for e in events(ticks(short_kgce_t=short)) if e[0] == "spike"]
    assert got == [("spike", 1, 3), ("spike", 0, 6)]


def test_surge_fires_on_a_step_and_lasts_while_the_band_learns_slowly():
    rate = [100.0 + (i % 3) for i in range(40)] + [300.0] * 100 + [100.0] * 10
    got = [e for e in events(ticks(energy=[r * 0.25 for r in rate])) if e[0] == "surge"]
    assert got[0] == ("surge", 1, 43)  # three ticks over the band
    assert got[1][:2] == ("surge", 0) and got[1][2] >= 43 + 60  # held for 10 minutes at least


def test_a_sustained_new_level_is_absorbed_and_the_surge_ends():
    rate = [100.0] * 40 + [150.0] * 600
    got = [e for e in events(ticks(energy=[r * 0.25 for r in rate])) if e[0] == "surge"]
    assert [e[:2] for e in got] == [("surge", 1), ("surge", 0)]


def test_surge_waits_for_a_full_window_and_warmup():
    rate = [10.0] * 5 + [500.0] * 10
    assert [e for e in events(ticks(energy=rate)) if e[0] == "surge"] == []


def test_a_slow_ramp_is_not_a_surge():
    rate = np.linspace(100.0, 200.0, 300)
    assert [e for e in events(ticks(energy=rate * 0.25)) if e[0] == "surge"] == []


def test_above_baseline_and_benchmark_in_kwh_per_t():
    rules = LineRules.uniform(1)
    rules.level_unit[:] = LEVEL_KWH_PER_T
    rules.baseline[:] = 13_350.0
    rules.benchmark[:] = 13_000.0
    kwh = [12_900] * 2 + [13_200] * 4 + [13_500] * 4 + [13_200] * 4 + [12_700] * 4
    got = [e for e in events(ticks(long_kwh_t=kwh), rules) if e[0].startswith("above")]
    assert got == [
        ("above_benchmark", 1, 5),
        ("above_baseline", 1, 9),
        # 13,200 is under the baseline but not 2 % under: the alert holds...
        # ...until 12,700, which clears both.
        ("above_baseline", 0, 17),
        ("above_benchmark", 0, 17),
    ]


def test_a_negative_level_clears_below_it_not_above_where_it_fires():
    rules = LineRules.uniform(1)
    rules.level_unit[:] = LEVEL_KGCE_PER_T
    rules.baseline[:] = -10.0  # a BOF with gas recovery
    # -9.9 is above (worse than) -10; -10.1 is better, but not 2 % of 10 better: the
    # alert holds; -10.3 clears it.
    v = [-12.0] * 2 + [-9.9] * 4 + [-10.1] * 4 + [-10.3] * 4
    got = [e for e in events(ticks(long_kgce_t=v), rules) if e[0] == "above_baseline"]
    assert got == [("above_baseline", 1, 5), ("above_baseline", 0, 13)]


def test_a_negative_level_hovering_between_clear_and_fire_does_not_flap():
    rules = LineRules.uniform(1)
    rules.level_unit[:] = LEVEL_KGCE_PER_T
    rules.baseline[:] = -10.0
    v = [-9.5] * 3 + [-9.95, -10.1, -9.9, -10.15] * 5
    got = [e for e in events(ticks(long_kgce_t=v), rules) if e[0] == "above_baseline"]
    assert got == [("above_baseline", 1, 3)]


def _batches(kgce_t: list[float]):
    from wattline.kernels.batches import Batches

    n = len(kgce_t)
    k = np.asarray(kgce_t, dtype=float)
    return Batches(line=np.zeros(n, dtype=np.int32), close_ms=(np.arange(n) + 1) * E,
                   start_ms=np.zeros(n, dtype=np.int64), energy_kgce=k, electricity_kwh=k,
                   production_t=np.ones(n), kgce_per_t=k, kwh_per_t=k,
                   co2_direct_t=np.zeros(n), co2_indirect_t=np.zeros(n), co2_per_t=np.zeros(n))


def test_a_batch_line_spikes_on_a_heat_far_above_the_median_of_the_last_20():
    from wattline.kernels.alerts import evaluate_batch_alerts

    rules = LineRules.uniform(1, for_ticks=1)
    rules.batch_line[:] = True
    state = new_alert_state(1)
    # 25 ordinary heats, then one at twice their median, then an ordinary one again.
    heats = [60.0, 62.0, 58.0, 61.0, 59.0] * 5 + [125.0, 60.0]
    out = evaluate_batch_alerts(state, rules, _batches(heats))
    assert [(int(s), int(t // E)) for s, t in zip(out.state, out.tick_ms, strict=True)] == [
        (1, 26), (0, 27)]
    assert out.threshold.tolist()[0] == 1.5 * 60.0  # the median of the 20 before it
    assert out.value.tolist()[0] == 125.0


def test_no_alert_starts_on_a_line_whose_energy_rate_is_below_idle():
    rules = LineRules.uniform(1)
    rules.level_unit[:] = LEVEL_KGCE_PER_T
    rules.baseline[:] = 50.0
    # 100 kgce per tick in a 15 min window: 400 kgce/h, above 60 kgce/t throughout.
    rules.idle_kgce_per_h[:] = 1000.0
    assert [e for e in events(ticks(long_kgce_t=[60.0] * 6), rules)] == []
    rules.idle_kgce_per_h[:] = 100.0
    assert events(ticks(long_kgce_t=[60.0] * 6), rules) == [("above_baseline", 1, 3)]
