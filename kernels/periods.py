"""Readings in, shift, day and month totals out: the periods of docs/semantics.md as a kernel.

The calendar (where shifts, days and months start, in the plant's time zone) is
not known here: the caller passes a function that gives, for a span of time, the
boundaries of each period kind as sorted epoch-ms arrays (``ingest.calendar``
makes them with zoneinfo). A period of kind ``k`` is ``[b[i], b[i+1])`` for
consecutive boundaries of that kind.

What ``advance_periods`` does, exactly (the reference in
``wattline.kernels.naive_periods`` is written from this text and compared with
this module by hypothesis):

1. Each line has a period watermark ``settled``: no reading at or before it can
   still change a period. A call first looks for silent lines (only when it is
   given a wall clock ``now_ms``): a line whose last accepted reading came in a
   call whose wall clock is ``period_grace`` or more before ``now_ms`` settles up
   to ``min(newest, now_ms)`` (rule 3), if that is more than ``settled``. A call
   without a wall clock that brings a line readings leaves it with no arrival
   time, so it is not judged silent until a call with one brings it readings.
2. Readings are then taken in arrival order, one message (one meter) at a time,
   each judged against its line as it stood before the message, with the line's
   ``base`` kept as in ``intensity`` (the most ``min(newest, now_ms)`` has been,
   ``newest`` the newest accepted reading time): before the line's first
   accepted reading nothing is judged; else, in order:
   - ``|value| >= 1e15`` or not a number: dropped as ``implausible``;
   - ``ts <= settled``: dropped as ``period_closed``;
   - the meter holds a pending reading with the same ``ts``: ``duplicate``;
   - the meter's pending buffer is full: ``pending_overflow``;
   - otherwise it joins the meter's pending readings (sorted by ``ts``), marked
     *late* when ``ts <= base - allowed_lateness``: the live ticks dropped it.
   After the message, ``newest`` and ``base`` move as in ``intensity``, and the
   line settles up to ``base - allowed_lateness - period_grace`` when that is
   more than ``settled``. So a reading up to ``period_grace`` older than the
   ticks' watermark still counts, and an older one does not, whichever period
   it falls in.
3. Settling a line up to ``P``: its meters' pending readings with ``ts <= P``
   are finalised, each meter's in ``ts`` order, into deltas exactly as
   ``intensity`` finalises them at a tick (baseline, rollover, reset,
   ``max_rate`` with its suspect reading; an implausible one is dropped and
   counted). Each finalised reading belongs, for each kind, to the period that
   holds its ``ts``; that period is then *open* for the line, and adds the
   reading's converted delta (if it has one) and, if the reading was late and
   not implausible, one to its ``late_readings``. Then ``settled = P``, and
   every open period whose end is at or before ``P`` closes: it is emitted once
   with ``final`` set and never again (no reading at or before ``P`` can come
   in any more). A period that never held a reading is never emitted.
4. At the end of the call, every line whose ``base`` has entered a new multiple
   of ``provisional_every`` since its last provisional rows (or that has none
   yet) emits provisional rows (``final`` unset): for every period that is open
   or holds one of its pending readings, what it would hold were all its pending
   readings finalised now (on copies; nothing is counted or changed).
5. A row's ratios ``kgce_per_t`` and ``kwh_per_t`` are as a window's (absent,
   NaN, unless production is more than zero, and at least
   ``min_production_t`` when that is set, and both ratios are finite), and so is
   ``co2_per_t`` (direct plus indirect CO2 over production, when finite).

The kernel moves ``settled`` at every message as rule 2 says but finalises the
readings it passed once per line and call, after the messages (and before a
message whose meter's buffer they might fill): the same readings, deltas and rows,
only summed in another order. Final rows therefore agree with any other cut of the
stream into calls to rounding, not bit for bit.

With ``period_grace`` 2 h a period closes once the line's watermark is 2 h past
its end: a replay closes its periods as it goes, and a line that goes silent
still gets its final periods, ``period_grace`` of wall clock later, up to its
newest reading. Sums are Neumaier-compensated. The state is plain arrays
(``period_state_arrays``), saved with a checkpoint, so a restart neither loses
nor repeats a final period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numba as nb
import numpy as np

from wattline.kernels.intensity import _U, _counter_delta, _in_range, _scan_readings
from wattline.kernels.state import N_QUANTITIES, NO_TIME, MeterTable, Readings, pad_quantities

PERIOD_KINDS = ("shift", "day", "month")
"""The period kinds, in the order of every per-kind axis and of ``Periods.kind``."""
PERIOD_DROP_REASONS = ("period_closed", "duplicate", "pending_overflow", "implausible")
"""Why the periods kernel dropped a reading, in the order of ``PeriodState.drops``."""

Boundaries = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``boundaries(lo_ms, hi_ms)``: per kind (shift, day, month), sorted epoch-ms period
starts ``b`` with ``b[0] <= lo_ms`` and ``b[-1] > hi_ms``."""

