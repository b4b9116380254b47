"""Readings in, intensity ticks out: the semantics (docs/semantics.md) as one streaming kernel.

What ``advance`` does, exactly (the reference in ``wattline.kernels.naive`` is
written from this text and the contract, and compared by hypothesis):

1. Readings are taken in arrival order, one message at a time (consecutive
   readings with the same ``message`` number). Each reading is judged against
   its line's watermark as it stood before the message: ``newest - lateness``,
   where ``newest`` is the newest accepted reading time of the line (no
   watermark before its first reading).
   - ``ts <= watermark``: dropped as ``late``;
   - the meter already holds a pending reading with the same ``ts``: dropped as
     ``duplicate``;
   - the meter's pending buffer is full: dropped as ``pending_overflow``;
   - otherwise it joins the meter's pending readings, kept sorted by ``ts``.
2. At the end of the message each line it touched takes its newest accepted
   time. A line's first tick is ``ceil(min(first accepted ts of its first
   message, watermark + 1 ms) / E)`` (in ticks of ``E = emit_every``), so that
   every later accepted reading falls at or after it. Then every tick ``k``
   with ``k * E <= watermark`` not yet emitted is emitted, in order.
3. Emitting tick ``k`` of a line: for each meter of the line, its pending
   readings with ``ts <= k * E`` are finalised in ``ts`` order. A counter's
   first reading sets its baseline; after that its delta is ``v - last``, or on
   a decrease ``v + rollover - last`` with a rollover and ``v`` (a reset)
   without. A delta-mode meter's delta is ``v``. The deltas, converted by the
   meter table, make the tick's bucket; each window sums the buckets of its
   last ``W / E`` ticks, i.e. deltas with ``T - W < t <= T``.
4. A window whose production is more than zero (or at least
   ``min_production_t`` when that is set) gets ``kgce_per_t`` and
   ``kwh_per_t``; an idle one gets NaN.

Window sums are running sums with Neumaier compensation, and a count of
non-zero buckets per window: when it drops to zero the sum is set to exactly
zero, so an emptied window is idle rather than a rounding residue.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from wattline.kernels.state import (
    DROP_REASONS,
    NO_TIME,
    KernelConfig,
    MeterTable,
    Readings,
    StreamState,
    Ticks,
    grow_state,
)

_LATE, _DUPLICATE, _OVERFLOW = 0, 1, 2
_NEEDS_PENDING, _NEEDS_OUTPUT = 1, 2  # why ``_advance`` stopped before the batch's end
assert DROP_REASONS == ("late", "duplicate", "pending_overflow")


_AHEAD = 8  # readings ahead whose pending rows ``_advance`` asks the cache for


def _prefetch_codegen(context, builder, signature, args):
    """``llvm.prefetch`` of the address of ``args[0][args[1:]]`` (for writing, all levels)."""
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    inds = [context.cast(builder, v, t, types.intp)
            for v, t in zip(args[1:], signature.args[1:], strict=True)]
    ptr = cgutils.get_item_pointer2(
        context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
        strides=cgutils.unpack_tuple(builder, ary.strides), layout=aryty.layout,
        inds=inds, wraparound=False,
    )
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    # declare_intrinsic spells the overloaded name for this llvmlite's pointer types.
    fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch(typingctx, arr, i, j):
    """Ask the cache for ``arr[i, j]`` ahead of use: a hint, with no effect on results.

    The pending rows are touched once a second per meter, far apart in memory, so
    a reading's row has usually left the cache by the time it arrives.
    """
    return types.void(arr, i, j), _prefetch_codegen


@intrinsic
def _prefetch1(typingctx, arr, i):
    """Ask the cache for ``arr[i]`` ahead of use (a hint, as ``_prefetch``)."""
    return types.void(arr, i), _prefetch_codegen


@intrinsic
def _prefetch3(typingctx, arr, i, j, k):
    """Ask the cache for ``arr[i, j, k]`` ahead of use (a hint, as ``_prefetch``)."""
    return types.void(arr, i, j, k), _prefetch_codegen


@nb.njit(cache=True, inline="always")
def _U(i):
    """An index known not to be negative (a meter, line, reading, ring slot or output
    row), as unsigned: Numba then indexes without first testing for a negative index
    and wrapping it around, which the hot loops paid for on every array access
    (measured: about 1.3x as fast over the benchmark's stream, same output bit for bit).
    Arithmetic stays signed; only the finished index is converted."""
    return np.uint64(i)


@nb.njit(cache=True, inline="always")
def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@nb.njit(cache=True, inline="always")
def _insert_pending(m, ts, v, p_ts, p_v, p_start, p_len):
    """Insert one reading into meter ``m``'s pending readings, kept sorted by time.

    Each meter's row is a ring (capacity a power of two) starting at
    ``p_start[m]``. Returns -1 when inserted, or the drop reason.
    """
    mask = p_ts.shape[1] - 1
    mu = _U(m)
    s = p_start[mu]
    n = p_len[mu]
    # Search from the newest end: an in-order reading costs one comparison.
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
    p_ts[mu, _U((s + j) & mask)] = ts
    p_v[mu, _U((s + j) & mask)] = v
    p_len[mu] = n + 1
    return -1


@nb.njit(cache=True, inline="always")
def _neumaier_add(sums, comps, w, q, x):
    s = sums[w, q]
    t = s + x
    if abs(s) >= abs(x):
        comps[w, q] += (s - t) + x
    else:
        comps[w, q] += (x - t) + s
    sums[w, q] = t


@nb.njit(cache=True, nogil=True)  # the MQTT thread runs meanwhile
def _advance(
    start, n_out, max_pending,
    r_meter, r_ts, r_value, r_message,
    meter_line, meter_line_start, line_meters, kgce_f, kwh_f, t_f, delta_mode, rollover,
    last_ts, last_value, p_ts, p_v, p_start, p_len,
    newest, next_tick, ring, w_sum, w_comp, w_nonzero, drops,
    window_ticks, emit_every, lateness, min_prod, strict_prod,
    out_line, out_tick, out_sums, out_kgce_t, out_kwh_t, batch_drops,
):
    """Readings ``start ..``; returns (where it stopped, rows emitted, why it stopped).

    Every message is the readings of one meter (the wrapper checks). It stops
    early, before a message, when the message might not fit in its meter's
    pending buffer and the buffer may still grow to ``max_pending``
    (``_NEEDS_PENDING``), or when the ticks the message could make due might not
    fit in the output (``_NEEDS_OUTPUT``); the wrapper makes room and calls again.
    """
    n = r_meter.shape[0]
    cap = p_ts.shape[1]
    mask = cap - 1  # pending rows are rings of a power-of-two capacity
    R = ring.shape[1]
    W = window_ticks.shape[0]
    out_cap = out_line.shape[0]
    i = start
    while i < n:
        if i + 2 * _AHEAD < n:
            # Two stages: first the meter's ring position, then (below) its row.
            mf = _U(r_meter[_U(i + 2 * _AHEAD)])
            _prefetch1(p_start, mf)
            _prefetch1(p_len, mf)
        if i + _AHEAD < n:
            # Where a reading a few messages on will go in its meter's pending rows.
            mf = _U(r_meter[_U(i + _AHEAD)])
            at = p_start[mf] + p_len[mf]
            _prefetch(p_ts, mf, (at - 1) & mask)
            _prefetch(p_ts, mf, at & mask)
            _prefetch(p_v, mf, at & mask)
        # One message: readings i .. j-1, all of meter m.
        m = _U(r_meter[_U(i)])
        line = meter_line[m]
        lu = _U(line)
        j = i + 1
        msg_hi = r_ts[_U(i)]
        msg_lo = msg_hi
        msg = r_message[_U(i)]
        while j < n and r_message[_U(j)] == msg:
            tj = r_ts[_U(j)]
            if tj > msg_hi:
                msg_hi = tj
            if tj < msg_lo:
                msg_lo = tj
            j += 1
        stop = 0
        if cap < max_pending and p_len[m] + (j - i) > cap:
            stop = _NEEDS_PENDING
        else:
            # At most this many ticks become due when the message closes. A started
            # line whose newest time stays short of its next tick's due time makes
            # none: the common case, settled without a division.
            if newest[lu] != NO_TIME:
                first = next_tick[lu]
                due = max(newest[lu], msg_hi) - lateness
                if due >= first * emit_every:
                    last = due // emit_every
                    if n_out + max(0, last - first + 1) > out_cap:
                        stop = _NEEDS_OUTPUT
            else:
                first = _ceil_div(min(msg_lo, msg_hi - lateness + 1), emit_every)
                last = (msg_hi - lateness) // emit_every
                if n_out + max(0, last - first + 1) > out_cap:
                    stop = _NEEDS_OUTPUT
        if stop:
            for d in range(batch_drops.shape[0]):
                drops[d] += batch_drops[d]
            return i, n_out, stop
        started = newest[lu] != NO_TIME
        wm = newest[lu] - lateness
        hi = NO_TIME
        lo = np.iinfo(np.int64).max
        for r in range(i, j):
            ts = r_ts[_U(r)]
            if started and ts <= wm:
                batch_drops[_LATE] += 1
                continue
            why = _insert_pending(m, ts, r_value[_U(r)], p_ts, p_v, p_start, p_len)
            if why >= 0:
                batch_drops[why] += 1
                continue
            if ts > hi:
                hi = ts
            if ts < lo:
                lo = ts
        i = j
        if hi == NO_TIME:
            continue
        # Close the message: the line's newest time, then any ticks now due.
        if not started:
            # The first tick sits at or before every reading still acceptable.
            newest[lu] = hi
            next_tick[lu] = _ceil_div(min(lo, hi - lateness + 1), emit_every)
        elif hi > newest[lu]:
            newest[lu] = hi
        if newest[lu] - lateness < next_tick[lu] * emit_every:
            continue  # no tick due: most messages, settled without a division
        # Emit ticks next_tick[line] .. upto of the line. This is written out here
        # rather than in an inlined helper: Numba gave each of the helper's two dozen
        # array arguments an atomic reference-count increment and decrement per call,
        # about 50 atomic operations per emission (measured: the kernel 1.1x as fast
        # without them over the benchmark's stream, same output bit for bit).
        upto = (newest[lu] - lateness) // emit_every
        ms = meter_line_start[line]
        me = meter_line_start[line + 1]
        for mi in range(ms, me):
            # The oldest pending readings of the line's meters, about to be finalised.
            m = _U(line_meters[_U(mi)])
            _prefetch(p_ts, m, p_start[m])
            _prefetch(p_v, m, p_start[m])
            _prefetch(p_ts, m, (p_start[m] + 8) & mask)
            _prefetch(p_v, m, (p_start[m] + 8) & mask)
        slot = next_tick[lu] % R - 1  # k % R for the loop's k, kept without a division
        # The line's first tick bucket and the buckets its windows drop then, last
        # touched a window ago and long out of the cache, and its running sums: asked
        # for together so that their misses overlap (measured: 1.09x as fast).
        _prefetch3(ring, lu, _U(slot + 1), 0)
        for w in range(W):
            old_slot = slot + 1 - window_ticks[w]
            if old_slot < 0:
                old_slot += R
            _prefetch3(ring, lu, _U(old_slot), 0)
        _prefetch3(w_sum, lu, 0, 0)
        _prefetch3(w_comp, lu, 0, 0)
        _prefetch3(w_nonzero, lu, 0, 0)
        _prefetch3(w_sum, lu, W - 1, 2)
        _prefetch3(w_comp, lu, W - 1, 2)
        _prefetch3(w_nonzero, lu, W - 1, 2)
        for k in range(next_tick[lu], upto + 1):
            slot += 1
            if slot == R:
                slot = 0
            T = k * emit_every
            b0 = 0.0
            b1 = 0.0
            b2 = 0.0
            for mi in range(ms, me):
                m = _U(line_meters[_U(mi)])
                s = p_start[m]
                pn = p_len[m]
                if pn == 0 or p_ts[m, _U(s)] > T:
                    continue
                # The meter's settings and baseline, read once and written back once.
                is_delta = delta_mode[m]
                roll = rollover[m]
                fk = kgce_f[m]
                fe = kwh_f[m]
                ft = t_f[m]
                lt = last_ts[m]
                lv = last_value[m]
                used = 0
                while used < pn:
                    pos = _U((s + used) & mask)
                    ts = p_ts[m, pos]
                    if ts > T:
                        break
                    v = p_v[m, pos]
                    used += 1
                    if is_delta:
                        delta = v
                    elif lt == NO_TIME:
                        lt = ts
                        lv = v
                        continue
                    else:
                        delta = v - lv
                        if delta < 0.0:
                            if roll > 0.0:
                                delta = v + roll - lv
                            else:
                                delta = v
                    lt = ts
                    lv = v
                    b0 += delta * fk
                    b1 += delta * fe
                    b2 += delta * ft
                last_ts[m] = lt
                last_value[m] = lv
                p_start[m] = (s + used) & mask
                p_len[m] = pn - used
            for w in range(W):
                # (k - window_ticks[w]) % R, without a division: 0 < window_ticks[w] <= R.
                old_slot = slot - window_ticks[w]
                if old_slot < 0:
                    old_slot += R
                for q in range(3):
                    old = ring[lu, _U(old_slot), q]
                    if old != 0.0:
                        w_nonzero[lu, w, q] -= 1
                        _neumaier_add(w_sum[lu], w_comp[lu], w, q, -old)
                    x = b0 if q == 0 else (b1 if q == 1 else b2)
                    if x != 0.0:
                        w_nonzero[lu, w, q] += 1
                        _neumaier_add(w_sum[lu], w_comp[lu], w, q, x)
                    if w_nonzero[lu, w, q] == 0:
                        w_sum[lu, w, q] = 0.0
                        w_comp[lu, w, q] = 0.0
            # The longest window's leaving bucket has been read; now overwrite it.
            ring[lu, _U(slot), 0] = b0
            ring[lu, _U(slot), 1] = b1
            ring[lu, _U(slot), 2] = b2
            out_line[_U(n_out)] = line
            out_tick[_U(n_out)] = T
            for w in range(W):
                e = w_sum[lu, w, 0] + w_comp[lu, w, 0]
                el = w_sum[lu, w, 1] + w_comp[lu, w, 1]
                p = w_sum[lu, w, 2] + w_comp[lu, w, 2]
                out_sums[_U(n_out), w, 0] = e
                out_sums[_U(n_out), w, 1] = el
                out_sums[_U(n_out), w, 2] = p
                producing = p > min_prod if strict_prod else p >= min_prod
                if producing:
                    out_kgce_t[_U(n_out), w] = e / p
                    out_kwh_t[_U(n_out), w] = el / p
                else:
                    out_kgce_t[_U(n_out), w] = np.nan
                    out_kwh_t[_U(n_out), w] = np.nan
            n_out += 1
        next_tick[lu] = upto + 1
    for d in range(batch_drops.shape[0]):
        drops[d] += batch_drops[d]
    return n, n_out, 0


@nb.njit(cache=True)
def _ticks_bound(r_meter, r_ts, meter_line, newest, next_tick, lateness, emit_every, n_lines):
    """An upper bound on the ticks one ``_advance`` call can emit."""
    hi = newest.copy()
    lo = np.full(n_lines, np.iinfo(np.int64).max, dtype=np.int64)
    for r in range(r_meter.shape[0]):
        line = meter_line[r_meter[r]]
        if r_ts[r] > hi[line] or hi[line] == NO_TIME:
            hi[line] = r_ts[r]
        if r_ts[r] < lo[line]:
            lo[line] = r_ts[r]
    total = 0
    for line in range(n_lines):
        if hi[line] == NO_TIME:
            continue
        last = (hi[line] - lateness) // emit_every
        if next_tick[line] != NO_TIME:
            first = next_tick[line]
        else:
            # The first message's newest reading is at least the batch's oldest.
            first = _ceil_div(min(lo[line], lo[line] - lateness + 1), emit_every)
        if last >= first:
            total += last - first + 1
    return total


def count_ticks_bound(
    state: StreamState, config: KernelConfig, meters: MeterTable, readings: Readings
) -> int:
    """At most how many tick rows ``advance(state, config, meters, readings)`` emits."""
    return int(
        _ticks_bound(
            readings.meter, readings.ts_ms, meters.line, state.newest_ts, state.next_tick,
            config.allowed_lateness_ms, config.emit_every_ms, state.n_lines,
        )
    )


@nb.njit(cache=True)
def _scan_readings(meter, message):
    """One pass over a non-empty batch: (lowest meter, highest meter, whether a
    message holds readings of more than one meter)."""
    lo = meter[0]
    hi = meter[0]
    mixed = False
    for r in range(1, meter.shape[0]):
        mr = meter[r]
        if mr < lo:
            lo = mr
        if mr > hi:
            hi = mr
        if message[r] == message[r - 1] and mr != meter[r - 1]:
            mixed = True
    return lo, hi, mixed


def _check(
    state: StreamState, config: KernelConfig, meters: MeterTable, readings: Readings
) -> None:
    if meters.n_meters > state.n_meters or meters.n_lines > state.n_lines:
        raise ValueError(
            f"state holds {state.n_meters} meters and {state.n_lines} lines but the meter "
            f"table has {meters.n_meters} and {meters.n_lines}: grow the state first"
        )
    same_windows = state.window_sum.shape[1] == len(config.windows_ms)
    if not same_windows or state.ring.shape[1] != config.ring_ticks:
        raise ValueError("state was made for other windows; windows cannot change mid-stream")
    if len(readings) and readings.message.shape != readings.meter.shape:
        raise ValueError(
            f"readings columns differ in length: meter {readings.meter.shape[0]}, "
            f"message {readings.message.shape[0]}"
        )
    if len(readings):
        lo, hi, mixed = _scan_readings(readings.meter, readings.message)
        if lo < 0 or hi >= meters.n_meters:
            raise ValueError(f"reading meters must lie in 0..{meters.n_meters - 1}")
        if mixed:
            raise ValueError(
                "a message must hold the readings of one meter (as an MQTT message does)"
            )


def _grown(array: np.ndarray, rows: int, keep: int) -> np.ndarray:
    """``array`` with room for ``rows`` rows, its first ``keep`` rows copied over."""
    bigger = np.empty((rows, *array.shape[1:]), dtype=array.dtype)
    bigger[:keep] = array[:keep]
    return bigger


def _tail(readings: Readings, start: int) -> Readings:
    return Readings(readings.meter[start:], readings.ts_ms[start:], readings.value[start:],
                    readings.message[start:])


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _longest_message(message: np.ndarray, start: int) -> int:
    """Length of the message starting at ``start``."""
    rest = message[start:]
    other = np.nonzero(rest != rest[0])[0]
    return int(other[0]) if other.size else int(rest.shape[0])


def advance(
    state: StreamState,
    config: KernelConfig,
    meters: MeterTable,
    readings: Readings,
    max_pending: int = 1 << 16,
) -> Ticks:
    """Take one batch of readings; update ``state`` in place; return the ticks emitted.

    A batch must hold whole messages. Splitting a stream into batches at any
    message boundary gives the same ticks as one batch. A meter's pending
    buffer (readings newer than the watermark) grows as needed up to
    ``max_pending`` readings; past that, readings are dropped as
    ``pending_overflow``.
    """
    _check(state, config, meters, readings)
    if max_pending < 1 or max_pending & (max_pending - 1):
        raise ValueError(f"max_pending must be a power of two, got {max_pending}")
    W = len(config.windows_ms)
    # Output rows grow on demand (the kernel stops before a message that might not fit).
    cap = 64 + len(readings) // 64
    out_line = np.empty(cap, dtype=np.int32)
    out_tick = np.empty(cap, dtype=np.int64)
    out_sums = np.empty((cap, W, 3), dtype=np.float64)
    out_kgce_t = np.empty((cap, W), dtype=np.float64)
    out_kwh_t = np.empty((cap, W), dtype=np.float64)
    strict = config.min_production_t is None
    min_prod = 0.0 if strict else float(config.min_production_t)  # type: ignore[arg-type]
    done, n = 0, 0
    total_drops = np.zeros(len(DROP_REASONS), dtype=np.int64)
    while True:
        batch_drops = np.zeros(len(DROP_REASONS), dtype=np.int64)
        done, n, why = _advance(
            done, n, max_pending,
            readings.meter, readings.ts_ms, readings.value, readings.message,
            meters.line, meters.line_meter_start, meters.line_meters,
            meters.kgce_per_unit, meters.kwh_per_unit, meters.t_per_unit,
            meters.delta_mode, meters.rollover,
            state.last_ts, state.last_value, state.pending_ts, state.pending_value,
            state.pending_start, state.pending_len,
            state.newest_ts, state.next_tick, state.ring, state.window_sum, state.window_comp,
            state.window_nonzero, state.drops,
            config.window_ticks, config.emit_every_ms, config.allowed_lateness_ms, min_prod, strict,
            out_line, out_tick, out_sums, out_kgce_t, out_kwh_t, batch_drops,
        )
        total_drops += batch_drops
        if why == 0:
            break
        if why == _NEEDS_OUTPUT:
            bound = count_ticks_bound(state, config, meters, _tail(readings, done))
            cap = max(2 * cap, n + bound)
            out_line = _grown(out_line, cap, n)
            out_tick = _grown(out_tick, cap, n)
            out_sums = _grown(out_sums, cap, n)
            out_kgce_t = _grown(out_kgce_t, cap, n)
            out_kwh_t = _grown(out_kwh_t, cap, n)
            continue
        # A message may not fit in a meter's pending buffer: make room, go on.
        needed = int(state.pending_len.max()) + _longest_message(readings.message, done)
        grow_state(state, config, pending_capacity=min(max_pending, _next_pow2(needed)))
    return Ticks(
        line=out_line[:n],
        tick_ms=out_tick[:n],
        energy_kgce=out_sums[:n, :, 0],
        electricity_kwh=out_sums[:n, :, 1],
        production_t=out_sums[:n, :, 2],
        kgce_per_t=out_kgce_t[:n],
        kwh_per_t=out_kwh_t[:n],
        drops=total_drops,
    )
