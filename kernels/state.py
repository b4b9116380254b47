"""The arrays that go into, stay in, and come out of the intensity kernel.

Four types carry the design:

- ``Readings``: a columnar batch of meter readings in arrival order;
- ``MeterTable``: what each meter is (its line, how its deltas convert to kgce,
  kWh, tonnes and tonnes of CO2, counter or delta mode, rollover, most it can
  register per hour);
- ``StreamState``: everything the kernel remembers between batches, as plain
  preallocated arrays that the caller owns, saves and restores;
- ``Ticks``: the rows the kernel emits, one per line and tick, with one column
  per configured window.

All times are int64 epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

NO_TIME = np.iinfo(np.int64).min
"""Marks "no reading yet" in int64 time arrays."""

DROP_REASONS = ("late", "duplicate", "pending_overflow", "implausible")
"""Why the kernel dropped a reading, in the order of ``StreamState.drops``."""

VALUE_LIMIT = 1e15
"""Readings must have ``|value| < VALUE_LIMIT`` (the decoder drops the others); the
kernel drops any other that reaches it as ``implausible``."""
ROLLOVER_LIMIT = 2.0**64
"""The largest rollover a meter may have (a 64-bit register)."""
FACTOR_LIMIT = 1e12
"""The largest conversion factor (kgce, kWh or t per unit) a meter may have.