_CLOSED, _DUPLICATE, _OVERFLOW, _IMPLAUSIBLE = 0, 1, 2, 3
_NEEDS_PENDING, _NEEDS_OUTPUT = 1, 2
_BASELINE, _TAKEN, _DROPPED = 0, 1, 2
_K = len(PERIOD_KINDS)
_MAX = np.iinfo(np.int64).max
_MAX_FLOAT = np.finfo(np.float64).max


@dataclass(frozen=True)
class PeriodConfig:
    """Period settings. ``min_production_t`` as in ``KernelConfig``."""

    grace_ms: int = 7_200_000
    allowed_lateness_ms: int = 30_000
    provisional_every_ms: int = 60_000
    min_production_t: float | None = None

    def __post_init__(self) -> None:
        if self.grace_ms < 0 or self.allowed_lateness_ms < 0:
            raise ValueError("period_grace and allowed_lateness must not be negative")
        if self.provisional_every_ms <= 0:
            raise ValueError("provisional_every must be positive")
        if self.min_production_t is not None and not np.isfinite(self.min_production_t):
            raise ValueError("min_production_t must be finite")


@dataclass
class PeriodState:
    """What the periods kernel carries between calls, as plain arrays.

    Per meter: the last finalised reading and suspect (as in ``StreamState``) and a
    sorted ring of pending readings newer than the line's period watermark, each
    with whether it came too late for the ticks. Per line: ``newest``, the
    watermark's base, the period watermark ``settled``, the wall clock of the call
    that last brought it readings, the provisional step last written, and per kind
    the open period of its finalised readings: start, end, compensated sums (the
    ``QUANTITIES``: energy_kgce, electricity_kwh, production_t, co2_direct_t,
    co2_indirect_t) and late readings.
    """

    last_ts: np.ndarray  # int64 [M]
    last_value: np.ndarray  # float64 [M]
    suspect_ts: np.ndarray  # int64 [M]
    suspect_value: np.ndarray  # float64 [M]
    pending_ts: np.ndarray  # int64 [M, K]
    pending_value: np.ndarray  # float64 [M, K]
    pending_late: np.ndarray  # bool [M, K]
    pending_start: np.ndarray  # int64 [M]
    pending_len: np.ndarray  # int64 [M]
    newest_ts: np.ndarray  # int64 [L]
    capped_ts: np.ndarray  # int64 [L]
    settled_ts: np.ndarray  # int64 [L], NO_TIME before the first reading
    arrival_ms: np.ndarray  # int64 [L], NO_TIME: unknown
    provisional_step: np.ndarray  # int64 [L], NO_TIME: none written
    open_start: np.ndarray  # int64 [L, 3], NO_TIME: no open period of finalised readings
    open_end: np.ndarray  # int64 [L, 3]
    open_sum: np.ndarray  # float64 [L, 3, Q]
    open_comp: np.ndarray  # float64 [L, 3, Q]
    open_late: np.ndarray  # int64 [L, 3]
    drops: np.ndarray  # int64 [len(PERIOD_DROP_REASONS)], cumulative

    @property
    def n_meters(self) -> int:
        return int(self.last_ts.shape[0])

    @property
    def n_lines(self) -> int:
        return int(self.newest_ts.shape[0])

    @property
    def pending_capacity(self) -> int:
        return int(self.pending_ts.shape[1])


def new_period_state(n_lines: int, n_meters: int, pending_capacity: int = 64) -> PeriodState:
    """A fresh state; ``pending_capacity`` (a power of two) grows as needed."""
    if pending_capacity < 1 or pending_capacity & (pending_capacity - 1):
        raise ValueError(f"pending_capacity must be a power of two, got {pending_capacity}")
    M, L, K = n_meters, n_lines, pending_capacity
    return PeriodState(
        last_ts=np.full(M, NO_TIME, dtype=np.int64),
        last_value=np.zeros(M, dtype=np.float64),
        suspect_ts=np.full(M, NO_TIME, dtype=np.int64),
        suspect_value=np.zeros(M, dtype=np.float64),
        pending_ts=np.zeros((M, K), dtype=np.int64),
        pending_value=np.zeros((M, K), dtype=np.float64),
        pending_late=np.zeros((M, K), dtype=np.bool_),
        pending_start=np.zeros(M, dtype=np.int64),
        pending_len=np.zeros(M, dtype=np.int64),
        newest_ts=np.full(L, NO_TIME, dtype=np.int64),
        capped_ts=np.full(L, NO_TIME, dtype=np.int64),
        settled_ts=np.full(L, NO_TIME, dtype=np.int64),
        arrival_ms=np.full(L, NO_TIME, dtype=np.int64),
        provisional_step=np.full(L, NO_TIME, dtype=np.int64),
        open_start=np.full((L, _K), NO_TIME, dtype=np.int64),
        open_end=np.zeros((L, _K), dtype=np.int64),
        open_sum=np.zeros((L, _K, N_QUANTITIES), dtype=np.float64),
        open_comp=np.zeros((L, _K, N_QUANTITIES), dtype=np.float64),
        open_late=np.zeros((L, _K), dtype=np.int64),
        drops=np.zeros(len(PERIOD_DROP_REASONS), dtype=np.int64),
    )


