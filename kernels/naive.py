"""A slow, plain-Python statement of the semantics (docs/semantics.md): the oracle for ``advance``.

Written for clarity, not speed: plain lists and dicts, every finalised tick's
bucket kept for ever, each window summed from scratch with ``math.fsum`` at every
tick over the buckets inside it (no running sums, so nothing can drift). The
property tests feed random streams to this and to the Numba kernel and require
the same ticks, values and drops; ``wattline bench kernels`` times it as the
baseline a user would write first.

The rules, in the order they apply (the same text as ``intensity.py``'s):

- Readings come in arrival order, grouped in messages (one meter each). Every
  reading of a message is judged against its line's watermark as it stood
  before the message: ``base - allowed_lateness``, where the line's base is the
  most that ``min(newest accepted time of the line, now_ms)`` has ever been
  (``now_ms``: the call's wall clock; without one, no cap). A value of
  magnitude 1e15 or more (or not a number): dropped as ``implausible``. At or
  before the watermark: dropped as ``late``. Same meter and time as a reading
  still pending: dropped as ``duplicate``. The meter already holds
  ``max_pending`` waiting readings: dropped as ``pending_overflow``. Otherwise
  it waits, in time order, however far ahead of ``now_ms`` it is.
- After the message, the line's newest time moves up to the newest reading
  accepted from it, and its base to ``min(newest, now_ms)`` if that is more.
  The first message of a line fixes the line's first tick at
  ``ceil(min(oldest accepted, base - lateness + 1 ms) / E)``. Every tick ``k``
  with ``k * E <= watermark`` not yet emitted is then emitted, in order.
- Emitting tick ``k``: each meter's waiting readings with ``ts <= k * E`` are
  finalised in time order into deltas (a counter's first reading is its
  baseline; a decrease wraps at ``rollover`` or, without one, is a reset whose
  delta is the new value; a delta-mode reading is its own delta). A meter with
  a ``max_rate`` judges each delta once it has a previous reading (its last
  finalised one): more than ``max_rate * 1.5 / 3_600_000 * max(elapsed ms,
  1000)`` in magnitude, and the reading is dropped as ``implausible``, leaving
  the baseline where it was; a counter remembers it as a suspect (a meter
  without a ``max_rate`` has none: one left from before is forgotten when a call
  starts). When the
  next reading is implausible from the baseline but plausible from the suspect,
  the suspect becomes the baseline (uncounted) and the reading's delta from it
  counts. The deltas are converted to kgce, kWh, tonnes and direct and indirect
  tonnes of CO2 and summed into the tick's bucket. Window ``W`` at tick ``k`` is
  the sum of the buckets of ticks ``k - W/E + 1 .. k``; its intensity is
  ``energy / production`` when production is more than zero (and at least
  ``min_production_t`` when set) and both ratios are finite, else absent (NaN);
  its ``co2_per_t`` is ``(direct + indirect) / production`` under the same
  condition on production, when finite.

Every finalised reading lands in the bucket of the tick ``ceil(ts / E)``, so a
window of buckets is exactly the deltas with ``T - W < t <= T``; the reference
checks that as it goes instead of taking it on trust.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from wattline.kernels.state import (
    DROP_REASONS,
    N_QUANTITIES,
    VALUE_LIMIT,
    KernelConfig,
    MeterTable,
    Readings,
    Ticks,
)


@dataclass
class MeterHistory:
    """One meter: readings waiting for their tick, the last finalised reading, and the
    last one found implausible since (a counter's suspect)."""

    pending: list[tuple[int, float]] = field(default_factory=list)  # sorted by ts
    baseline: float | None = None  # last finalised counter value
    baseline_ms: int | None = None  # time of the last finalised (taken) reading
    suspect: tuple[int, float] | None = None  # (ts, value) of an implausible reading


@dataclass
class LineHistory:
    """One line: its newest accepted time, the next tick to emit, every bucket so far."""

    newest_ms: int | None = None
    base_ms: int | None = None  # most that min(newest_ms, now_ms) has been
    next_tick: int | None = None
    ticks: list[int] = field(default_factory=list)  # emitted ticks, in order
    buckets: list[tuple[float, ...]] = field(default_factory=list)  # one per tick, QUANTITIES
    magnitudes: list[tuple[float, ...]] = field(default_factory=list)  # sums of |x|


@dataclass
class ReferenceState:
    """Everything the reference remembers between calls."""

    meters: dict[int, MeterHistory] = field(default_factory=dict)
    lines: dict[int, LineHistory] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    magnitudes: bool = False  # also report each window's ``ReferenceTick.magnitudes`` (slower)
    logged: frozenset[int] = frozenset()
    """Lines whose finalised readings go to ``finalised`` (``advance(logged_lines=)``)."""
    finalised: list[tuple[int, int, float, float, float, float, float]] = field(
        default_factory=list)
    """(line, ts, kgce, kWh, t, tCO2 direct, tCO2 indirect) of every finalised reading of a
    logged line (a counter's baseline with zeros), in the order finalised."""


@dataclass(frozen=True)
class ReferenceTick:
    """One emitted (line, tick): per window, the ``QUANTITIES`` (energy_kgce,
    electricity_kwh, production_t, co2_direct_t, co2_indirect_t)."""

    line: int
    tick_ms: int
    sums: tuple[tuple[float, ...], ...]
    kgce_per_t: tuple[float, ...]
    kwh_per_t: tuple[float, ...]
    co2_per_t: tuple[float, ...] = ()
    magnitudes: tuple[tuple[float, ...], ...] = ()
    """Per window, the sums of the magnitudes of the terms behind ``sums``: how large
    the numbers were that a float sum had to cancel (what its rounding scales with)."""


def reference_advance(
    state: ReferenceState,
    config: KernelConfig,
    meters: MeterTable,
    readings: Readings,
    max_pending: int = 1 << 16,
    now_ms: int | None = None,
) -> list[ReferenceTick]:
    """Feed a batch of readings; the ticks it makes due, in emission order.

    ``max_pending`` is how many readings a meter may hold waiting for their tick,
    and ``now_ms`` the wall clock that caps the watermark, as in ``advance``.
    """
    emitted: list[ReferenceTick] = []
    for meter, meter_history in state.meters.items():
        if not 0 < float(meters.max_rate[meter]) < math.inf:
            meter_history.suspect = None  # a meter without a max_rate has no suspect

    def capped(newest_ms: int) -> int:
        return newest_ms if now_ms is None else min(newest_ms, now_ms)

    for meter, message in _messages(readings):
        line = int(meters.line[meter])
        history = state.lines.setdefault(line, LineHistory())
        meter_history = state.meters.setdefault(meter, MeterHistory())
        if history.newest_ms is None:
            watermark = None
        else:
            assert history.base_ms is not None
            history.base_ms = max(history.base_ms, capped(history.newest_ms))
            watermark = history.base_ms - config.allowed_lateness_ms
        accepted: list[int] = []
        for ts, value in message:
            if not abs(value) < VALUE_LIMIT:
                state.drops["implausible"] += 1
            elif watermark is not None and ts <= watermark:
                state.drops["late"] += 1
            elif any(pending_ts == ts for pending_ts, _ in meter_history.pending):
                state.drops["duplicate"] += 1
            elif len(meter_history.pending) >= max_pending:
                state.drops["pending_overflow"] += 1
            else:
                meter_history.pending.append((ts, value))
                meter_history.pending.sort(key=lambda reading: reading[0])
                accepted.append(ts)
        if not accepted:
            continue
        if history.newest_ms is None:
            history.newest_ms = max(accepted)
            history.base_ms = capped(history.newest_ms)
            first_ms = min(min(accepted), history.base_ms - config.allowed_lateness_ms + 1)
            history.next_tick = -(-first_ms // config.emit_every_ms)  # ceiling division
        else:
            history.newest_ms = max(history.newest_ms, max(accepted))
            assert history.base_ms is not None
            history.base_ms = max(history.base_ms, capped(history.newest_ms))
        watermark = history.base_ms - config.allowed_lateness_ms
        assert history.next_tick is not None
        while history.next_tick * config.emit_every_ms <= watermark:
            emitted.append(_emit(state, config, meters, line, history.next_tick))
            history.next_tick += 1
    return emitted


def _messages(readings: Readings) -> list[tuple[int, list[tuple[int, float]]]]:
    """Split a batch into (meter, [(ts, value), ...]) messages, in arrival order."""
    messages: list[tuple[int, list[tuple[int, float]]]] = []
    previous = None
    for meter, ts, value, message in zip(
        readings.meter.tolist(), readings.ts_ms.tolist(), readings.value.tolist(),
        readings.message.tolist(), strict=True,
    ):
        if message != previous:
            messages.append((meter, []))
            previous = message
        messages[-1][1].append((ts, value))
    return messages


def _counter_delta(meters: MeterTable, meter: int, previous: float, value: float) -> float:
    """A counter's delta from ``previous`` to ``value``."""
    if value >= previous:
        return value - previous
    rollover = float(meters.rollover[meter])
    if rollover > 0:
        return value + rollover - previous
    return value  # a reset: the register restarted from zero


def _plausible(meters: MeterTable, meter: int, delta: float, elapsed_ms: int) -> bool:
    """Whether ``delta`` is within the meter's ``max_rate`` (per hour) times 1.5 over
    ``elapsed_ms`` (at least a second); always, without a ``max_rate``."""
    max_rate = float(meters.max_rate[meter])
    if not 0 < max_rate < math.inf:
        return True
    return abs(delta) <= max_rate * 1.5 / 3_600_000.0 * max(elapsed_ms, 1000)


def _delta(meters: MeterTable, meter: int, history: MeterHistory, ts: int,
           value: float) -> float | str | None:
    """What a finalised reading contributes: its delta, None for a counter's first
    reading (its baseline), or "implausible" when it is dropped as such."""
    delta_mode = bool(meters.delta_mode[meter])
    if delta_mode:
        delta = value
    elif history.baseline is None:
        history.baseline, history.baseline_ms = value, ts
        return None
    else:
        delta = _counter_delta(meters, meter, history.baseline, value)
    if history.baseline_ms is not None and not _plausible(
            meters, meter, delta, ts - history.baseline_ms):
        suspect = history.suspect
        if (delta_mode or suspect is None or not _plausible(
                meters, meter, _counter_delta(meters, meter, suspect[1], value),
                ts - suspect[0])):
            if not delta_mode:
                history.suspect = (ts, value)
            return "implausible"
        # The suspect was the meter's true level: it becomes the baseline, uncounted.
        delta = _counter_delta(meters, meter, suspect[1], value)
    history.suspect = None
    history.baseline, history.baseline_ms = value, ts
    return delta


def _emit(
    state: ReferenceState, config: KernelConfig, meters: MeterTable, line: int, tick: int
) -> ReferenceTick:
    tick_ms = tick * config.emit_every_ms
    energy: list[float] = []
    electricity: list[float] = []
    production: list[float] = []
    direct: list[float] = []
    indirect: list[float] = []
    for meter in np.flatnonzero(meters.line == line).tolist():
        if meter not in state.meters:
            continue
        history = state.meters[meter]
        due = [reading for reading in history.pending if reading[0] <= tick_ms]
        history.pending = [reading for reading in history.pending if reading[0] > tick_ms]
        for ts, value in due:
            assert tick_ms - config.emit_every_ms < ts <= tick_ms, (
                f"meter {meter}: reading at {ts} finalised at tick {tick_ms}, not its own"
            )
            delta = _delta(meters, meter, history, ts, value)
            if delta is None:
                if line in state.logged:
                    state.finalised.append((line, ts, 0.0, 0.0, 0.0, 0.0, 0.0))
                continue
            if isinstance(delta, str):
                state.drops[delta] += 1
                continue
            energy.append(delta * float(meters.kgce_per_unit[meter]))
            electricity.append(delta * float(meters.kwh_per_unit[meter]))
            production.append(delta * float(meters.t_per_unit[meter]))
            direct.append(delta * float(meters.co2_direct_per_unit[meter]))
            indirect.append(delta * float(meters.co2_indirect_per_unit[meter]))
            if line in state.logged:
                state.finalised.append((line, ts, energy[-1], electricity[-1], production[-1],
                                        direct[-1], indirect[-1]))
    history = state.lines[line]
    history.ticks.append(tick)
    quantities = (energy, electricity, production, direct, indirect)
    history.buckets.append(tuple(math.fsum(terms) for terms in quantities))
    if state.magnitudes:
        history.magnitudes.append(tuple(math.fsum(map(abs, terms)) for terms in quantities))

    sums = []
    magnitudes: list[tuple[float, ...]] = []
    kgce_per_t = []
    kwh_per_t = []
    co2_per_t = []
    for window_ms in config.windows_ms:
        span = window_ms // config.emit_every_ms
        first = bisect.bisect_left(history.ticks, tick - span + 1)
        inside = history.buckets[first:]
        if state.magnitudes:
            magnitudes.append(tuple(math.fsum(b[q] for b in history.magnitudes[first:])
                                    for q in range(N_QUANTITIES)))
        e, el, p, cd, ci = (math.fsum(b[q] for b in inside) for q in range(N_QUANTITIES))
        sums.append((e, el, p, cd, ci))
        if config.min_production_t is None:
            producing = p > 0
        else:
            producing = p > 0 and p >= config.min_production_t
        ratios = (e / p, el / p) if producing else (math.nan, math.nan)
        if not (math.isfinite(ratios[0]) and math.isfinite(ratios[1])):
            ratios = (math.nan, math.nan)  # too small a production to divide by
        kgce_per_t.append(ratios[0])
        kwh_per_t.append(ratios[1])
        carbon = (cd + ci) / p if producing else math.nan
        co2_per_t.append(carbon if math.isfinite(carbon) else math.nan)
    return ReferenceTick(line, tick_ms, tuple(sums), tuple(kgce_per_t), tuple(kwh_per_t),
                         tuple(co2_per_t), tuple(magnitudes))


def magnitudes_of(emitted: list[ReferenceTick], n_windows: int) -> np.ndarray:
    """Every tick's ``magnitudes`` as one array [n, W, Q], in the rows of ``as_ticks``."""
    return np.array([t.magnitudes for t in emitted], dtype=np.float64).reshape(
        len(emitted), n_windows, N_QUANTITIES)


def as_ticks(emitted: list[ReferenceTick], n_windows: int, drops: dict[str, int]) -> Ticks:
    """The reference's output in the kernel's ``Ticks`` shape, for side-by-side comparison."""
    n = len(emitted)
    sums = np.array([t.sums for t in emitted], dtype=np.float64).reshape(
        n, n_windows, N_QUANTITIES)
    return Ticks(
        line=np.array([t.line for t in emitted], dtype=np.int32),
        tick_ms=np.array([t.tick_ms for t in emitted], dtype=np.int64),
        energy_kgce=sums[:, :, 0].copy(),
        electricity_kwh=sums[:, :, 1].copy(),
        production_t=sums[:, :, 2].copy(),
        kgce_per_t=np.array([t.kgce_per_t for t in emitted], np.float64).reshape(n, n_windows),
        kwh_per_t=np.array([t.kwh_per_t for t in emitted], np.float64).reshape(n, n_windows),
        drops=np.array([drops[r] for r in DROP_REASONS], dtype=np.int64),
        co2_direct_t=sums[:, :, 3].copy(),
        co2_indirect_t=sums[:, :, 4].copy(),
        co2_per_t=np.array([t.co2_per_t for t in emitted], np.float64).reshape(n, n_windows),
    )
