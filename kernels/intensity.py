"""Readings in, intensity ticks out: the semantics (docs/semantics.md) as one streaming kernel.

What ``advance`` does, exactly (the reference in ``wattline.kernels.naive`` is
written from this text and the contract, and compared by hypothesis):

1. Readings are taken in arrival order, one message at a time (consecutive
   readings with the same ``message`` number). Each reading is judged against
   its line's watermark as it stood before the message: ``base - lateness``,
   where ``base`` is the most that ``min(newest, now_ms)`` has been for the line
   (``newest``: the newest accepted reading time of the line; ``now_ms``: the
   wall clock the call is given, no cap without one). The base never moves back,
   even if a later call's ``now_ms`` is earlier. No watermark before the line's
   first accepted reading.
   - ``|value| >= 1e15`` or not a number: dropped as ``implausible``;
   - ``ts <= watermark``: dropped as ``late``;
   - the meter already holds a pending reading with the same ``ts``: dropped as
     ``duplicate``;
   - the meter's pending buffer is full: dropped as ``pending_overflow``;
   - otherwise it joins the meter's pending readings, kept sorted by ``ts``
     (also when it is ahead of ``now_ms``: it waits like any other).
2. At the end of the message each line it touched takes its newest accepted
   time, and its base becomes ``max(base, min(newest, now_ms))``. A line's first
   tick is ``ceil(min(first accepted ts of its first message, base + 1 ms -
   lateness) / E)`` (in ticks of ``E = emit_every``), so that every later
   accepted reading falls at or after it. Then every tick ``k`` with
   ``k * E <= watermark`` not yet emitted is emitted, in order.
3. Emitting tick ``k`` of a line: for each meter of the line, its pending
   readings with ``ts <= k * E`` are finalised in ``ts`` order. A counter's
   first reading sets its baseline; after that its delta is ``v - last``, or on
   a decrease ``v + rollover - last`` with a rollover and ``v`` (a reset)
   without. A delta-mode meter's delta is ``v``.
   Plausibility, for a meter with a ``max_rate`` (``plausible_per_ms > 0``) and
   a previous reading: ``limit = plausible_per_ms * max(ts - previous ts, 1000)``
   with the previous reading the meter's last finalised one (its baseline; for a
   delta-mode meter, its last taken reading). A delta with ``|delta| > limit`` is
   not taken: the reading is dropped as ``implausible``, does not become the
   baseline, and is remembered as the meter's suspect reading. If the next
   reading is implausible against the baseline too but plausible against the
   suspect (its delta from the suspect, by the same rules, within the limit for
   the time since the suspect), the meter has moved to a new level (a replaced
   meter, or a wrong read taken as the baseline): the suspect becomes the
   baseline, uncounted, and the reading's delta from it is taken. Any taken
   reading clears the suspect; a delta-mode meter has none (its deltas do not
   depend on a baseline), nor has a meter without a ``max_rate`` (a suspect left
   from when it had one is forgotten at the start of the next call). The deltas,
   converted by the meter table, make the tick's bucket; each window sums the
   buckets of its last ``W / E`` ticks, i.e. deltas with ``T - W < t <= T``.
4. A window whose production is more than zero (and more than zero and at
   least ``min_production_t`` when that is set) gets ``kgce_per_t`` and
   ``kwh_per_t`` when both ratios are finite, and ``co2_per_t`` (direct plus
   indirect CO2 over production) when it is finite; any other window is idle and
   gets NaN.

Window sums are running sums with Neumaier compensation. Their error grows with
the largest magnitude a sum has had, so each sum remembers that peak, and when a
sum falls below ``2**-30`` of it (a huge reading has left the window, or a net
sum has cancelled) it is summed afresh from the window's buckets: once a huge
delta has left a window, the window holds what it would hold had the delta never
been there. A count of non-zero buckets per window sets an emptied window to
exactly zero, so it is idle rather than a rounding residue. Inputs are bounded
(``VALUE_LIMIT``, ``ROLLOVER_LIMIT``, ``FACTOR_LIMIT`` in ``state``), so no sum
can overflow: every sum column is finite.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from wattline.kernels.state import (
    DROP_REASONS,
    N_QUANTITIES,
    NO_TIME,
    VALUE_LIMIT,
    FinalisedDeltas,
    KernelConfig,
    MeterTable,
    Readings,
    StreamState,
    Ticks,
    grow_state,
)

_LATE, _DUPLICATE, _OVERFLOW, _IMPLAUSIBLE = 0, 1, 2, 3
_NEEDS_PENDING, _NEEDS_OUTPUT = 1, 2  # why ``_advance`` stopped before the batch's end
assert DROP_REASONS == ("late", "duplicate", "pending_overflow", "implausible")
NO_CAP = np.iinfo(np.int64).max
"""``now_ms`` when the watermark is not capped by a wall clock."""
RESUM_BELOW = 2.0**-30
"""A window sum is summed afresh from its buckets when it falls below this fraction of
the largest magnitude it has had since it last was (see the module's docstring)."""
_MAX_FLOAT = np.finfo(np.float64).max


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


@nb.njit(cache=True, inline="always")
def _counter_delta(v, last, roll):
    """A counter's delta from ``last`` to ``v``: a decrease wraps at ``roll``, or without
    one (``roll == 0``) is a reset whose delta is ``v``."""
    delta = v - last
    if delta < 0.0:
        if roll > 0.0:
            delta = v + roll - last
        else:
            delta = v
    return delta


@nb.njit(cache=True, inline="always")
def _log(log_line, log_ts, log_val, log_n, line, ts, kgce, kwh, t, co2_direct, co2_indirect):
    """Append one finalised reading of a logged (batch) line to the call's log."""
    k = log_n[0]
    ku = _U(k)
    log_line[ku] = line
    log_ts[ku] = ts
    log_val[ku, 0] = kgce
    log_val[ku, 1] = kwh
    log_val[ku, 2] = t
    log_val[ku, 3] = co2_direct
    log_val[ku, 4] = co2_indirect
    log_n[0] = k + 1


@nb.njit(cache=True)
def _resum(ring, lu, q, slot, span, newest, out):
    """Sum window ``q`` of line ``lu`` afresh: ``newest`` (the bucket of the tick being
    emitted, not yet in the ring) and the ring's ``span - 1`` buckets before ``slot``.
    Writes the Neumaier sum and its compensation to ``out[0]``, ``out[1]``.

    Called only when a running sum has fallen far below its peak (rarely), so it is a
    plain call rather than inlined into the hot loop."""
    R = ring.shape[1]
    s = newest
    c = 0.0
    at = slot
    for _ in range(span - 1):
        at -= 1
        if at < 0:
            at += R
        x = ring[lu, _U(at), q]
        t = s + x
        if abs(s) >= abs(x):
            c += (s - t) + x
        else:
            c += (x - t) + s
        s = t
    out[0] = s
    out[1] = c


@nb.njit(cache=True, nogil=True)  # the MQTT thread runs meanwhile
def _advance(
    start, n_out, max_pending, now,
    r_meter, r_ts, r_value, r_message,
    meter_line, meter_line_start, line_meters, kgce_f, kwh_f, t_f, co2d_f, co2i_f, delta_mode,
    rollover, plausible,
    last_ts, last_value, sus_ts, sus_value, p_ts, p_v, p_start, p_len,
    newest, capped, next_tick, ring, w_sum, w_comp, w_peak, w_nonzero, drops,
    window_ticks, emit_every, lateness, min_prod, strict_prod,
    out_line, out_tick, out_sums, out_kgce_t, out_kwh_t, out_co2_t, batch_drops,
    log_on, log_line, log_ts, log_val, log_n,
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
    Q = ring.shape[2]
    W = window_ticks.shape[0]
    out_cap = out_line.shape[0]
    resummed = np.empty(2, dtype=np.float64)
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
        # The watermark's base before the message: max(capped, min(newest, now)). As
        # capped <= newest, that is newest unless the line is ahead of the wall clock.
        base = newest[lu]
        started = base != NO_TIME
        if base > now:
            base = max(capped[lu], now)
        if started:
            capped[lu] = base  # judged at every message, accepted readings or not
        stop = 0
        if cap < max_pending and p_len[m] + (j - i) > cap:
            stop = _NEEDS_PENDING
        else:
            # At most this many ticks become due when the message closes. A started
            # line whose newest time stays short of its next tick's due time makes
            # none: the common case, settled without a division.
            if started:
                first = next_tick[lu]
                due = max(newest[lu], msg_hi)
                if due > now:
                    due = max(base, now)
                due -= lateness
                if due >= first * emit_every:
                    last = due // emit_every
                    if n_out + max(0, last - first + 1) > out_cap:
                        stop = _NEEDS_OUTPUT
            else:
                first_base = min(msg_hi, now)
                first = _ceil_div(min(msg_lo, first_base - lateness + 1), emit_every)
                last = (first_base - lateness) // emit_every
                if n_out + max(0, last - first + 1) > out_cap:
                    stop = _NEEDS_OUTPUT
        if stop:
            for d in range(batch_drops.shape[0]):
                drops[d] += batch_drops[d]
            return i, n_out, stop
        wm = base - lateness
        hi = NO_TIME
        lo = np.iinfo(np.int64).max
        for r in range(i, j):
            ts = r_ts[_U(r)]
            v = r_value[_U(r)]
            if started and ts <= wm:
                batch_drops[_LATE] += 1
                continue
            why = _insert_pending(m, ts, v, p_ts, p_v, p_start, p_len)
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
        # Close the message: the line's newest time and base, then any ticks now due.
        if not started:
            # The first tick sits at or before every reading still acceptable.
            newest[lu] = hi
            base = min(hi, now)
            next_tick[lu] = _ceil_div(min(lo, base - lateness + 1), emit_every)
        else:
            nw = newest[lu]
            if hi > nw:
                nw = hi
                newest[lu] = hi
            base = nw if nw <= now else max(base, now)
        capped[lu] = base
        if base - lateness < next_tick[lu] * emit_every:
            continue  # no tick due: most messages, settled without a division
        # Emit ticks next_tick[line] .. upto of the line. This is written out here
        # rather than in an inlined helper: Numba gave each of the helper's two dozen
        # array arguments an atomic reference-count increment and decrement per call,
        # about 50 atomic operations per emission (measured: the kernel 1.1x as fast
        # without them over the benchmark's stream, same output bit for bit).
        upto = (base - lateness) // emit_every
        logging = log_on[lu]
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
        _prefetch3(w_peak, lu, 0, 0)
        _prefetch3(w_nonzero, lu, 0, 0)
        _prefetch3(w_sum, lu, W - 1, Q - 1)
        _prefetch3(w_comp, lu, W - 1, Q - 1)
        _prefetch3(w_peak, lu, W - 1, Q - 1)
        _prefetch3(w_nonzero, lu, W - 1, Q - 1)
        for k in range(next_tick[lu], upto + 1):
            slot += 1
            if slot == R:
                slot = 0
            T = k * emit_every
            b0 = 0.0
            b1 = 0.0
            b2 = 0.0
            b3 = 0.0
            b4 = 0.0
            for mi in range(ms, me):
                m = _U(line_meters[_U(mi)])
                s = p_start[m]
                pn = p_len[m]
                if pn == 0 or p_ts[m, _U(s)] > T:
                    continue
                # The meter's settings and baseline, read once and written back once.
                is_delta = delta_mode[m]
                roll = rollover[m]
                per_ms = plausible[m]
                fk = kgce_f[m]
                fe = kwh_f[m]
                ft = t_f[m]
                fd = co2d_f[m]
                fi = co2i_f[m]
                lt = last_ts[m]
                lv = last_value[m]
                used = 0
                if per_ms == 0.0:
                    # No max_rate: every delta is taken. The loop below without the
                    # judging, which would cost every reading of every meter (measured:
                    # about 4% of the kernel's instructions over the benchmark's stream).
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
                            if logging:
                                _log(log_line, log_ts, log_val, log_n, line, ts, 0.0, 0.0, 0.0,
                                     0.0, 0.0)
                            continue
                        else:
                            delta = _counter_delta(v, lv, roll)
                        lt = ts
                        lv = v
                        b0 += delta * fk
                        b1 += delta * fe
                        b2 += delta * ft
                        b3 += delta * fd
                        b4 += delta * fi
                        if logging:
                            _log(log_line, log_ts, log_val, log_n, line, ts, delta * fk,
                                 delta * fe, delta * ft, delta * fd, delta * fi)
                else:
                    st = sus_ts[m]
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
                            if logging:
                                _log(log_line, log_ts, log_val, log_n, line, ts, 0.0, 0.0, 0.0,
                                     0.0, 0.0)
                            continue
                        else:
                            delta = _counter_delta(v, lv, roll)
                        if lt != NO_TIME and abs(delta) > per_ms * max(ts - lt, 1000):
                            if is_delta or st == NO_TIME:
                                sure = False
                            else:
                                delta = _counter_delta(v, sus_value[m], roll)
                                sure = abs(delta) <= per_ms * max(ts - st, 1000)
                            if not sure:
                                batch_drops[_IMPLAUSIBLE] += 1
                                if not is_delta:
                                    st = ts
                                    sus_value[m] = v
                                continue
                        st = NO_TIME
                        lt = ts
                        lv = v
                        b0 += delta * fk
                        b1 += delta * fe
                        b2 += delta * ft
                        b3 += delta * fd
                        b4 += delta * fi
                        if logging:
                            _log(log_line, log_ts, log_val, log_n, line, ts, delta * fk,
                                 delta * fe, delta * ft, delta * fd, delta * fi)
                    sus_ts[m] = st
                last_ts[m] = lt
                last_value[m] = lv
                p_start[m] = (s + used) & mask
                p_len[m] = pn - used
            for w in range(W):
                # (k - window_ticks[w]) % R, without a division: 0 < window_ticks[w] <= R.
                old_slot = slot - window_ticks[w]
                if old_slot < 0:
                    old_slot += R
                for q in range(Q):
                    old = ring[lu, _U(old_slot), q]
                    x = b0 if q == 0 else (b1 if q == 1 else (b2 if q == 2 else (
                        b3 if q == 3 else b4)))
                    if old == 0.0 and x == 0.0:
                        continue
                    if old != 0.0:
                        w_nonzero[lu, w, q] -= 1
                        _neumaier_add(w_sum[lu], w_comp[lu], w, q, -old)
                    if x != 0.0:
                        w_nonzero[lu, w, q] += 1
                        _neumaier_add(w_sum[lu], w_comp[lu], w, q, x)
                    if w_nonzero[lu, w, q] == 0:
                        w_sum[lu, w, q] = 0.0
                        w_comp[lu, w, q] = 0.0
                        w_peak[lu, w, q] = 0.0
                        continue
                    a = abs(w_sum[lu, w, q])
                    if a > w_peak[lu, w, q]:
                        w_peak[lu, w, q] = a
                    elif a < w_peak[lu, w, q] * RESUM_BELOW:
                        _resum(ring, lu, q, slot, window_ticks[w], x, resummed)
                        w_sum[lu, w, q] = resummed[0]
                        w_comp[lu, w, q] = resummed[1]
                        w_peak[lu, w, q] = abs(resummed[0])
            # The longest window's leaving bucket has been read; now overwrite it.
            ring[lu, _U(slot), 0] = b0
            ring[lu, _U(slot), 1] = b1
            ring[lu, _U(slot), 2] = b2
            ring[lu, _U(slot), 3] = b3
            ring[lu, _U(slot), 4] = b4
            out_line[_U(n_out)] = line
            out_tick[_U(n_out)] = T
            for w in range(W):
                e = w_sum[lu, w, 0] + w_comp[lu, w, 0]
                el = w_sum[lu, w, 1] + w_comp[lu, w, 1]
                p = w_sum[lu, w, 2] + w_comp[lu, w, 2]
                cd = w_sum[lu, w, 3] + w_comp[lu, w, 3]
                ci = w_sum[lu, w, 4] + w_comp[lu, w, 4]
                out_sums[_U(n_out), w, 0] = e
                out_sums[_U(n_out), w, 1] = el
                out_sums[_U(n_out), w, 2] = p
                out_sums[_U(n_out), w, 3] = cd
                out_sums[_U(n_out), w, 4] = ci
                out_kgce_t[_U(n_out), w] = np.nan
                out_kwh_t[_U(n_out), w] = np.nan
                out_co2_t[_U(n_out), w] = np.nan
                producing = p > min_prod if strict_prod else (p >= min_prod and p > 0.0)
                if producing:
                    ke = e / p
                    kw = el / p
                    if abs(ke) <= _MAX_FLOAT and abs(kw) <= _MAX_FLOAT:
                        out_kgce_t[_U(n_out), w] = ke
                        out_kwh_t[_U(n_out), w] = kw
                    kc = (cd + ci) / p
                    if abs(kc) <= _MAX_FLOAT:
                        out_co2_t[_U(n_out), w] = kc
            n_out += 1
        next_tick[lu] = upto + 1
    for d in range(batch_drops.shape[0]):
        drops[d] += batch_drops[d]
    return n, n_out, 0


@nb.njit(cache=True)
def _ticks_bound(r_meter, r_ts, meter_line, newest, capped, next_tick, lateness, emit_every,
                 n_lines, now):
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
        base = max(capped[line], min(hi[line], now))
        last = (base - lateness) // emit_every
        if next_tick[line] != NO_TIME:
            first = next_tick[line]
        else:
            # The first message's newest reading is at least the batch's oldest.
            first = _ceil_div(min(lo[line], min(lo[line], now) - lateness + 1), emit_every)
        if last >= first:
            total += last - first + 1
    return total


def count_ticks_bound(
    state: StreamState, config: KernelConfig, meters: MeterTable, readings: Readings,
    now_ms: int | None = None,
) -> int:
    """At most how many tick rows ``advance(state, config, meters, readings, now_ms=now_ms)``
    emits."""
    return int(
        _ticks_bound(
            readings.meter, readings.ts_ms, meters.line, state.newest_ts, state.capped_ts,
            state.next_tick, config.allowed_lateness_ms, config.emit_every_ms, state.n_lines,
            _now(now_ms),
        )
    )


def _now(now_ms: int | None) -> int:
    return NO_CAP if now_ms is None else int(now_ms)


@nb.njit(cache=True)
def _scan_readings(meter, message, value):
    """One pass over a non-empty batch: (lowest meter, highest meter, whether a
    message holds readings of more than one meter, how many values are not below
    ``VALUE_LIMIT`` in magnitude (or not numbers))."""
    lo = meter[0]
    hi = meter[0]
    mixed = False
    bad = 0
    for r in range(meter.shape[0]):
        mr = meter[r]
        if mr < lo:
            lo = mr
        if mr > hi:
            hi = mr
        if r and message[r] == message[r - 1] and mr != meter[r - 1]:
            mixed = True
        if not abs(value[r]) < VALUE_LIMIT:
            bad += 1
    return lo, hi, mixed, bad


def _check(
    state: StreamState, config: KernelConfig, meters: MeterTable, readings: Readings
) -> int:
    """Check the call's arguments; how many readings have values out of range."""
    if meters.n_meters > state.n_meters or meters.n_lines > state.n_lines:
        raise ValueError(
            f"state holds {state.n_meters} meters and {state.n_lines} lines but the meter "
            f"table has {meters.n_meters} and {meters.n_lines}: grow the state first"
        )
    same_windows = state.window_sum.shape[1] == len(config.windows_ms)
    if not same_windows or state.ring.shape[1] != config.ring_ticks:
        raise ValueError("state was made for other windows; windows cannot change mid-stream")
    if state.ring.shape[2] != N_QUANTITIES or state.window_sum.shape[2] != N_QUANTITIES:
        raise ValueError(f"state must keep {N_QUANTITIES} sums per bucket and window "
                         "(state_from_arrays pads a state saved before the CO2 sums)")
    if len(readings) and not (readings.message.shape == readings.ts_ms.shape
                              == readings.value.shape == readings.meter.shape):
        raise ValueError(
            f"readings columns differ in length: meter {readings.meter.shape[0]}, "
            f"ts {readings.ts_ms.shape[0]}, value {readings.value.shape[0]}, "
            f"message {readings.message.shape[0]}"
        )
    if not len(readings):
        return 0
    lo, hi, mixed, bad = _scan_readings(readings.meter, readings.message, readings.value)
    if lo < 0 or hi >= meters.n_meters:
        raise ValueError(f"reading meters must lie in 0..{meters.n_meters - 1}")
    if mixed:
        raise ValueError(
            "a message must hold the readings of one meter (as an MQTT message does)"
        )
    return int(bad)


def _in_range(readings: Readings) -> Readings:
    """``readings`` without those whose values are out of range (messages keep their
    numbers: a message that loses some readings is still one message)."""
    keep = np.abs(readings.value) < VALUE_LIMIT
    return Readings(readings.meter[keep], readings.ts_ms[keep], readings.value[keep],
                    readings.message[keep])


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
    now_ms: int | None = None,
    logged_lines: np.ndarray | None = None,
) -> Ticks:
    """Take one batch of readings; update ``state`` in place; return the ticks emitted.

    A batch must hold whole messages. Splitting a stream into batches at any
    message boundary gives the same ticks as one batch (with the same ``now_ms``
    for each). A meter's pending buffer (readings newer than the watermark) grows
    as needed up to ``max_pending`` readings; past that, readings are dropped as
    ``pending_overflow``.

    ``now_ms``: the wall clock for this batch, epoch ms. A line's watermark moves
    no further than it (minus the lateness): readings stamped ahead of it are
    accepted and wait, and their ticks come once the wall clock has passed them.
    ``None``: no cap (replays of recorded streams, benchmarks).

    ``logged_lines``: bool per line (``meters.n_lines``), or ``None`` for none. Every
    reading of a logged line finalised in this call (a counter's baseline with zero
    deltas, an implausible one not at all) comes back in ``Ticks.finalised`` with its
    converted deltas, per line tick by tick (within a tick, meter by meter): the batch
    kernel's input.
    """
    out_of_range = _check(state, config, meters, readings)
    if out_of_range:
        # Not a meter reading (the decoder drops these first): dropped before anything
        # else, as if it had never come.
        readings = _in_range(readings)
        state.drops[_IMPLAUSIBLE] += out_of_range
    now = _now(now_ms)
    # A meter without a max_rate has no suspect reading (one left from when it had one is
    # forgotten): cleared here, once per call, rather than per meter and tick in the loop.
    unjudged = meters.plausible_per_ms == 0.0
    state.suspect_ts[:unjudged.shape[0]][unjudged] = NO_TIME
    if max_pending < 1 or max_pending & (max_pending - 1):
        raise ValueError(f"max_pending must be a power of two, got {max_pending}")
    W = len(config.windows_ms)
    # Output rows grow on demand (the kernel stops before a message that might not fit).
    cap = 64 + len(readings) // 64
    out_line = np.empty(cap, dtype=np.int32)
    out_tick = np.empty(cap, dtype=np.int64)
    out_sums = np.empty((cap, W, N_QUANTITIES), dtype=np.float64)
    out_kgce_t = np.empty((cap, W), dtype=np.float64)
    out_kwh_t = np.empty((cap, W), dtype=np.float64)
    out_co2_t = np.empty((cap, W), dtype=np.float64)
    strict = config.min_production_t is None
    min_prod = 0.0 if strict else float(config.min_production_t)  # type: ignore[arg-type]
    log_on, log_cap = _logged(state, meters, readings, logged_lines)
    log_line = np.empty(log_cap, dtype=np.int32)
    log_ts = np.empty(log_cap, dtype=np.int64)
    log_val = np.empty((log_cap, N_QUANTITIES), dtype=np.float64)
    log_n = np.zeros(1, dtype=np.int64)
    done, n = 0, 0
    total_drops = np.zeros(len(DROP_REASONS), dtype=np.int64)
    total_drops[_IMPLAUSIBLE] = out_of_range
    while True:
        batch_drops = np.zeros(len(DROP_REASONS), dtype=np.int64)
        done, n, why = _advance(
            done, n, max_pending, now,
            readings.meter, readings.ts_ms, readings.value, readings.message,
            meters.line, meters.line_meter_start, meters.line_meters,
            meters.kgce_per_unit, meters.kwh_per_unit, meters.t_per_unit,
            meters.co2_direct_per_unit, meters.co2_indirect_per_unit,
            meters.delta_mode, meters.rollover, meters.plausible_per_ms,
            state.last_ts, state.last_value, state.suspect_ts, state.suspect_value,
            state.pending_ts, state.pending_value, state.pending_start, state.pending_len,
            state.newest_ts, state.capped_ts, state.next_tick, state.ring, state.window_sum,
            state.window_comp, state.window_peak, state.window_nonzero, state.drops,
            config.window_ticks, config.emit_every_ms, config.allowed_lateness_ms, min_prod, strict,
            out_line, out_tick, out_sums, out_kgce_t, out_kwh_t, out_co2_t, batch_drops,
            log_on, log_line, log_ts, log_val, log_n,
        )
        total_drops += batch_drops
        if why == 0:
            break
        if why == _NEEDS_OUTPUT:
            bound = count_ticks_bound(state, config, meters, _tail(readings, done), now_ms)
            cap = max(2 * cap, n + bound)
            out_line = _grown(out_line, cap, n)
            out_tick = _grown(out_tick, cap, n)
            out_sums = _grown(out_sums, cap, n)
            out_kgce_t = _grown(out_kgce_t, cap, n)
            out_kwh_t = _grown(out_kwh_t, cap, n)
            out_co2_t = _grown(out_co2_t, cap, n)
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
        co2_direct_t=out_sums[:n, :, 3],
        co2_indirect_t=out_sums[:n, :, 4],
        co2_per_t=out_co2_t[:n],
        finalised=None if logged_lines is None else FinalisedDeltas(
            log_line[:log_n[0]], log_ts[:log_n[0]], log_val[:log_n[0], 0],
            log_val[:log_n[0], 1], log_val[:log_n[0], 2], log_val[:log_n[0], 3],
            log_val[:log_n[0], 4]),
    )


def _logged(state: StreamState, meters: MeterTable, readings: Readings,
            logged_lines: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Per line whether its finalised readings are logged, and a bound on how many: every
    reading that can be finalised in a call is pending already or in its batch."""
    if logged_lines is None:
        return np.zeros(state.n_lines, dtype=np.bool_), 0
    on = np.zeros(state.n_lines, dtype=np.bool_)
    given = np.asarray(logged_lines, dtype=np.bool_)
    if given.shape != (meters.n_lines,):
        raise ValueError(f"logged_lines must have one entry per line ({meters.n_lines})")
    on[: meters.n_lines] = given
    if not on.any():
        return on, 0
    logged_meter = on[meters.line]
    pending = int(state.pending_len[: meters.n_meters][logged_meter].sum())
    arriving = int(np.count_nonzero(logged_meter[readings.meter])) if len(readings) else 0
    return on, pending + arriving