def grow_period_state(state: PeriodState, n_lines: int | None = None,
                      n_meters: int | None = None, pending_capacity: int | None = None) -> None:
    """Make room in ``state``, in place, for more lines, meters or pending readings."""
    L = max(n_lines or 0, state.n_lines)
    M = max(n_meters or 0, state.n_meters)
    K = max(pending_capacity or 0, state.pending_capacity)
    if (state.n_lines, state.n_meters, state.pending_capacity) == (L, M, K):
        return
    grown = new_period_state(L, M, K)
    mask = state.pending_capacity - 1
    for f in fields(PeriodState):
        old = getattr(state, f.name)
        new = getattr(grown, f.name)
        if f.name in ("pending_ts", "pending_value", "pending_late"):
            _unroll_rings(old, new, state.pending_start, state.pending_len, mask)
        elif f.name != "pending_start":
            new[tuple(slice(0, d) for d in old.shape)] = old
    for f in fields(PeriodState):
        setattr(state, f.name, getattr(grown, f.name))


@nb.njit(cache=True)
def _unroll_rings(old, new, start, length, mask):
    """Each meter's pending readings from its ring in ``old`` to the start of its row in
    ``new`` (a larger, zeroed ring), oldest first."""
    for m in range(length.shape[0]):
        s = start[m]
        for k in range(length[m]):
            new[m, k] = old[m, (s + k) & mask]


def period_state_arrays(state: PeriodState) -> dict[str, np.ndarray]:
    """Every array of ``state`` by field name: what a checkpoint must keep."""
    return {f.name: getattr(state, f.name) for f in fields(PeriodState)}


def period_state_from_arrays(arrays: dict[str, np.ndarray]) -> PeriodState:
    """The inverse of ``period_state_arrays``; a state saved before the CO2 sums were kept
    has its open periods' CO2 start at zero."""
    given = dict(arrays)
    for name in ("open_sum", "open_comp"):
        given[name] = pad_quantities(given[name], N_QUANTITIES)
    return PeriodState(**{f.name: np.ascontiguousarray(given[f.name])
                          for f in fields(PeriodState)})


@dataclass
class Periods:
    """Rows emitted by one ``advance_periods`` call: one per (line, kind, period) and
    write. ``kind`` indexes ``PERIOD_KINDS``; ratios are NaN where the period is idle;
    ``final`` rows come once per period, provisional ones whenever rule 4 says."""

    line: np.ndarray  # int32 [n]
    kind: np.ndarray  # int8 [n]
    start_ms: np.ndarray  # int64 [n]
    end_ms: np.ndarray  # int64 [n]
    energy_kgce: np.ndarray  # float64 [n]
    electricity_kwh: np.ndarray  # float64 [n]
    production_t: np.ndarray  # float64 [n]
    kgce_per_t: np.ndarray  # float64 [n]
    kwh_per_t: np.ndarray  # float64 [n]
    final: np.ndarray  # bool [n]
    late_readings: np.ndarray  # int64 [n]
    drops: np.ndarray  # int64 [len(PERIOD_DROP_REASONS)], this call's
    co2_direct_t: np.ndarray  # float64 [n], scope 1
    co2_indirect_t: np.ndarray  # float64 [n], scope 2
    co2_per_t: np.ndarray  # float64 [n]; NaN where idle

    def __len__(self) -> int:
        return int(self.line.shape[0])


@nb.njit(cache=True, inline="always")
def _take_one(is_delta, roll, per_ms, ts, v, lt, lv, st, sv):
    """Finalise one reading against a meter's baseline ``(lt, lv)`` and suspect
    ``(st, sv)``, as ``intensity`` does: (outcome, delta, lt, lv, st, sv)."""
    if is_delta:
        delta = v
    elif lt == NO_TIME:
        return _BASELINE, 0.0, ts, v, st, sv
    else:
        delta = _counter_delta(v, lv, roll)
    if per_ms > 0.0 and lt != NO_TIME and abs(delta) > per_ms * max(ts - lt, 1000):
        sure = False
        if not is_delta and st != NO_TIME:
            delta = _counter_delta(v, sv, roll)
            sure = abs(delta) <= per_ms * max(ts - st, 1000)
        if not sure:
            if not is_delta:
                st = ts
                sv = v
            return _DROPPED, 0.0, lt, lv, st, sv
    return _TAKEN, delta, ts, v, NO_TIME, sv


@nb.njit(cache=True, inline="always")
def _nadd(sums, comps, q, x):
    s = sums[q]
    t = s + x
    if abs(s) >= abs(x):
        comps[q] += (s - t) + x
    else:
        comps[q] += (x - t) + s
    sums[q] = t


