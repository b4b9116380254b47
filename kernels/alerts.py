"""Alert rules over intensity ticks: spike, power surge, above national levels.

``evaluate_alerts`` takes the ticks that ``advance`` emitted and walks them in
order (each line's ticks come in tick order). For every line and rule it keeps
whether the alert is active and a run of consecutive ticks; an alert starts
after ``for_ticks`` consecutive ticks on which the rule *fires*, and ends after
``for_ticks`` consecutive ticks on which it *clears*. Fire and clear limits
differ (hysteresis), so a value hovering at the limit cannot flap; a tick that
neither fires nor clears breaks the run. The rules, exactly:

- **spike** (``RULE_SPIKE``): ``s`` = ``kgce_per_t`` of the short window, ``l``
  of the long window. Fires while the line is producing (``s`` present), ``l > 0``
  and ``s > spike_ratio * l``; clears when the short window is idle or
  ``s <= spike_clear_ratio * l``. value ``s``, threshold ``spike_ratio * l``.
- **surge** (``RULE_SURGE``): ``x`` = energy of the surge window divided by its
  length, in kgce per hour, from counter deltas. A robust rolling band, per line:
  an exponentially weighted mean and mean absolute deviation (weight
  ``surge_alpha``) of ``x``. With ``band = max(dev, surge_min_band * |mean|,
  1e-9)`` the rule fires when ``x > mean + surge_k * band`` and clears when ``x <=
  mean + surge_clear_k * band``. The band is judged *before* it learns the tick,
  and it learns ``min(x, mean + surge_k * band)``, so a surge cannot widen the
  band that detects it; while a surge alert is active it learns
  ``SURGE_ACTIVE_SLOWDOWN`` times as fast, so a surge holds its alert while it
  lasts, but a new level that persists is absorbed (measured on a noisy step with
  a 1 min surge window: after 9 min for +30 %, 35 min for +200 %) rather than
  alerting for ever. The rule does nothing until the line has emitted as many
  ticks as the surge window holds (the window is full), then learns for
  ``surge_warmup`` ticks before it may fire. value ``x``, threshold the upper limit.
  A short surge window (the daemon's default is 1 min) sees a step at once; a
  15 min window turns it into a ramp that the band follows.
- **above_baseline** / **above_benchmark** (``RULE_ABOVE_BASELINE``,
  ``RULE_ABOVE_BENCHMARK``): for a line whose product has national levels, ``v``
  = the level window's intensity in the level's unit (``kgce_per_t`` for kgce/t,
  ``kwh_per_t`` for kWh/t). Fires when ``v`` is above the level; clears when the
  window is idle or ``v <= level - level_clear_margin * |level|`` (below the level
  whatever its sign: a negative level's clear limit is more negative). The baseline is the
  worse (higher) level, the one a line must not exceed; exceeding the benchmark
  is the softer notice. value ``v``, threshold the level.

No I/O, no wall clock: the stale-line rule, which is about the absence of
ticks, is evaluated by the pipeline. ``wattline.kernels.naive_alerts`` states
the same rules in plain Python, and the property tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba as nb
import numpy as np

from wattline.kernels.batches import Batches
from wattline.kernels.state import Ticks

RULES = ("spike", "surge", "above_baseline", "above_benchmark")
"""The kernel's rules, in the order of ``AlertState``'s rule axis."""
RULE_SPIKE, RULE_SURGE, RULE_ABOVE_BASELINE, RULE_ABOVE_BENCHMARK = range(4)

SURGE_ACTIVE_SLOWDOWN = 0.1
"""While a surge alert is active its band learns this much slower."""

BATCH_HISTORY = 20
"""Batches whose median the spike rule of a batch line compares the newest one with."""

LEVEL_NONE, LEVEL_KGCE_PER_T, LEVEL_KWH_PER_T = -1, 0, 1
"""Which intensity a line's national levels are stated in."""