With the two limits above, a delta is below about 1.8e19 units and its converted
value below 2e31, so window sums of any stream stay far inside float64's range:
they are finite by construction."""

QUANTITIES = ("energy_kgce", "electricity_kwh", "production_t", "co2_direct_t", "co2_indirect_t")
"""The sums kept per line, tick and window, in this order on axis -1."""
N_QUANTITIES = len(QUANTITIES)
"""States saved before the CO2 sums hold only the first three; loading pads the rest with
zeros (``pad_quantities``)."""


@dataclass(frozen=True)
class KernelConfig:
    """Tick and window settings, fixed for the life of a ``StreamState``.

    ``min_production_t``: a window whose production is below this is idle and
    has no intensity. ``None`` means the contract default: idle unless
    production is strictly more than zero.
    """

    emit_every_ms: int = 10_000
    windows_ms: tuple[int, ...] = (900_000, 3_600_000, 86_400_000)
    allowed_lateness_ms: int = 30_000
    min_production_t: float | None = None

    def __post_init__(self) -> None:
        if self.emit_every_ms <= 0:
            raise ValueError(f"emit_every must be positive, got {self.emit_every_ms} ms")
        if not self.windows_ms:
            raise ValueError("at least one window is needed")
        for w in self.windows_ms:
            if w <= 0 or w % self.emit_every_ms:
                raise ValueError(
                    f"window {w} ms must be a positive multiple of emit_every "
                    f"({self.emit_every_ms} ms)"
                )
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness must not be negative")
        if self.min_production_t is not None and not np.isfinite(self.min_production_t):
            raise ValueError("min_production_t must be finite")

    @property
    def window_ticks(self) -> np.ndarray:
        return np.array([w // self.emit_every_ms for w in self.windows_ms], dtype=np.int64)

    @property
    def ring_ticks(self) -> int:
        """Tick buckets kept per line: the longest window."""
        return int(max(self.windows_ms) // self.emit_every_ms)


@dataclass
class Readings:
    """A columnar batch of readings in arrival order.

    ``message`` numbers the MQTT messages the readings came in; consecutive
    readings with equal numbers form one message, whose readings are all judged
    against the watermark as it stood before it (docs/semantics.md).
    """

    meter: np.ndarray  # int32, index into MeterTable
    ts_ms: np.ndarray  # int64 epoch ms
    value: np.ndarray  # float64, finite
    message: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.meter.shape[0])

    @classmethod
    def from_arrays(
        cls,
        meter: np.ndarray | list[int],
        ts_ms: np.ndarray | list[int],
        value: np.ndarray | list[float],
        message: np.ndarray | list[int] | None = None,
    ) -> Readings:
        """Convert and check; without ``message`` every reading is its own message."""
        m = np.ascontiguousarray(meter, dtype=np.int32)
        t = np.ascontiguousarray(ts_ms, dtype=np.int64)
        v = np.ascontiguousarray(value, dtype=np.float64)
        msg = (
            np.arange(m.shape[0], dtype=np.int64)
            if message is None
            else np.ascontiguousarray(message, dtype=np.int64)
        )
        if not (m.ndim == t.ndim == v.ndim == msg.ndim == 1):
            raise ValueError("readings columns must be one-dimensional")
        if not (m.shape == t.shape == v.shape == msg.shape):
            raise ValueError(
                f"readings columns differ in length: meter {m.shape[0]}, ts {t.shape[0]}, "
                f"value {v.shape[0]}, message {msg.shape[0]}"
            )
        if v.size and not np.isfinite(v).all():
            raise ValueError("reading values must be finite; drop NaN and infinities first")
        return cls(m, t, v, msg)


@dataclass
class MeterTable:
    """What each meter is. Index ``m`` is the meter's number in ``Readings.meter``.

    A delta ``d`` of meter ``m`` adds ``d * kgce_per_unit[m]`` to its line's
    energy, ``d * kwh_per_unit[m]`` to its electricity and ``d * t_per_unit[m]``
    to its production: an electricity meter in kWh has 0.1229, 1.0, 0.0; a
    production counter in tonnes 0.0, 0.0, 1.0. It also adds
    ``d * co2_direct_per_unit[m]`` to its line's direct (scope 1) CO2 and
    ``d * co2_indirect_per_unit[m]`` to its indirect (scope 2) CO2, in tonnes: the
    electricity meter with a grid factor of 0.5306 kgCO2/kWh has 0.0, 0.0005306.
    Without them (``None``) a meter emits nothing. Export meters have negative factors.
    """

    line: np.ndarray  # int32 [M]
    kgce_per_unit: np.ndarray  # float64 [M]
    kwh_per_unit: np.ndarray  # float64 [M]
    t_per_unit: np.ndarray  # float64 [M]
    delta_mode: np.ndarray  # bool [M]; False: cumulative counter
    rollover: np.ndarray  # float64 [M]; 0: no rollover, a decrease is a reset
    n_lines: int
    max_rate: np.ndarray | None = None  # float64 [M], per hour in the meter's unit; 0/inf: none
    co2_direct_per_unit: np.ndarray | None = None  # float64 [M], tCO2 (scope 1); None: zeros
    co2_indirect_per_unit: np.ndarray | None = None  # float64 [M], tCO2 (scope 2); None: zeros
    line_meter_start: np.ndarray = field(init=False)  # int64 [L+1], CSR over meters by line
    line_meters: np.ndarray = field(init=False)  # int32 [M]
    plausible_per_ms: np.ndarray = field(init=False)  # float64 [M]; 0: nothing is judged
    """Per meter, ``max_rate * 1.5 / 3_600_000`` (the largest plausible delta per
    millisecond since the meter's previous reading), or 0 without a ``max_rate``."""

    def __post_init__(self) -> None:
        self.line = np.ascontiguousarray(self.line, dtype=np.int32)
        self.kgce_per_unit = np.ascontiguousarray(self.kgce_per_unit, dtype=np.float64)
        self.kwh_per_unit = np.ascontiguousarray(self.kwh_per_unit, dtype=np.float64)
        self.t_per_unit = np.ascontiguousarray(self.t_per_unit, dtype=np.float64)
        self.delta_mode = np.ascontiguousarray(self.delta_mode, dtype=np.bool_)
        self.rollover = np.ascontiguousarray(self.rollover, dtype=np.float64)
        n = self.line.shape[0]
        self.max_rate = (np.zeros(n, dtype=np.float64) if self.max_rate is None
                         else np.ascontiguousarray(self.max_rate, dtype=np.float64))
        self.co2_direct_per_unit = (
            np.zeros(n, dtype=np.float64) if self.co2_direct_per_unit is None
            else np.ascontiguousarray(self.co2_direct_per_unit, dtype=np.float64))
        self.co2_indirect_per_unit = (
            np.zeros(n, dtype=np.float64) if self.co2_indirect_per_unit is None
            else np.ascontiguousarray(self.co2_indirect_per_unit, dtype=np.float64))
        for name in ("kgce_per_unit", "kwh_per_unit", "t_per_unit", "delta_mode", "rollover",
                     "max_rate", "co2_direct_per_unit", "co2_indirect_per_unit"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"meter table column {name} must have {n} entries")
        if n and (self.line.min() < 0 or self.line.max() >= self.n_lines):
            raise ValueError(f"meter lines must lie in 0..{self.n_lines - 1}")
        if not ((self.rollover >= 0) & (self.rollover <= ROLLOVER_LIMIT)).all():
            raise ValueError("rollover must lie in 0..2**64 (0 means none)")
        for name in ("kgce_per_unit", "kwh_per_unit", "t_per_unit", "co2_direct_per_unit",
                     "co2_indirect_per_unit"):
            if not (np.abs(getattr(self, name)) <= FACTOR_LIMIT).all():
                raise ValueError(f"meter table column {name} must be finite and at most "
                                 f"{FACTOR_LIMIT:g} in magnitude")
        if not (self.max_rate >= 0).all():  # NaN fails too
            raise ValueError("max_rate must not be negative or NaN (0 or inf means none)")
        judged = (self.max_rate > 0) & np.isfinite(self.max_rate)
        self.plausible_per_ms = np.where(judged, self.max_rate * 1.5 / 3_600_000.0, 0.0)
        order = np.argsort(self.line, kind="stable")
        self.line_meters = order.astype(np.int32)
        counts = np.bincount(self.line, minlength=self.n_lines)
        self.line_meter_start = np.zeros(self.n_lines + 1, dtype=np.int64)
        np.cumsum(counts, out=self.line_meter_start[1:])

    @property
    def n_meters(self) -> int:
        return int(self.line.shape[0])


@dataclass
class StreamState:
    """Everything the kernel carries from one batch to the next.

    Per meter: the last finalised reading (the baseline of the next delta), the
    last reading dropped as implausible since then (which the next reading may
    show to be the meter's true level), and a sorted ring of pending readings
    newer than the line's watermark, which may still be joined by late ones.
    Per line: newest reading time, the watermark's base (the newest reading time
    capped by the wall clock, never moving back), next tick to emit, a ring of
    per-tick bucket totals as long as the longest window, and per window a
    compensated running sum, the largest magnitude that sum has had since it was
    last summed afresh from the ring (``intensity`` sums it afresh when it falls
    far below that), and a count of non-zero buckets (so that a window that has
    emptied is exactly zero, not a rounding residue).
    """

    last_ts: np.ndarray  # int64 [M], NO_TIME before the first reading
    last_value: np.ndarray  # float64 [M]
    suspect_ts: np.ndarray  # int64 [M], NO_TIME: none since the last finalised reading
    suspect_value: np.ndarray  # float64 [M]
    pending_ts: np.ndarray  # int64 [M, K]
    pending_value: np.ndarray  # float64 [M, K]
    pending_start: np.ndarray  # int64 [M]
    pending_len: np.ndarray  # int64 [M]
    newest_ts: np.ndarray  # int64 [L], NO_TIME before the first reading
    capped_ts: np.ndarray  # int64 [L], most min(newest, wall clock) has been; NO_TIME before
    next_tick: np.ndarray  # int64 [L], tick index (T / emit_every); NO_TIME before start
    ring: np.ndarray  # float64 [L, R, Q] (Q: the QUANTITIES)
    window_sum: np.ndarray  # float64 [L, W, Q]
    window_comp: np.ndarray  # float64 [L, W, Q], Neumaier compensation
    window_peak: np.ndarray  # float64 [L, W, Q], most |window_sum| since summed afresh
    window_nonzero: np.ndarray  # int64 [L, W, Q], non-zero buckets inside the window
    drops: np.ndarray  # int64 [len(DROP_REASONS)], cumulative

    @property
    def n_meters(self) -> int:
        return int(self.last_ts.shape[0])

    @property
    def n_lines(self) -> int:
        return int(self.newest_ts.shape[0])

    @property
    def pending_capacity(self) -> int:
        return int(self.pending_ts.shape[1])


def new_state(
    config: KernelConfig, n_lines: int, n_meters: int, pending_capacity: int = 64
) -> StreamState:
    """A fresh state for ``n_lines`` lines and ``n_meters`` meters.

    ``pending_capacity`` (a power of two) is where each meter's buffer of
    not-yet-final readings starts; ``advance`` grows it when a message needs more.
    """
    if pending_capacity < 1 or pending_capacity & (pending_capacity - 1):
        raise ValueError(f"pending_capacity must be a power of two, got {pending_capacity}")
    n_windows = len(config.windows_ms)
    return StreamState(
        last_ts=np.full(n_meters, NO_TIME, dtype=np.int64),
        last_value=np.zeros(n_meters, dtype=np.float64),
        suspect_ts=np.full(n_meters, NO_TIME, dtype=np.int64),
        suspect_value=np.zeros(n_meters, dtype=np.float64),
        pending_ts=np.zeros((n_meters, pending_capacity), dtype=np.int64),
        pending_value=np.zeros((n_meters, pending_capacity), dtype=np.float64),
        pending_start=np.zeros(n_meters, dtype=np.int64),
        pending_len=np.zeros(n_meters, dtype=np.int64),
        newest_ts=np.full(n_lines, NO_TIME, dtype=np.int64),
        capped_ts=np.full(n_lines, NO_TIME, dtype=np.int64),
        next_tick=np.full(n_lines, NO_TIME, dtype=np.int64),
        # Written, not calloc'ed: the ring is touched all over from the first ticks on, and
        # faulting its pages in then costs more than the whole kernel (measured: 6 vs 64 M
        # readings/s over the first 300 s of 1,000 lines).
        ring=np.full((n_lines, config.ring_ticks, N_QUANTITIES), 0.0, dtype=np.float64),
        window_sum=np.zeros((n_lines, n_windows, N_QUANTITIES), dtype=np.float64),
        window_comp=np.zeros((n_lines, n_windows, N_QUANTITIES), dtype=np.float64),
        window_peak=np.zeros((n_lines, n_windows, N_QUANTITIES), dtype=np.float64),
        window_nonzero=np.zeros((n_lines, n_windows, N_QUANTITIES), dtype=np.int64),
        drops=np.zeros(len(DROP_REASONS), dtype=np.int64),
    )


def grow_state(
    state: StreamState,
    config: KernelConfig,
    n_lines: int | None = None,
    n_meters: int | None = None,
    pending_capacity: int | None = None,
) -> None:
    """Make room in ``state``, in place, for more lines, meters or pending readings."""
    L = max(n_lines or 0, state.n_lines)
    M = max(n_meters or 0, state.n_meters)
    K = max(pending_capacity or 0, state.pending_capacity)
    if (state.n_lines, state.n_meters, state.pending_capacity) == (L, M, K):
        return
    grown = new_state(config, L, M, K)
    for f in fields(StreamState):
        old = getattr(state, f.name)
        new = getattr(grown, f.name)
        if f.name == "drops":
            new[:] = old
        elif f.name in ("pending_ts", "pending_value"):
            # Unroll each meter's ring to the start of its new, longer row.
            mask = state.pending_capacity - 1
            for m in np.nonzero(state.pending_len)[0]:
                s, n = state.pending_start[m], state.pending_len[m]
                new[m, :n] = old[m, (s + np.arange(n)) & mask]
        elif f.name == "pending_start":
            pass  # zero after compaction
        else:
            new[tuple(slice(0, d) for d in old.shape)] = old
    for f in fields(StreamState):
        setattr(state, f.name, getattr(grown, f.name))


def state_arrays(state: StreamState) -> dict[str, np.ndarray]:
    """Every array of ``state`` by field name: what a checkpoint file must keep."""
    return {f.name: getattr(state, f.name) for f in fields(StreamState)}


def state_from_arrays(arrays: Mapping[str, np.ndarray]) -> StreamState:
    """The inverse of ``state_arrays``: a state from its arrays by field name.

    Arrays that states saved by earlier versions lack are filled in as those
    versions behaved: no suspect readings, the watermark's base at the newest
    reading time, each window's peak at its sum's magnitude, no implausible drops, no
    CO2 in the ring and windows (the windows lack it until the saved ticks have left them).
    """
    given = dict(arrays)
    if "newest_ts" in given and "capped_ts" not in given:
        given["capped_ts"] = np.array(given["newest_ts"], dtype=np.int64)
    if "last_ts" in given and "suspect_ts" not in given:
        given["suspect_ts"] = np.full(np.shape(given["last_ts"]), NO_TIME, dtype=np.int64)
        given["suspect_value"] = np.zeros(np.shape(given["last_ts"]), dtype=np.float64)
    if "window_sum" in given and "window_peak" not in given:
        given["window_peak"] = np.abs(np.asarray(given["window_sum"], dtype=np.float64))
    if "drops" in given and np.shape(given["drops"])[0] < len(DROP_REASONS):
        drops = np.zeros(len(DROP_REASONS), dtype=np.int64)
        drops[:np.shape(given["drops"])[0]] = given["drops"]
        given["drops"] = drops
    for name in ("ring", "window_sum", "window_comp", "window_peak", "window_nonzero"):
        if name in given:
            given[name] = pad_quantities(given[name], N_QUANTITIES)
    return StreamState(**{f.name: np.ascontiguousarray(given[f.name])
                          for f in fields(StreamState)})


def pad_quantities(array: np.ndarray, n: int) -> np.ndarray:
    """``array`` with its last axis padded with zeros to ``n`` entries: a state saved before
    the CO2 sums were kept has none."""
    a = np.asarray(array)
    if a.shape[-1] >= n:
        return a
    padded = np.zeros((*a.shape[:-1], n), dtype=a.dtype)
    padded[..., :a.shape[-1]] = a
    return padded


@dataclass
class FinalisedDeltas:
    """Finalised readings of batch lines: one row per reading, converted by the meter table
    (a counter's baseline reading has zero deltas)."""

    line: np.ndarray  # int32 [n]
    ts_ms: np.ndarray  # int64 [n]
    kgce: np.ndarray  # float64 [n]
    kwh: np.ndarray  # float64 [n]
    t: np.ndarray  # float64 [n]
    co2_direct: np.ndarray  # float64 [n], tCO2
    co2_indirect: np.ndarray  # float64 [n], tCO2

    def __post_init__(self) -> None:
        self.line = np.ascontiguousarray(self.line, dtype=np.int32)
        self.ts_ms = np.ascontiguousarray(self.ts_ms, dtype=np.int64)
        for name in ("kgce", "kwh", "t", "co2_direct", "co2_indirect"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        n = self.line.shape[0]
        for f in fields(self):
            if getattr(self, f.name).shape != (n,):
                raise ValueError(f"finalised deltas column {f.name} must have {n} entries")

    def __len__(self) -> int:
        return int(self.line.shape[0])

    @classmethod
    def empty(cls) -> FinalisedDeltas:
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0),
                   np.empty(0), np.empty(0), np.empty(0))