@nb.njit(cache=True)
def _emit(n, line, k, start, end, sums, comps, late, final, min_prod, strict,
          o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late):
    o_line[n] = line
    o_kind[n] = k
    o_start[n] = start
    o_end[n] = end
    e = sums[0] + comps[0]
    el = sums[1] + comps[1]
    p = sums[2] + comps[2]
    cd = sums[3] + comps[3]
    ci = sums[4] + comps[4]
    o_sums[n, 0] = e
    o_sums[n, 1] = el
    o_sums[n, 2] = p
    o_sums[n, 3] = cd
    o_sums[n, 4] = ci
    o_ratio[n, 0] = np.nan
    o_ratio[n, 1] = np.nan
    o_ratio[n, 2] = np.nan
    producing = p > min_prod if strict else (p >= min_prod and p > 0.0)
    if producing:
        ke = e / p
        kw = el / p
        if abs(ke) <= _MAX_FLOAT and abs(kw) <= _MAX_FLOAT:
            o_ratio[n, 0] = ke
            o_ratio[n, 1] = kw
        kc = (cd + ci) / p
        if abs(kc) <= _MAX_FLOAT:
            o_ratio[n, 2] = kc
    o_final[n] = final
    o_late[n] = late
    return n + 1


@nb.njit(cache=True)
def _line_pending(lu, line_meter_start, line_meters, p_len):
    total = 0
    for mi in range(line_meter_start[lu], line_meter_start[lu + 1]):
        total += p_len[line_meters[mi]]
    return total


@nb.njit(cache=True)
def _walk_rows(lu, line_meter_start, line_meters, p_len, bstart):
    """At most how many rows a walk of line ``lu`` writes: per kind one for every
    period its pending readings or its open period lie in, so no more than one per
    pending reading and two more, nor than the calendar's periods of the call."""
    return min(_K * (_line_pending(lu, line_meter_start, line_meters, p_len) + 2),
               bstart[_K])