@dataclass(frozen=True)
class AlertConfig:
    """Settings shared by every line: which windows the rules read, and band tuning.

    Window arguments are indices into the kernel's configured windows.
    """

    short_window: int
    long_window: int
    level_window: int
    surge_window: int
    surge_window_ticks: int
    surge_window_hours: float
    surge_alpha: float = 0.05
    surge_warmup: int = 30
    surge_clear_k: float = 2.0
    surge_min_band: float = 0.05
    level_clear_margin: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.surge_alpha <= 1.0:
            raise ValueError(f"surge_alpha must lie in (0, 1], got {self.surge_alpha}")
        if self.surge_warmup < 1:
            raise ValueError("surge_warmup must be at least 1 tick")
        if self.surge_window_hours <= 0 or self.surge_window_ticks < 1:
            raise ValueError("the surge window must be positive")
        if not 0.0 <= self.level_clear_margin < 1.0:
            raise ValueError("level_clear_margin must lie in [0, 1)")


@dataclass
class LineRules:
    """Per-line rule settings, one entry per kernel line (index as in ``Ticks.line``).

    ``baseline`` and ``benchmark`` are NaN where the line has no product or the
    product has no such level; ``level_unit`` says which intensity they compare to.
    """

    for_ticks: np.ndarray  # int64 [L], >= 1
    spike_ratio: np.ndarray  # float64 [L]
    spike_clear_ratio: np.ndarray  # float64 [L], <= spike_ratio
    surge_k: np.ndarray  # float64 [L]
    level_unit: np.ndarray  # int64 [L], LEVEL_*
    baseline: np.ndarray  # float64 [L]
    benchmark: np.ndarray  # float64 [L]
    batch_line: np.ndarray | None = None  # bool [L]: the spike rule judges batches
    idle_kgce_per_h: np.ndarray | None = None  # float64 [L]: idle below this rate; NaN: none

    def __post_init__(self) -> None:
        self.for_ticks = np.ascontiguousarray(self.for_ticks, dtype=np.int64)
        self.level_unit = np.ascontiguousarray(self.level_unit, dtype=np.int64)
        n = self.for_ticks.shape[0]
        if self.batch_line is None:
            self.batch_line = np.zeros(n, dtype=np.bool_)
        if self.idle_kgce_per_h is None:
            self.idle_kgce_per_h = np.full(n, np.nan)
        self.batch_line = np.ascontiguousarray(self.batch_line, dtype=np.bool_)
        for name in ("spike_ratio", "spike_clear_ratio", "surge_k", "baseline", "benchmark",
                     "idle_kgce_per_h"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        for f in fields(self):
            if getattr(self, f.name).shape != (n,):
                raise ValueError(f"line rules column {f.name} must have {n} entries")
        if n and self.for_ticks.min() < 1:
            raise ValueError("for_ticks must be at least 1")
        if (self.spike_clear_ratio > self.spike_ratio).any():
            raise ValueError("spike_clear_ratio must not exceed spike_ratio")

    @classmethod
    def uniform(cls, n_lines: int, for_ticks: int = 3, spike_ratio: float = 1.5,
                spike_clear_ratio: float = 1.2, surge_k: float = 4.0) -> LineRules:
        """Every line with the same settings and no national levels."""
        return cls(
            for_ticks=np.full(n_lines, for_ticks),
            spike_ratio=np.full(n_lines, spike_ratio),
            spike_clear_ratio=np.full(n_lines, spike_clear_ratio),
            surge_k=np.full(n_lines, surge_k),
            level_unit=np.full(n_lines, LEVEL_NONE),
            baseline=np.full(n_lines, np.nan),
            benchmark=np.full(n_lines, np.nan),
        )

    @property
    def n_lines(self) -> int:
        return int(self.for_ticks.shape[0])


@dataclass
class AlertState:
    """What the rules remember between calls, per line (and rule)."""

    active: np.ndarray  # bool [L, R]
    run: np.ndarray  # int64 [L, R], consecutive fire (inactive) or clear (active) ticks
    since_ms: np.ndarray  # int64 [L, R], tick the active alert started at
    start_value: np.ndarray  # float64 [L, R], its value then
    start_threshold: np.ndarray  # float64 [L, R], its threshold then
    ticks_seen: np.ndarray  # int64 [L], ticks evaluated, capped at the surge window's length
    surge_n: np.ndarray  # int64 [L], ticks the surge band has learnt
    surge_mean: np.ndarray  # float64 [L]
    surge_dev: np.ndarray  # float64 [L]
    idle: np.ndarray  # bool [L], whether the line was idle at its newest tick
    batch_kgce_t: np.ndarray  # float64 [L, BATCH_HISTORY], the last batches' kgce/t (a ring)
    batch_n: np.ndarray  # int64 [L], batches taken into the ring so far

    @property
    def n_lines(self) -> int:
        return int(self.active.shape[0])


def new_alert_state(n_lines: int) -> AlertState:
    R = len(RULES)
    return AlertState(
        active=np.zeros((n_lines, R), dtype=np.bool_),
        run=np.zeros((n_lines, R), dtype=np.int64),
        since_ms=np.zeros((n_lines, R), dtype=np.int64),
        start_value=np.zeros((n_lines, R), dtype=np.float64),
        start_threshold=np.zeros((n_lines, R), dtype=np.float64),
        ticks_seen=np.zeros(n_lines, dtype=np.int64),
        surge_n=np.zeros(n_lines, dtype=np.int64),
        surge_mean=np.zeros(n_lines, dtype=np.float64),
        surge_dev=np.zeros(n_lines, dtype=np.float64),
        idle=np.zeros(n_lines, dtype=np.bool_),
        batch_kgce_t=np.zeros((n_lines, BATCH_HISTORY), dtype=np.float64),
        batch_n=np.zeros(n_lines, dtype=np.int64),
    )


def grow_alert_state(state: AlertState, n_lines: int) -> None:
    """Make room for ``n_lines`` lines in place; new lines start with nothing active."""
    if n_lines <= state.n_lines:
        return
    grown = new_alert_state(n_lines)
    for f in fields(AlertState):
        old = getattr(state, f.name)
        new = getattr(grown, f.name)
        new[: old.shape[0]] = old
        setattr(state, f.name, new)


def alert_state_arrays(state: AlertState) -> dict[str, np.ndarray]:
    """The state as named arrays, for a checkpoint."""
    return {f.name: getattr(state, f.name) for f in fields(AlertState)}


def alert_state_from_arrays(arrays: dict[str, np.ndarray]) -> AlertState:
    """The inverse of ``alert_state_arrays``; arrays a state saved before batch lines lacks
    start as a new state's (not idle, no batch seen)."""
    fresh = new_alert_state(int(arrays["active"].shape[0]))
    return AlertState(**{f.name: np.ascontiguousarray(arrays.get(f.name, getattr(fresh, f.name)))
                         for f in fields(AlertState)})


@dataclass
class AlertEvents:
    """Alert starts (``state`` 1) and ends (0), in the order they happened."""

    line: np.ndarray  # int32 [n]
    tick_ms: np.ndarray  # int64 [n]
    rule: np.ndarray  # int64 [n], index into RULES
    state: np.ndarray  # int8 [n]
    value: np.ndarray  # float64 [n]
    threshold: np.ndarray  # float64 [n]

    def __len__(self) -> int:
        return int(self.line.shape[0])


@nb.njit(cache=True, inline="always")
def _step(active, run, since_ms, start_value, start_threshold, line, rule, fire, clear,
          for_ticks, tick_ms, value, threshold,
          out_line, out_tick, out_rule, out_state, out_value, out_threshold, n_out):
    """One tick of one rule's hysteresis; returns the new number of events."""
    if not active[line, rule]:
        if fire:
            run[line, rule] += 1
        else:
            run[line, rule] = 0
        if run[line, rule] >= for_ticks:
            active[line, rule] = True
            run[line, rule] = 0
            since_ms[line, rule] = tick_ms
            start_value[line, rule] = value
            start_threshold[line, rule] = threshold
            state = 1
        else:
            return n_out
    else:
        if clear:
            run[line, rule] += 1
        else:
            run[line, rule] = 0
        if run[line, rule] >= for_ticks:
            active[line, rule] = False
            run[line, rule] = 0
            state = 0
        else:
            return n_out
    out_line[n_out] = line
    out_tick[n_out] = tick_ms
    out_rule[n_out] = rule
    out_state[n_out] = state
    out_value[n_out] = value
    out_threshold[n_out] = threshold
    return n_out + 1


@nb.njit(cache=True, inline="always")
def _level_clear(level, margin):
    """Where a level alert clears: ``margin`` of the level's magnitude below it, on the
    safe side whatever its sign (a BOF's baseline of -10 clears at -10.2, not -9.8)."""
    return level * (1.0 - margin) if level >= 0.0 else level * (1.0 + margin)


@nb.njit(cache=True)
def _evaluate(t_line, t_tick, energy, kgce_t, kwh_t,
              short_w, long_w, level_w, surge_w, surge_ticks, surge_hours,
              alpha, warmup, clear_k, min_band, level_margin,
              for_ticks, spike_ratio, spike_clear, surge_k, level_unit, baseline, benchmark,
              batch_line, idle_rate,
              active, run, since_ms, start_value, start_threshold,
              ticks_seen, surge_n, surge_mean, surge_dev, idle_now,
              out_line, out_tick, out_rule, out_state, out_value, out_threshold):
    n_out = 0
    for i in range(t_line.shape[0]):
        line = t_line[i]
        tick = t_tick[i]
        need = for_ticks[line]
        rate = energy[i, surge_w] / surge_hours
        idle = rate < idle_rate[line]  # False without an idle_kw (NaN)
        idle_now[line] = idle

        # spike
        s = kgce_t[i, short_w]
        lo = kgce_t[i, long_w]
        producing = not np.isnan(s)
        have_long = not np.isnan(lo) and lo > 0.0
        fire = (producing and have_long and s > spike_ratio[line] * lo and not idle
                and not batch_line[line])  # a batch line's spike rule judges batches
        clear = (not producing) or (not have_long) or s <= spike_clear[line] * lo
        limit = spike_ratio[line] * lo if have_long else np.nan
        n_out = _step(active, run, since_ms, start_value, start_threshold,
                      line, 0, fire, clear, need, tick, s, limit,
                      out_line, out_tick, out_rule, out_state, out_value, out_threshold, n_out)

        # surge
        if ticks_seen[line] < surge_ticks:
            ticks_seen[line] += 1
        else:
            x = energy[i, surge_w] / surge_hours
            mean = surge_mean[line]
            band = max(surge_dev[line], min_band * abs(mean), 1e-9)
            upper = mean + surge_k[line] * band
            learnt = surge_n[line]
            fire = learnt >= warmup and x > upper and not idle
            clear = learnt < warmup or x <= mean + clear_k * band
            n_out = _step(active, run, since_ms, start_value, start_threshold,
                          line, 1, fire, clear, need, tick, x, upper,
                          out_line, out_tick, out_rule, out_state, out_value, out_threshold,
                          n_out)
            if learnt == 0:
                surge_mean[line] = x
                surge_dev[line] = 0.0
            else:
                xc = min(x, upper)
                a = alpha * SURGE_ACTIVE_SLOWDOWN if active[line, 1] else alpha
                surge_dev[line] += a * (abs(xc - mean) - surge_dev[line])
                surge_mean[line] += a * (xc - mean)
            surge_n[line] = learnt + 1

        # national levels
        unit = level_unit[line]
        if unit != -1:
            v = kgce_t[i, level_w] if unit == 0 else kwh_t[i, level_w]
            present = not np.isnan(v)
            for rule, level in ((2, baseline[line]), (3, benchmark[line])):
                if np.isnan(level):
                    continue
                fire = present and v > level and not idle
                clear = (not present) or v <= _level_clear(level, level_margin)
                n_out = _step(active, run, since_ms, start_value, start_threshold,
                              line, rule, fire, clear, need, tick, v,
                              level, out_line, out_tick, out_rule, out_state, out_value,
                              out_threshold, n_out)
    return n_out


def evaluate_alerts(state: AlertState, config: AlertConfig, rules: LineRules,
                    ticks: Ticks) -> AlertEvents:
    """Run every rule over ``ticks`` (as ``advance`` emitted them); the starts and ends.

    ``state`` is updated in place and must hold at least as many lines as ``rules``,
    which must cover every line in ``ticks``.
    """
    n = len(ticks)
    if n and int(ticks.line.max()) >= rules.n_lines:
        raise ValueError(f"ticks name line {int(ticks.line.max())} but the rules cover "
                         f"{rules.n_lines} lines")
    grow_alert_state(state, rules.n_lines)
    cap = n * len(RULES)
    out_line = np.empty(cap, dtype=np.int32)
    out_tick = np.empty(cap, dtype=np.int64)
    out_rule = np.empty(cap, dtype=np.int64)
    out_state = np.empty(cap, dtype=np.int8)
    out_value = np.empty(cap, dtype=np.float64)
    out_threshold = np.empty(cap, dtype=np.float64)
    k = 0
    if n:
        k = _evaluate(
            np.ascontiguousarray(ticks.line), np.ascontiguousarray(ticks.tick_ms),
            np.ascontiguousarray(ticks.energy_kgce), np.ascontiguousarray(ticks.kgce_per_t),
            np.ascontiguousarray(ticks.kwh_per_t),
            config.short_window, config.long_window, config.level_window, config.surge_window,
            config.surge_window_ticks, config.surge_window_hours,
            config.surge_alpha, config.surge_warmup, config.surge_clear_k,
            config.surge_min_band, config.level_clear_margin,
            rules.for_ticks, rules.spike_ratio, rules.spike_clear_ratio, rules.surge_k,
            rules.level_unit, rules.baseline, rules.benchmark,
            rules.batch_line, rules.idle_kgce_per_h,
            state.active, state.run, state.since_ms, state.start_value, state.start_threshold,
            state.ticks_seen, state.surge_n,
            state.surge_mean, state.surge_dev, state.idle,
            out_line, out_tick, out_rule, out_state, out_value, out_threshold,
        )
    return AlertEvents(out_line[:k].copy(), out_tick[:k].copy(), out_rule[:k].copy(),
                       out_state[:k].copy(), out_value[:k].copy(), out_threshold[:k].copy())


@nb.njit(cache=True)
def _evaluate_batches(b_line, b_close, b_kgce_t, for_ticks, spike_ratio, spike_clear,
                      batch_line, active, run, since_ms, start_value, start_threshold,
                      idle_now, ring, ring_n,
                      out_line, out_tick, out_rule, out_state, out_value, out_threshold):
    n_out = 0
    H = ring.shape[1]
    for i in range(b_line.shape[0]):
        line = b_line[i]
        if not batch_line[line]:
            continue
        s = b_kgce_t[i]
        k = min(ring_n[line], H)
        present = not np.isnan(s)
        med = np.median(ring[line, :k]) if k > 0 else np.nan
        have = k > 0 and med > 0.0
        fire = present and have and s > spike_ratio[line] * med and not idle_now[line]
        clear = (not present) or (not have) or s <= spike_clear[line] * med
        limit = spike_ratio[line] * med if have else np.nan
        n_out = _step(active, run, since_ms, start_value, start_threshold,
                      line, 0, fire, clear, for_ticks[line], b_close[i], s, limit,
                      out_line, out_tick, out_rule, out_state, out_value, out_threshold, n_out)
        if present:
            ring[line, ring_n[line] % H] = s
            ring_n[line] += 1
    return n_out


def evaluate_batch_alerts(state: AlertState, rules: LineRules, batches: Batches) -> AlertEvents:
    """The spike rule of batch lines over closed batches (as ``close_batches`` gave them).

    On a batch line (``rules.batch_line``) the rule judges each batch instead of ticks:
    ``s`` = the batch's ``kgce_per_t``, ``m`` = the median of the line's previous
    ``BATCH_HISTORY`` batches with one (fewer at first). Fires when ``m > 0``, ``s >
    spike_ratio * m`` and the line was not idle at its newest tick; clears when ``s`` is
    absent, there is no ``m > 0`` yet, or ``s <= spike_clear_ratio * m``; ``for_ticks``
    counts batches here. value ``s``, threshold ``spike_ratio * m``. Batches of other
    lines are ignored. ``state`` is updated in place (it must hold every line).
    """
    n = len(batches)
    if n and int(batches.line.max()) >= rules.n_lines:
        raise ValueError(f"batches name line {int(batches.line.max())} but the rules cover "
                         f"{rules.n_lines} lines")
    grow_alert_state(state, rules.n_lines)
    out = [np.empty(n, dtype=t) for t in (np.int32, np.int64, np.int64, np.int8, np.float64,
                                          np.float64)]
    k = 0
    if n:
        k = _evaluate_batches(
            np.ascontiguousarray(batches.line), np.ascontiguousarray(batches.close_ms),
            np.ascontiguousarray(batches.kgce_per_t),
            rules.for_ticks, rules.spike_ratio, rules.spike_clear_ratio, rules.batch_line,
            state.active, state.run, state.since_ms, state.start_value, state.start_threshold,
            state.idle, state.batch_kgce_t, state.batch_n, *out)
    return AlertEvents(*(a[:k].copy() for a in out))
