"""The scanner's JSON lexing, byte by byte in compiled code: whitespace, digits,
exact numbers and the two keys a reading has (``ts`` and ``v``).

Every function takes the payload buffer and a position and returns where it
stopped; none raises. A number is converted only where the result is certain to be
the correctly rounded double (see ``scan_number``); otherwise the caller falls back
to the plain decoder. The structure of a payload (objects, arrays, which keys go
where) is ``scanner``'s.
"""

from __future__ import annotations

import numba as nb
import numpy as np

MAX_DIGITS = 18  # significant digits that fit an int64 exactly
MAX_EXACT = 1 << 53  # largest significand converted exactly
POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # all exact doubles

QUOTE, COMMA, COLON = 34, 44, 58
LBRACE, RBRACE, LBRACKET, RBRACKET = 123, 125, 91, 93
MINUS, PLUS, DOT, ZERO, NINE = 45, 43, 46, 48, 57
BACKSLASH, E_LOWER, E_UPPER, T, S, V = 92, 101, 69, 116, 115, 118


@nb.njit(cache=True, inline="always")
def skip_ws(buf, p):
    c = buf[p]
    while c == 32 or c == 10 or c == 13 or c == 9:
        p += 1
        c = buf[p]
    return p


@nb.njit(cache=True, inline="always")
def scan_digits(buf, p):
    """The decimal digits at ``p``: (their value, the end). Stops at the payload's NUL.

    Written for speed, as the scanner's inner loop: an unsigned index (no negative-index
    wrap-around) and one unsigned comparison per byte (a two-sided one ran 5x slower).
    """
    value = 0
    d = np.uint64(buf[np.uint64(p)]) - np.uint64(ZERO)
    while d < np.uint64(10):
        value = value * 10 + np.int64(d)
        p += 1
        d = np.uint64(buf[np.uint64(p)]) - np.uint64(ZERO)
    return value, p


@nb.njit(cache=True)
def scan_number(buf, p, want_int, pow10):
    """A JSON number at ``p``: (ok, end, integer value, float value).

    ``want_int``: only an integer (no fraction, no exponent) is accepted. Not ok:
    malformed, or beyond what converts exactly here. Every payload ends in a NUL,
    which no rule here accepts, so no scan runs past it.
    """
    neg = buf[p] == MINUS
    if neg:
        p += 1
    start = p
    mant, p = scan_digits(buf, p)
    n_int = p - start
    if n_int == 0 or (n_int > 1 and buf[start] == ZERO):
        return False, p, 0, 0.0  # no digits, or a leading zero (not JSON)
    n_frac = 0  # digits after the point, significant or not
    is_int = True
    if buf[p] == DOT:
        is_int = False
        frac_start = p + 1
        q = frac_start
        if mant == 0:  # "0.000123": the zeros after the point are not significant
            while buf[q] == ZERO:
                q += 1
            n_int = 0
        frac, p = scan_digits(buf, q)
        if p == frac_start:
            return False, p, 0, 0.0  # "1." is not JSON
        n_significant = p - q
        if n_int + n_significant > MAX_DIGITS:
            return False, p, 0, 0.0
        for _ in range(n_significant):
            mant *= 10
        mant += frac
        n_frac = p - frac_start
    elif n_int > MAX_DIGITS:
        return False, p, 0, 0.0
    exp10 = 0
    c = buf[p]
    if c == E_LOWER or c == E_UPPER:
        is_int = False
        p += 1
        exp_neg = buf[p] == MINUS
        if exp_neg or buf[p] == PLUS:
            p += 1
        start = p
        ex, p = scan_digits(buf, p)
        if p == start or p - start > 4:
            return False, p, 0, 0.0
        exp10 = -ex if exp_neg else ex
    if want_int:
        if not is_int:
            return False, p, 0, 0.0
        return True, p, -mant if neg else mant, 0.0
    if mant > MAX_EXACT:
        return False, p, 0, 0.0
    x = float(mant)
    if not is_int:
        exp10 -= n_frac
        if exp10 > 0:
            if exp10 > 22:
                return False, p, 0, 0.0
            x = x * pow10[exp10]
        elif exp10 < 0:
            if exp10 < -22:
                return False, p, 0, 0.0
            x = x / pow10[-exp10]
    if neg and (mant != 0 or not is_int):  # the integer -0 is 0 (a Python int); -0.0 stays
        x = -x
    return True, p, 0, x


@nb.njit(cache=True)
def scan_key(buf, p):
    """A key at ``p`` (after its opening quote): (1 for "ts", 2 for "v", 0 other, end)."""
    start = p
    c = buf[p]
    while c != QUOTE:
        if c == BACKSLASH or c < 32:  # escapes, control characters, the payload's end
            return 0, p
        p += 1
        c = buf[p]
    n = p - start
    which = 0
    if n == 2 and buf[start] == T and buf[start + 1] == S:
        which = 1
    elif n == 1 and buf[start] == V:
        which = 2
    return which, p + 1