@nb.njit(cache=True)
def _walk(lu, P, final, line_meter_start, line_meters, kgce_f, kwh_f, t_f, co2d_f, co2i_f,
          delta_mode, rollover, plausible, last_ts, last_value, sus_ts, sus_value, p_ts, p_v,
          p_late, p_start, p_len, open_start, open_end, open_sum, open_comp, open_late,
          bounds, bstart, min_prod, strict, n,
          o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
          s_int, s_float, s_open, s_sums):
    """Rule 3 for line ``lu`` up to ``P`` (``final``), or rule 4's walk over all its
    pending readings on copies (not ``final``). Returns the rows written so far.

    ``s_*`` are scratch arrays (the caller's, made once per call, so a walk allocates
    nothing): per meter of the line its cursor, baseline and suspect; per kind the
    open period's bounds, late readings and sums."""
    ms = line_meter_start[lu]
    nm = line_meter_start[lu + 1] - ms
    mask = p_ts.shape[1] - 1
    if final:
        # Most calls settle nothing: no reading at or before P, no period ending by then.
        due = False
        for q in range(nm):
            m = line_meters[ms + q]
            if p_len[m] and p_ts[m, p_start[m]] <= P:
                due = True
                break
        if not due:
            for k in range(_K):
                if open_start[lu, k] != NO_TIME and open_end[lu, k] <= P:
                    due = True
            if not due:
                return n
    used = s_int[0]
    lt = s_int[1]
    st = s_int[2]
    lv = s_float[0]
    sv = s_float[1]
    for q in range(nm):
        m = line_meters[ms + q]
        used[q] = 0
        lt[q] = last_ts[m]
        lv[q] = last_value[m]
        st[q] = sus_ts[m]
        sv[q] = sus_value[m]
    a_start = s_open[0]
    a_end = s_open[1]
    a_late = s_open[2]
    a_sum = s_sums[0]
    a_comp = s_sums[1]
    Q = a_sum.shape[1]
    for k in range(_K):
        a_start[k] = open_start[lu, k]
        a_end[k] = open_end[lu, k]
        a_late[k] = open_late[lu, k]
        for c in range(Q):
            a_sum[k, c] = open_sum[lu, k, c]
            a_comp[k, c] = open_comp[lu, k, c]
    seg = s_sums[2, 0]
    seg_c = s_sums[2, 1]
    n_implausible = 0
    while True:
        t0 = _MAX
        for q in range(nm):
            m = line_meters[ms + q]
            if used[q] < p_len[m]:
                ts = p_ts[m, (p_start[m] + used[q]) & mask]
                if ts < t0:
                    t0 = ts
        if t0 == _MAX or t0 > P:
            break
        # [t0, X) lies inside one period of every kind: the segment finalised now.
        X = P + 1 if P < _MAX else _MAX
        for k in range(_K):
            if a_start[k] != NO_TIME and a_end[k] <= t0:
                n = _emit(n, lu, k, a_start[k], a_end[k], a_sum[k], a_comp[k], a_late[k],
                          final, min_prod, strict, o_line, o_kind, o_start, o_end, o_sums,
                          o_ratio, o_final, o_late)
                a_start[k] = NO_TIME
            if a_start[k] == NO_TIME:
                lo = bstart[k]
                i = lo + np.searchsorted(bounds[lo:bstart[k + 1]], t0, side="right") - 1
                a_start[k] = bounds[i]
                a_end[k] = bounds[i + 1]
                a_sum[k, :] = 0.0
                a_comp[k, :] = 0.0
                a_late[k] = 0
            if a_end[k] < X:
                X = a_end[k]
        seg[:] = 0.0
        seg_c[:] = 0.0
        late = 0
        for q in range(nm):
            m = line_meters[ms + q]
            mu = _U(m)
            s = p_start[mu]
            pn = p_len[mu]
            is_delta = delta_mode[mu]
            roll = rollover[mu]
            per_ms = plausible[mu]
            f_kgce = kgce_f[mu]
            f_kwh = kwh_f[mu]
            f_t = t_f[mu]
            f_co2d = co2d_f[mu]
            f_co2i = co2i_f[mu]
            # The meter's cursor, baseline and suspect in locals for the loop.
            u = used[q]
            lt_q = lt[q]
            lv_q = lv[q]
            st_q = st[q]
            sv_q = sv[q]
            while u < pn:
                pos = _U((s + u) & mask)
                ts = p_ts[mu, pos]
                if ts >= X:
                    break
                u += 1
                how, delta, lt_q, lv_q, st_q, sv_q = _take_one(
                    is_delta, roll, per_ms, ts, p_v[mu, pos], lt_q, lv_q, st_q, sv_q)
                if how == _DROPPED:
                    n_implausible += 1
                    continue
                if p_late[mu, pos]:
                    late += 1
                if how == _TAKEN:
                    # A factor of zero adds a zero, which leaves a Neumaier sum as it
                    # is (deltas are finite): skipped.
                    if f_kgce != 0.0:
                        _nadd(seg, seg_c, 0, delta * f_kgce)
                    if f_kwh != 0.0:
                        _nadd(seg, seg_c, 1, delta * f_kwh)
                    if f_t != 0.0:
                        _nadd(seg, seg_c, 2, delta * f_t)
                    if f_co2d != 0.0:
                        _nadd(seg, seg_c, 3, delta * f_co2d)
                    if f_co2i != 0.0:
                        _nadd(seg, seg_c, 4, delta * f_co2i)
            used[q] = u
            lt[q] = lt_q
            lv[q] = lv_q
            st[q] = st_q
            sv[q] = sv_q
        for k in range(_K):
            a_late[k] += late
            for c in range(Q):
                x = seg[c] + seg_c[c]
                if x != 0.0:
                    _nadd(a_sum[k], a_comp[k], c, x)
    for k in range(_K):
        if a_start[k] != NO_TIME and (not final or a_end[k] <= P):
            n = _emit(n, lu, k, a_start[k], a_end[k], a_sum[k], a_comp[k], a_late[k], final,
                      min_prod, strict, o_line, o_kind, o_start, o_end, o_sums, o_ratio,
                      o_final, o_late)
            a_start[k] = NO_TIME
    if final:
        drops[_IMPLAUSIBLE] += n_implausible
        for q in range(nm):
            m = line_meters[ms + q]
            last_ts[m] = lt[q]
            last_value[m] = lv[q]
            sus_ts[m] = st[q]
            sus_value[m] = sv[q]
            p_start[m] = (p_start[m] + used[q]) & mask
            p_len[m] -= used[q]
        for k in range(_K):
            open_start[lu, k] = a_start[k]
            open_end[lu, k] = a_end[k]
            open_late[lu, k] = a_late[k]
            for c in range(Q):
                open_sum[lu, k, c] = a_sum[k, c]
                open_comp[lu, k, c] = a_comp[k, c]
    return n


@nb.njit(cache=True, inline="always")
def _insert(m, ts, v, late, p_ts, p_v, p_late, p_start, p_len):
    """Insert one reading into meter ``m``'s sorted pending ring; -1 or the drop reason.

    Written out where it is called (``inline``) and indexed unsigned, as the intensity
    kernel's insert: an in-order reading, the common case, costs one comparison and
    three stores."""
    mask = p_ts.shape[1] - 1
    mu = _U(m)
    s = p_start[mu]
    n = p_len[mu]
    j = n
    while j > 0 and p_ts[mu, _U((s + j - 1) & mask)] > ts:
        j -= 1
    if j > 0 and p_ts[mu, _U((s + j - 1) & mask)] == ts:
        return _DUPLICATE
    if n == mask + 1:
        return _OVERFLOW
    for k in range(n, j, -1):
        p_ts[mu, _U((s + k) & mask)] = p_ts[mu, _U((s + k - 1) & mask)]
        p_v[mu, _U((s + k) & mask)] = p_v[mu, _U((s + k - 1) & mask)]
        p_late[mu, _U((s + k) & mask)] = p_late[mu, _U((s + k - 1) & mask)]
    at = _U((s + j) & mask)
    p_ts[mu, at] = ts
    p_v[mu, at] = v
    p_late[mu, at] = late
    p_len[mu] = n + 1
    return -1


