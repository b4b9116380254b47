"""Reading payloads of a whole batch of messages decoded at once, in compiled code.

``decode_readings`` (``payloads.py``) is the definition of the payload rules
(docs/formats.md, payloads): it parses one payload with orjson and checks every
reading in Python. That costs microseconds per message and holds the interpreter
lock while paho's network thread waits for it. This module is its accelerator for
the payloads gateways actually send:

    {"ts": 1732406400000, "v": 123456.7}              one reading
    {"ts": [t0, t1, ...], "v": [v0, v1, ...]}         a columnar batch
    [{"ts": t0, "v": v0}, {"ts": t1, "v": v1}, ...]   a batch

with integer ``ts``, plain JSON numbers for ``v`` and no other keys. One Numba
function (compiled with ``nogil``, so the network thread keeps reading meanwhile)
scans the concatenated payloads byte by byte into the ``ts``/``v`` columns.

The scanner only takes what it is certain of. A payload it is not sure about --
a ``q`` key, a string timestamp, an escaped key, a repeated key (``_object`` takes
``ts`` and ``v`` once each and no other key; the reference decoder refuses a repeat
as ``duplicate_key``), a number with more than 18 significant digits or an exponent
past the exact range, anything malformed -- is marked ``FALLBACK`` and the caller
hands it to ``decode_readings``, which gives the contract's answer (or its error).
So there is one definition of the format, and this is a faster route to the same
result for the payloads it accepts; ``tests/property/test_payload_scan.py`` checks
that on random payloads. Values of magnitude ``VALUE_LIMIT`` or more are dropped and
counted (``value_range``) here as there.

Numbers are converted exactly: a decimal with at most 18 significant digits,
whose significand is at most 2**53 and whose power of ten is within 10**22 of
one, is one correctly rounded multiplication or division of two exactly
representable doubles (Clinger's fast path), so the result is the correctly
rounded value orjson gives. Anything outside that range falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np

from wattline.ingest.decode.lexer import (
    COLON,
    COMMA,
    DOT,
    E_LOWER,
    E_UPPER,
    LBRACE,
    LBRACKET,
    MAX_DIGITS,
    MAX_EXACT,
    MINUS,
    POW10,
    QUOTE,
    RBRACE,
    RBRACKET,
    ZERO,
    scan_key,
    scan_number,
    skip_ws,
)
from wattline.ingest.decode.payloads import VALUE_LIMIT

__all__ = ["FALLBACK", "SCANNED", "PayloadScanner", "ScannedPayloads"]

SCANNED = 0
"""The payload was decoded here; its readings are in the columns."""
FALLBACK = 1
"""The payload needs ``decode_readings`` (unusual, or not valid at all)."""

@nb.njit(cache=True)
def _array(buf, p, want_int, out_ts, out_v, at, pow10):
    """A JSON array of numbers at ``p`` (after ``[``) into ``out_ts`` (ints) or ``out_v``
    from index ``at``: (ok, end, how many).

    The scanner's hot loop. It repeats ``scan_number``'s rules by hand rather than call
    it: with the helpers inlined, Numba counted references to ``buf`` on every number
    (atomic operations that made a number cost 20-40 ns, against 6 ns here).
    """
    cap = out_ts.shape[0]
    n = 0
    ten = np.uint64(10)
    zero = np.uint64(ZERO)
    p = skip_ws(buf, p)
    if buf[p] == RBRACKET:
        return True, p + 1, 0
    while True:
        if at + n >= cap:
            return False, p, 0
        # One number: sign, integer digits, fraction, exponent (JSON's grammar).
        neg = buf[p] == MINUS
        if neg:
            p += 1
        start = p
        mant = 0
        d = np.uint64(buf[np.uint64(p)]) - zero
        while d < ten:
            mant = mant * 10 + np.int64(d)
            p += 1
            d = np.uint64(buf[np.uint64(p)]) - zero
        n_int = p - start
        if n_int == 0 or (n_int > 1 and buf[start] == ZERO):
            return False, p, 0
        c = buf[p]
        general = c == E_LOWER or c == E_UPPER or (c == DOT and want_int)
        if c == DOT and not want_int:
            frac_start = p + 1
            q = frac_start
            significant = n_int
            if mant == 0:  # "0.000123": the zeros after the point are not significant
                while buf[q] == ZERO:
                    q += 1
                significant = 0
            p = q
            d = np.uint64(buf[np.uint64(p)]) - zero
            while d < ten:
                mant = mant * 10 + np.int64(d)
                p += 1
                d = np.uint64(buf[np.uint64(p)]) - zero
            n_frac = p - frac_start
            if n_frac == 0 or significant + (p - q) > MAX_DIGITS:
                return False, p, 0
            c = buf[p]
            if c == E_LOWER or c == E_UPPER:
                general = True
            else:
                if mant > MAX_EXACT or n_frac > 22:
                    return False, p, 0
                x = float(mant) / pow10[n_frac]
                out_v[at + n] = -x if neg else x
        elif want_int and not general:
            if n_int > MAX_DIGITS:
                return False, p, 0
            out_ts[at + n] = -mant if neg else mant
        elif not general:
            if n_int > MAX_DIGITS or mant > MAX_EXACT:
                return False, p, 0
            x = float(mant)
            out_v[at + n] = -x if neg and mant != 0 else x
        if general:
            # An exponent (or a fraction where an integer was wanted): rare enough for
            # the general rules, from the number's start.
            if want_int:
                return False, p, 0
            # want_int is False here: passed as the variable, not a literal False (one
            # specialisation of scan_number).
            ok, p, _, x = scan_number(buf, start - 1 if neg else start, want_int, pow10)
            if not ok:
                return False, p, 0
            out_v[at + n] = x
        n += 1
        c = buf[p]
        if c != COMMA and c != RBRACKET:
            p = skip_ws(buf, p)
            c = buf[p]
        if c == RBRACKET:
            return True, p + 1, n
        if c != COMMA:
            return False, p, 0
        p = skip_ws(buf, p + 1)


@nb.njit(cache=True)
def _object(buf, p, out_ts, out_v, at, scalars_only, pow10):
    """An object at ``p`` (after ``{``) with exactly the keys ``ts`` and ``v``.

    Both scalar: one reading at ``at``. Both arrays (unless ``scalars_only``) of
    equal length: that many readings from ``at``. Returns (ok, end, readings).
    """
    seen_ts = False
    seen_v = False
    arrays = 0
    n_ts = 0
    n_v = 0
    cap = out_ts.shape[0]
    p = skip_ws(buf, p)
    while True:
        if buf[p] != QUOTE:
            return False, p, 0
        which, p = scan_key(buf, p + 1)
        # Another key, or one seen already (duplicate_key, for decode_readings to give).
        if which == 0 or (which == 1 and seen_ts) or (which == 2 and seen_v):
            return False, p, 0
        p = skip_ws(buf, p)
        if buf[p] != COLON:
            return False, p, 0
        p = skip_ws(buf, p + 1)
        want_int = which == 1
        if buf[p] == LBRACKET:
            if scalars_only:
                return False, p, 0
            arrays += 1
            ok, p, n = _array(buf, p + 1, want_int, out_ts, out_v, at, pow10)
            if not ok:
                return False, p, 0
        else:
            if at >= cap:
                return False, p, 0
            ok, p, iv, fv = scan_number(buf, p, want_int, pow10)
            if not ok:
                return False, p, 0
            if want_int:
                out_ts[at] = iv
            else:
                out_v[at] = fv
            n = 1
        if want_int:
            seen_ts = True
            n_ts = n
        else:
            seen_v = True
            n_v = n
        p = skip_ws(buf, p)
        if buf[p] == RBRACE:
            p += 1
            break
        if buf[p] != COMMA:
            return False, p, 0
        p = skip_ws(buf, p + 1)
    # Both keys; both scalars or both lists (one of each is the payload_shape error),
    # lists of one length (else length_mismatch): the errors are decode_readings' to give.
    if not (seen_ts and seen_v) or arrays == 1 or n_ts != n_v:
        return False, p, 0
    return True, p, n_ts


@nb.njit(cache=True)
def _payload(buf, p, e, out_ts, out_v, at, pow10):
    """One payload ``buf[p:e]`` (``buf[e]`` is its NUL): (ok, readings written from ``at``)."""
    p = skip_ws(buf, p)
    n = 0
    # Flags as run-time values, not literals: each literal would compile another
    # specialisation of _object (and of what it calls), seconds apiece on a cold start.
    in_list = buf[p] == LBRACKET
    if buf[p] == LBRACE:
        ok, p, n = _object(buf, p + 1, out_ts, out_v, at, in_list, pow10)
        if not ok:
            return False, 0
    elif buf[p] == LBRACKET:
        p = skip_ws(buf, p + 1)
        if buf[p] == RBRACKET:
            p += 1
        else:
            while True:
                if buf[p] != LBRACE:
                    return False, 0
                ok, p, one = _object(buf, p + 1, out_ts, out_v, at + n, in_list, pow10)
                if not ok:
                    return False, 0
                n += one
                p = skip_ws(buf, p)
                if buf[p] == RBRACKET:
                    p += 1
                    break
                if buf[p] != COMMA:
                    return False, 0
                p = skip_ws(buf, p + 1)
    else:
        return False, 0
    if skip_ws(buf, p) != e:
        return False, 0  # something after the value, or a NUL inside the payload
    return True, n


@nb.njit(cache=True, nogil=True)
def _scan(buf, starts, lo, hi, max_bytes, value_limit, out_ts, out_v, status, kept,
          out_of_range, value_range, pow10):
    """Every payload into ``out_ts``/``out_v``, in order.

    Payload k is ``buf[starts[k]:starts[k + 1] - 1]``, followed by a NUL. Its
    readings whose value is not below ``value_limit`` in magnitude are left out and
    counted, then those outside ``lo[k] .. hi[k]`` (the reference decoder's order).
    Returns how many readings were written.
    """
    at = np.int64(0)  # not a literal 0: one specialisation of _payload
    for k in range(starts.shape[0] - 1):
        start = starts[k]
        end = starts[k + 1] - 1
        kept[k] = 0
        out_of_range[k] = 0
        value_range[k] = 0
        status[k] = FALLBACK
        size = end - start
        if 0 < size <= max_bytes:
            ok, n = _payload(buf, start, end, out_ts, out_v, at, pow10)
            if ok:
                status[k] = SCANNED
                lo_k = lo[k]
                hi_k = hi[k]
                w = at
                too_big = 0
                for r in range(at, at + n):
                    t = out_ts[r]
                    v = out_v[r]
                    if not abs(v) < value_limit:
                        too_big += 1
                    elif lo_k <= t <= hi_k:
                        out_ts[w] = t
                        out_v[w] = v
                        w += 1
                kept[k] = w - at
                value_range[k] = too_big
                out_of_range[k] = n - too_big - (w - at)
                at = w
    return at


@dataclass(frozen=True, slots=True)
class ScannedPayloads:
    """The readings of a batch of payloads, in payload order, and per payload how it went.

    ``status[k]`` is ``SCANNED`` or ``FALLBACK``; a scanned payload's readings are
    ``kept[k]`` consecutive rows of ``ts_ms``/``value``, after the readings of the
    payloads before it; ``value_range[k]`` more were dropped as ``value_range`` and
    ``out_of_range[k]`` as ``ts_out_of_range``. A fallback payload has no rows here.
    """

    ts_ms: np.ndarray  # int64
    value: np.ndarray  # float64
    status: np.ndarray  # int8
    kept: np.ndarray  # int64
    out_of_range: np.ndarray  # int64
    value_range: np.ndarray  # int64


class PayloadScanner:
    """Scans batches of payloads into columns it keeps and reuses (``scan``).

    The columns of one batch run to hundreds of thousands of readings; allocating
    them afresh for every batch cost about as much as scanning (fresh pages are
    faulted in on first write), so they are kept between batches and grown when a
    batch needs more, up to ``max_rows`` readings (16 bytes each). Payloads that do
    not fit in that are handed back like any other the scanner is not sure of, so a
    batch of huge payloads costs memory in proportion to its readings, not more.
    """

    def __init__(self, max_rows: int = 1 << 20) -> None:
        self.max_rows = max_rows
        self._ts = np.empty(0, dtype=np.int64)
        self._v = np.empty(0, dtype=np.float64)

    def scan(
        self,
        payloads: Sequence[bytes],
        now_ms: np.ndarray,
        *,
        max_future_ms: int,
        max_past_ms: int,
        max_bytes: int,
    ) -> ScannedPayloads:
        """Decode ``payloads`` (each judged against its own receipt time ``now_ms[k]``).

        The returned ``ts_ms`` and ``value`` are views of this scanner's columns:
        valid until its next ``scan``.
        """
        count = len(payloads)
        # Each payload is followed by a NUL, which ends every scan inside it (joining
        # with one more, empty, payload puts the last NUL in the same copy).
        buf = np.frombuffer(b"\0".join([*payloads, b""]), dtype=np.uint8)
        starts = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, payloads), dtype=np.int64, count=count) + 1,
                  out=starts[1:])
        # A reading takes at least 4 bytes of a columnar payload ("0," in each list) and
        # more in the other forms, so this bounds the rows.
        rows = min(buf.shape[0] // 4 + count + 1, self.max_rows)
        if self._ts.shape[0] < rows:
            size = min(max(rows, 2 * self._ts.shape[0]), self.max_rows)
            self._ts = np.empty(size, dtype=np.int64)
            self._v = np.empty(size, dtype=np.float64)
        status = np.empty(count, dtype=np.int8)
        kept = np.empty(count, dtype=np.int64)
        out_of_range = np.empty(count, dtype=np.int64)
        value_range = np.empty(count, dtype=np.int64)
        now = np.asarray(now_ms, dtype=np.int64)
        n = _scan(buf, starts, now - max_past_ms, now + max_future_ms, max_bytes, VALUE_LIMIT,
                  self._ts, self._v, status, kept, out_of_range, value_range, POW10)
        return ScannedPayloads(self._ts[:n], self._v[:n], status, kept, out_of_range,
                               value_range)

