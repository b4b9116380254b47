"""Batches (heats, taps, runs) of batch lines, from the finalised deltas of their meters.

``close_batches`` takes a log of finalised readings (``FinalisedDeltas``: per reading
its line, time and converted delta, as the intensity kernel finalises them at tick
emission) and cuts each line's stream into batches. What it does, exactly (the
reference in ``wattline.kernels.naive_batches`` is written from this text and compared
by hypothesis):

1. Per line, the log is taken in time order; at one time, energy before production,
   so an energy delta stamped with a batch's close belongs to that batch. A call
   holds every entry of a line up to some time (a tick), so entries of one time never
   straddle two calls; a call with an entry older than the line's newest one of an
   earlier call is refused whole (``ValueError``).
2. The first entry of a line (a counter's baseline counts: its delta is zero) opens
   its first batch at that entry's time.
3. Every entry adds its kgce, kWh and direct and indirect CO2 to the open batch. An
   entry whose production is more than zero closes it: the batch holds the energy of entries with
   ``previous close < t <= close`` and, as its production, that one delta; its
   duration is ``close - start``, and the next batch starts at the close. Production
   of zero or less (a delta-mode weigher's correction) closes nothing and counts
   nowhere.
4. A closed batch gets ``kgce_per_t`` and ``kwh_per_t`` (energy over its production)
   when both are finite, NaN otherwise; and ``co2_per_t`` (direct plus indirect CO2
   over its production) when that is finite, NaN otherwise.

Batch sums use Neumaier compensation, so a batch is exact to rounding whatever its
number of deltas. The open batch of every line is part of ``BatchState``, which the
caller keeps and saves (``batch_state_arrays``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba as nb
import numpy as np

from wattline.kernels.state import NO_TIME, FinalisedDeltas, pad_quantities

__all__ = ["BatchState", "Batches", "FinalisedDeltas", "batch_state_arrays",
           "batch_state_from_arrays", "close_batches", "grow_batch_state", "new_batch_state"]

_MAX_FLOAT = np.finfo(np.float64).max
_SUMS = 4
"""The open batch's sums: kgce, kWh, direct and indirect CO2 (t)."""


@dataclass
class BatchState:
    """Per line: the open batch (its start and compensated sums) and the newest entry time."""

    start_ms: np.ndarray  # int64 [L]; NO_TIME: no entry yet
    newest_ms: np.ndarray  # int64 [L]; NO_TIME: no entry yet
    sums: np.ndarray  # float64 [L, 4]: kgce, kWh, CO2 direct and indirect of the open batch
    comps: np.ndarray  # float64 [L, 4]: their Neumaier compensations

    @property
    def n_lines(self) -> int:
        return int(self.start_ms.shape[0])


def new_batch_state(n_lines: int) -> BatchState:
    return BatchState(start_ms=np.full(n_lines, NO_TIME, dtype=np.int64),
                      newest_ms=np.full(n_lines, NO_TIME, dtype=np.int64),
                      sums=np.zeros((n_lines, _SUMS)), comps=np.zeros((n_lines, _SUMS)))


def grow_batch_state(state: BatchState, n_lines: int) -> None:
    """Make room for ``n_lines`` lines in place; new lines have no batch open."""
    if n_lines <= state.n_lines:
        return
    grown = new_batch_state(n_lines)
    for f in fields(BatchState):
        new = getattr(grown, f.name)
        old = getattr(state, f.name)
        new[: old.shape[0]] = old
        setattr(state, f.name, new)


def batch_state_arrays(state: BatchState) -> dict[str, np.ndarray]:
    """The state as named arrays, for a checkpoint."""
    return {f.name: getattr(state, f.name) for f in fields(BatchState)}


def batch_state_from_arrays(arrays: dict[str, np.ndarray]) -> BatchState:
    """The inverse of ``batch_state_arrays``; a state saved before the CO2 sums were kept
    has its open batches' CO2 start at zero."""
    given = dict(arrays)
    for name in ("sums", "comps"):
        given[name] = pad_quantities(given[name], _SUMS)
    return BatchState(**{f.name: np.ascontiguousarray(given[f.name]) for f in fields(BatchState)})