@nb.njit(cache=True, nogil=True)
def _advance_periods(
    phase, start, n, max_pending, now, lateness, grace, every,
    r_meter, r_ts, r_value, r_message,
    meter_line, line_meter_start, line_meters, kgce_f, kwh_f, t_f, co2d_f, co2i_f, delta_mode,
    rollover, plausible, last_ts, last_value, sus_ts, sus_value, p_ts, p_v, p_late, p_start, p_len,
    newest, capped, settled, arrival, prov_step, open_start, open_end, open_sum, open_comp,
    open_late, bounds, bstart, min_prod, strict,
    o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
    s_int, s_float, s_open, s_sums, dirty,
):
    """One phase (0: silent lines, rule 1; 1: messages, rule 2; 3: settling the lines
    the messages moved (rule 3); 2: provisional rows,
    rule 4) from line or reading ``start``; returns (where it stopped, rows, why)."""
    out_cap = o_line.shape[0]
    n_lines = newest.shape[0]
    # One specialisation of ``_walk`` (and of what it calls) for every phase: a literal
    # True/False, a literal _MAX or an int32 line here would each compile another one,
    # seconds apiece on a cold start.
    final = phase != 2
    if phase == 0:
        for lu in range(start, n_lines):
            if arrival[lu] == NO_TIME or now - arrival[lu] < grace:
                continue
            P = min(newest[lu], now)
            if settled[lu] >= P:
                continue
            if n + _walk_rows(lu, line_meter_start, line_meters, p_len, bstart) > out_cap:
                return lu, n, _NEEDS_OUTPUT
            n = _walk(lu, P, final, line_meter_start, line_meters, kgce_f, kwh_f, t_f,
                      co2d_f, co2i_f, delta_mode, rollover, plausible, last_ts,
                      last_value, sus_ts,
                      sus_value, p_ts, p_v, p_late, p_start, p_len, open_start, open_end,
                      open_sum, open_comp, open_late, bounds, bstart, min_prod, strict, n,
                      o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
                      s_int, s_float, s_open, s_sums)
            settled[lu] = P
        return n_lines, n, 0
    if phase == 3:
        for lu in range(start, n_lines):
            if not dirty[lu]:
                continue
            if n + _walk_rows(lu, line_meter_start, line_meters, p_len, bstart) > out_cap:
                return lu, n, _NEEDS_OUTPUT
            n = _walk(lu, settled[lu], final, line_meter_start, line_meters, kgce_f, kwh_f, t_f,
                      co2d_f, co2i_f, delta_mode, rollover, plausible, last_ts,
                      last_value, sus_ts,
                      sus_value, p_ts, p_v, p_late, p_start, p_len, open_start, open_end,
                      open_sum, open_comp, open_late, bounds, bstart, min_prod, strict, n,
                      o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
                      s_int, s_float, s_open, s_sums)
            dirty[lu] = False
        return n_lines, n, 0
    if phase == 2:
        for lu in range(start, n_lines):
            if newest[lu] == NO_TIME:
                continue
            step = capped[lu] // every
            if prov_step[lu] != NO_TIME and step <= prov_step[lu]:
                continue
            if n + _walk_rows(lu, line_meter_start, line_meters, p_len, bstart) > out_cap:
                return lu, n, _NEEDS_OUTPUT
            n = _walk(lu, np.int64(_MAX), final, line_meter_start, line_meters, kgce_f, kwh_f,
                      t_f, co2d_f, co2i_f, delta_mode, rollover, plausible, last_ts,
                      last_value, sus_ts,
                      sus_value, p_ts, p_v, p_late, p_start, p_len, open_start, open_end,
                      open_sum, open_comp, open_late, bounds, bstart, min_prod, strict, n,
                      o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
                      s_int, s_float, s_open, s_sums)
            prov_step[lu] = step
        return n_lines, n, 0
    cap = p_ts.shape[1]
    nr = r_meter.shape[0]
    i = start
    while i < nr:
        m = r_meter[_U(i)]
        mu = _U(m)
        lu = np.int64(meter_line[mu])  # as in the other phases (one _walk specialisation)
        lx = _U(lu)
        j = i + 1
        msg = r_message[_U(i)]
        while j < nr and r_message[_U(j)] == msg:
            j += 1
        if dirty[lx] and p_len[mu] + (j - i) > cap:
            # Readings at or before ``settled`` still take room: settle them first, so
            # the message finds the buffer as rule 2 says. Only a walk writes rows in
            # this phase, so only here must the output have room for them.
            if n + _walk_rows(lu, line_meter_start, line_meters, p_len, bstart) > out_cap:
                return i, n, _NEEDS_OUTPUT
            n = _walk(lu, settled[lx], final, line_meter_start, line_meters, kgce_f, kwh_f,
                      t_f, co2d_f, co2i_f, delta_mode, rollover, plausible, last_ts,
                      last_value, sus_ts,
                      sus_value, p_ts, p_v, p_late, p_start, p_len, open_start, open_end,
                      open_sum, open_comp, open_late, bounds, bstart, min_prod, strict, n,
                      o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late, drops,
                      s_int, s_float, s_open, s_sums)
            dirty[lx] = False
        if cap < max_pending and p_len[mu] + (j - i) > cap:
            return i, n, _NEEDS_PENDING
        base = newest[lx]
        started = base != NO_TIME
        if base > now:
            base = max(capped[lx], now)
        if started:
            capped[lx] = base
        wm = base - lateness
        line_settled = settled[lx]
        hi = NO_TIME
        for r in range(i, j):
            ru = _U(r)
            ts = r_ts[ru]
            if started and ts <= line_settled:
                drops[_CLOSED] += 1
                continue
            why = _insert(m, ts, r_value[ru], started and ts <= wm, p_ts, p_v, p_late,
                          p_start, p_len)
            if why >= 0:
                drops[why] += 1
                continue
            if ts > hi:
                hi = ts
        i = j
        if hi == NO_TIME:
            continue
        arrival[lx] = now if now != _MAX else NO_TIME
        if not started:
            newest[lx] = hi
            base = min(hi, now)
        else:
            nw = newest[lx]
            if hi > nw:
                nw = hi
                newest[lx] = hi
            base = nw if nw <= now else max(base, now)
        capped[lx] = base
        P = base - lateness - grace
        if line_settled == NO_TIME or line_settled < P:
            # Settled now; the readings it passed are finalised once per call and line
            # (phase 3), which gives the same rows: only the order of additions differs.
            settled[lx] = P
            dirty[lx] = True
    return nr, n, 0