@dataclass
class Ticks:
    """Rows emitted by one ``advance`` call: one per (line, tick).

    Sum columns have shape [n, W] (one column per configured window, in order)
    and are always finite. ``kgce_per_t``, ``kwh_per_t`` and ``co2_per_t`` are NaN
    where the window is idle (and only there): the one marker for "absent".
    ``drops`` counts this call's dropped readings by ``DROP_REASONS``; an
    ``implausible`` one is counted when its tick is emitted, which may be a later
    call than the one that brought it.
    """

    line: np.ndarray  # int32 [n]
    tick_ms: np.ndarray  # int64 [n]
    energy_kgce: np.ndarray  # float64 [n, W]
    electricity_kwh: np.ndarray  # float64 [n, W]
    production_t: np.ndarray  # float64 [n, W]
    kgce_per_t: np.ndarray  # float64 [n, W]
    kwh_per_t: np.ndarray  # float64 [n, W]
    drops: np.ndarray  # int64 [len(DROP_REASONS)]
    co2_direct_t: np.ndarray  # float64 [n, W], scope 1
    co2_indirect_t: np.ndarray  # float64 [n, W], scope 2
    co2_per_t: np.ndarray  # float64 [n, W], (direct + indirect) / production; NaN: idle
    finalised: FinalisedDeltas | None = None
    """The readings of logged lines finalised in the call (``advance(logged_lines=)``)."""

    def __len__(self) -> int:
        return int(self.line.shape[0])