@dataclass
class Batches:
    """Closed batches, per line in close order (lines in increasing order within a call)."""

    line: np.ndarray  # int32 [n]
    close_ms: np.ndarray  # int64 [n]
    start_ms: np.ndarray  # int64 [n]
    energy_kgce: np.ndarray  # float64 [n]
    electricity_kwh: np.ndarray  # float64 [n]
    production_t: np.ndarray  # float64 [n]
    kgce_per_t: np.ndarray  # float64 [n]; NaN when not finite
    kwh_per_t: np.ndarray  # float64 [n]
    co2_direct_t: np.ndarray  # float64 [n], scope 1
    co2_indirect_t: np.ndarray  # float64 [n], scope 2
    co2_per_t: np.ndarray  # float64 [n]; NaN when not finite

    def __len__(self) -> int:
        return int(self.line.shape[0])

    @property
    def duration_s(self) -> np.ndarray:
        return (self.close_ms - self.start_ms) / 1000.0


@nb.njit(cache=True, inline="always")
def _add(sums, comps, line, q, x):
    s = sums[line, q]
    t = s + x
    if abs(s) >= abs(x):
        comps[line, q] += (s - t) + x
    else:
        comps[line, q] += (x - t) + s
    sums[line, q] = t


@nb.njit(cache=True)
def _close(order, d_line, d_ts, d_kgce, d_kwh, d_t, d_co2d, d_co2i, start, newest, sums, comps,
           o_line, o_close, o_start, o_sums, o_ratio):
    """The entries in ``order``; returns how many batches closed."""
    n_out = 0
    for k in range(order.shape[0]):
        i = order[k]
        line = d_line[i]
        ts = d_ts[i]
        if start[line] == NO_TIME:
            start[line] = ts
        if ts > newest[line]:
            newest[line] = ts
        _add(sums, comps, line, 0, d_kgce[i])
        _add(sums, comps, line, 1, d_kwh[i])
        _add(sums, comps, line, 2, d_co2d[i])
        _add(sums, comps, line, 3, d_co2i[i])
        p = d_t[i]
        if p > 0.0:
            e = sums[line, 0] + comps[line, 0]
            el = sums[line, 1] + comps[line, 1]
            cd = sums[line, 2] + comps[line, 2]
            ci = sums[line, 3] + comps[line, 3]
            o_line[n_out] = line
            o_close[n_out] = ts
            o_start[n_out] = start[line]
            o_sums[n_out, 0] = e
            o_sums[n_out, 1] = el
            o_sums[n_out, 2] = p
            o_sums[n_out, 3] = cd
            o_sums[n_out, 4] = ci
            ke = e / p
            kw = el / p
            if abs(ke) <= _MAX_FLOAT and abs(kw) <= _MAX_FLOAT:
                o_ratio[n_out, 0] = ke
                o_ratio[n_out, 1] = kw
            else:
                o_ratio[n_out, 0] = np.nan
                o_ratio[n_out, 1] = np.nan
            kc = (cd + ci) / p
            o_ratio[n_out, 2] = kc if abs(kc) <= _MAX_FLOAT else np.nan
            n_out += 1
            start[line] = ts
            for q in range(_SUMS):
                sums[line, q] = 0.0
                comps[line, q] = 0.0
    return n_out