def _span(state: PeriodState, meters: MeterTable, readings: Readings) -> tuple[int, int] | None:
    """The times the call may look a period up for: its readings not at or before their
    line's period watermark, every pending reading and every open period."""
    los: list[int] = []
    his: list[int] = []
    if len(readings):
        settled = state.settled_ts[meters.line[readings.meter]]
        ts = readings.ts_ms[readings.ts_ms > settled]
        if ts.size:
            los.append(int(ts.min()))
            his.append(int(ts.max()))
    held = np.nonzero(state.pending_len)[0]
    if held.size:
        first = state.pending_ts[held, state.pending_start[held]]
        los.append(int(first.min()))
        his.append(int(state.newest_ts.max()))
    opened = state.open_start[state.open_start != NO_TIME]
    if opened.size:
        los.append(int(opened.min()))
        his.append(int(opened.max()))
    if not los:
        return None
    return min(los), max(his)


_joined: list[tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]] = []
"""The last read-only boundary arrays given and what ``_boundary_arrays`` made of them.
A calendar that hands the same read-only arrays again (``ingest.calendar.Calendar``
does while the call's span stays in the same months) has them checked and joined once.
Only a cache: the arrays cannot change, so the result is the same."""


def _boundary_arrays(boundaries: Boundaries, span: tuple[int, int] | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    if span is None:
        per_kind = [np.array([0, 1], dtype=np.int64)] * _K
    else:
        lo, hi = span
        per_kind = [np.ascontiguousarray(b, dtype=np.int64) for b in boundaries(lo, hi)]
        if len(per_kind) != _K:
            raise ValueError(f"boundaries must give {_K} arrays (shift, day, month)")
        known = _joined and all(a is b for a, b in zip(_joined[0][0], per_kind, strict=True))
        for name, b in zip(PERIOD_KINDS, per_kind, strict=True):
            if not known and (b.ndim != 1 or b.size < 2 or not (np.diff(b) > 0).all()):
                raise ValueError(f"{name} boundaries must be strictly increasing")
            if not (b[0] <= lo and b[-1] > hi):
                raise ValueError(f"{name} boundaries must cover {lo} .. {hi} ms")
        if known:
            return _joined[0][1], _joined[0][2]
    bstart = np.zeros(_K + 1, dtype=np.int64)
    np.cumsum([b.size for b in per_kind], out=bstart[1:])
    bounds = np.concatenate(per_kind)
    if span is not None and not any(b.flags.writeable for b in per_kind):
        _joined[:] = [(tuple(per_kind), bounds, bstart)]
    return bounds, bstart


def advance_periods(
    state: PeriodState,
    config: PeriodConfig,
    meters: MeterTable,
    readings: Readings,
    boundaries: Boundaries,
    max_pending: int = 1 << 16,
    now_ms: int | None = None,
) -> Periods:
    """Take one batch of readings; update ``state`` in place; return the rows emitted.

    ``boundaries`` gives the calendar (see ``Boundaries``); ``now_ms`` is the wall
    clock as in ``intensity.advance`` (``None``: no cap, no silent lines). A meter
    holds at most ``max_pending`` (a power of two) readings waiting to be settled.
    Final rows do not depend on how a stream is cut into batches (with the same
    ``now_ms`` for each); provisional rows do, by rule 4.
    """
    if meters.n_meters > state.n_meters or meters.n_lines > state.n_lines:
        raise ValueError("the meter table has more meters or lines than the state: grow it")
    if max_pending < 1 or max_pending & (max_pending - 1):
        raise ValueError(f"max_pending must be a power of two, got {max_pending}")
    drops = np.zeros(len(PERIOD_DROP_REASONS), dtype=np.int64)
    if len(readings):
        lo, hi, mixed, bad = _scan_readings(readings.meter, readings.message, readings.value)
        if lo < 0 or hi >= meters.n_meters:
            raise ValueError(f"reading meters must lie in 0..{meters.n_meters - 1}")
        if mixed:
            raise ValueError("a message must hold the readings of one meter")
        if bad:
            readings = _in_range(readings)
            drops[_IMPLAUSIBLE] += bad
    unjudged = meters.plausible_per_ms == 0.0
    state.suspect_ts[:unjudged.shape[0]][unjudged] = NO_TIME
    bounds, bstart = _boundary_arrays(boundaries, _span(state, meters, readings))
    now = _MAX if now_ms is None else int(now_ms)
    strict = config.min_production_t is None
    min_prod = 0.0 if strict else float(config.min_production_t)  # type: ignore[arg-type]
    cap = 16 + 3 * meters.n_lines + len(readings) // 16
    out = _outputs(cap)
    widest = int(np.diff(meters.line_meter_start).max(initial=0)) if meters.n_lines else 0
    scratch = (np.zeros((3, max(widest, 1)), np.int64), np.zeros((2, max(widest, 1))),
               np.zeros((3, _K), np.int64), np.zeros((3, max(_K, 2), N_QUANTITIES)))
    n = 0
    dirty = np.zeros(state.n_lines, dtype=np.bool_)
    for phase in (0, 1, 3, 2):
        if phase == 0 and now_ms is None:
            continue
        at = 0
        while True:
            at, n, why = _advance_periods(
                phase, at, n, max_pending, now, config.allowed_lateness_ms, config.grace_ms,
                config.provisional_every_ms,
                readings.meter, readings.ts_ms, readings.value, readings.message,
                meters.line, meters.line_meter_start, meters.line_meters,
                meters.kgce_per_unit, meters.kwh_per_unit, meters.t_per_unit,
                meters.co2_direct_per_unit, meters.co2_indirect_per_unit,
                meters.delta_mode, meters.rollover, meters.plausible_per_ms,
                state.last_ts, state.last_value, state.suspect_ts, state.suspect_value,
                state.pending_ts, state.pending_value, state.pending_late,
                state.pending_start, state.pending_len, state.newest_ts, state.capped_ts,
                state.settled_ts, state.arrival_ms, state.provisional_step,
                state.open_start, state.open_end, state.open_sum, state.open_comp,
                state.open_late, bounds, bstart, min_prod, strict, *out, drops, *scratch,
                dirty,
            )
            if why == 0:
                break
            if why == _NEEDS_OUTPUT:
                need = n + _K * (int(state.pending_len.max(initial=0)) * meters.n_meters
                                 + len(readings) + 2)
                out = _outputs(max(2 * out[0].shape[0], min(need, 8 * out[0].shape[0])), out, n)
                continue
            rest = readings.message[at:]
            other = np.nonzero(rest != rest[0])[0]
            longest = int(other[0]) if other.size else int(rest.shape[0])
            needed = int(state.pending_len.max()) + longest
            grow_period_state(state, pending_capacity=min(max_pending,
                                                          1 << max(0, (needed - 1).bit_length())))
    state.drops += drops
    o_line, o_kind, o_start, o_end, o_sums, o_ratio, o_final, o_late = out
    return Periods(
        line=o_line[:n], kind=o_kind[:n], start_ms=o_start[:n], end_ms=o_end[:n],
        energy_kgce=o_sums[:n, 0], electricity_kwh=o_sums[:n, 1], production_t=o_sums[:n, 2],
        kgce_per_t=o_ratio[:n, 0], kwh_per_t=o_ratio[:n, 1], final=o_final[:n],
        late_readings=o_late[:n], drops=drops, co2_direct_t=o_sums[:n, 3],
        co2_indirect_t=o_sums[:n, 4], co2_per_t=o_ratio[:n, 2],
    )


def _outputs(cap: int, old: tuple[np.ndarray, ...] | None = None, keep: int = 0
             ) -> tuple[np.ndarray, ...]:
    """Output columns with room for ``cap`` rows (the first ``keep`` of ``old`` copied)."""
    new = (np.empty(cap, np.int32), np.empty(cap, np.int8), np.empty(cap, np.int64),
           np.empty(cap, np.int64), np.empty((cap, N_QUANTITIES), np.float64),
           np.empty((cap, 3), np.float64), np.empty(cap, np.bool_), np.empty(cap, np.int64))
    if old is not None:
        for a, b in zip(new, old, strict=True):
            a[:keep] = b[:keep]
    return new