@nb.njit(cache=True)
def _near_order(line, key, n_lines, budget):
    """The stable order of ``key`` (whose major part is ``line``) for a log that is
    nearly in order per line, as the intensity kernel's is (tick by tick, and within a
    tick meter by meter): a counting sort by line, then an insertion sort, which moves
    each entry only past the few of its tick that belong after it. Returns the order
    and whether it finished within ``budget`` moves (a log far from order is left to
    a general sort)."""
    n = line.shape[0]
    start = np.zeros(n_lines + 1, dtype=np.int64)
    for i in range(n):
        start[line[i] + 1] += 1
    for lu in range(n_lines):
        start[lu + 1] += start[lu]
    order = np.empty(n, dtype=np.int64)
    k = np.empty(n, dtype=np.int64)
    for i in range(n):
        lu = line[i]
        at = start[lu]
        order[at] = i
        k[at] = key[i]
        start[lu] = at + 1
    moves = 0
    for i in range(1, n):
        x = k[i]
        if k[i - 1] <= x:
            continue
        o = order[i]
        j = i
        while j > 0 and k[j - 1] > x:
            k[j] = k[j - 1]
            order[j] = order[j - 1]
            j -= 1
        k[j] = x
        order[j] = o
        moves += i - j
        if moves > budget:
            return order, False
    return order, True


NEAR_ORDER_MOVES = 64
"""Moves per entry the insertion sort may take before a general sort takes over."""


def _order(line: np.ndarray, ts_ms: np.ndarray, closing: np.ndarray, n_lines: int
           ) -> np.ndarray:
    """Entry indices per line by time, energy before production at one time, the log's
    order otherwise (rule 1): ``lexsort((closing, ts_ms, line))``. As one int64 key when
    it fits, sorted by ``_near_order`` (the intensity kernel's log: about 5x as fast as
    NumPy's stable sort of the key, itself about 6x as fast as the lexsort), else by
    that stable sort; the lexsort when the key does not fit."""
    n = line.shape[0]
    if not n:
        return np.zeros(0, dtype=np.int64)
    lo = int(ts_ms.min())
    span = int(ts_ms.max()) - lo + 1
    if n_lines * 2 * span >= 2**62:
        return np.lexsort((closing, ts_ms, line)).astype(np.int64)
    key = line.astype(np.int64) * (2 * span)
    key += (ts_ms - lo) * 2
    key += closing
    order, done = _near_order(line, key, n_lines, NEAR_ORDER_MOVES * n)
    return order if done else np.argsort(key, kind="stable")


def close_batches(state: BatchState, deltas: FinalisedDeltas) -> Batches:
    """Take one call's finalised deltas; update ``state`` in place; the batches closed.

    ``state`` must hold every line in ``deltas`` (``grow_batch_state``).
    """
    n = len(deltas)
    if n and (int(deltas.line.min()) < 0 or int(deltas.line.max()) >= state.n_lines):
        raise ValueError(f"delta lines must lie in 0..{state.n_lines - 1}: grow the state first")
    if n:
        newest = state.newest_ms[deltas.line]
        older = np.nonzero((newest != NO_TIME) & (deltas.ts_ms < newest))[0]
        if older.size:
            i = int(older[0])
            raise ValueError(
                f"finalised deltas must come in time order per line: line {deltas.line[i]} "
                f"has one at {deltas.ts_ms[i]}, before its newest of an earlier call "
                f"({newest[i]})")
    closing = deltas.t > 0.0
    order = _order(deltas.line, deltas.ts_ms, closing, state.n_lines)
    cap = int(np.count_nonzero(closing))
    o_line = np.empty(cap, dtype=np.int32)
    o_close = np.empty(cap, dtype=np.int64)
    o_start = np.empty(cap, dtype=np.int64)
    o_sums = np.empty((cap, 5), dtype=np.float64)
    o_ratio = np.empty((cap, 3), dtype=np.float64)
    k = 0
    if n:
        k = _close(order, deltas.line, deltas.ts_ms, deltas.kgce, deltas.kwh, deltas.t,
                   deltas.co2_direct, deltas.co2_indirect, state.start_ms, state.newest_ms,
                   state.sums, state.comps,
                   o_line, o_close, o_start, o_sums, o_ratio)
    return Batches(o_line[:k], o_close[:k], o_start[:k], o_sums[:k, 0].copy(),
                   o_sums[:k, 1].copy(), o_sums[:k, 2].copy(), o_ratio[:k, 0].copy(),
                   o_ratio[:k, 1].copy(), o_sums[:k, 3].copy(), o_sums[:k, 4].copy(),
                   o_ratio[:k, 2].copy())
