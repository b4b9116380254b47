"""The compiled payload scanner against ``decode_readings``, the contract's definition.

For every payload the scanner accepts, ``decode_readings`` must give the same
readings (bit for bit, the sign of zero included) and the same drops; every
payload it does not accept it must hand back (``FALLBACK``) rather than guess.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattline.contract.errors import PayloadError
from wattline.ingest.decode.payloads import VALUE_LIMIT, decode_readings
from wattline.ingest.decode.scanner import FALLBACK, SCANNED, PayloadScanner

NOW_MS = 1_732_406_400_000
LIMITS = {"max_future_ms": 300_000, "max_past_ms": 30 * 86_400_000, "max_bytes": 4096}


def scan(payloads: list[bytes], now_ms: int = NOW_MS):  # type: ignore[no-untyped-def]
    now = np.full(len(payloads), now_ms, dtype=np.int64)
    return PayloadScanner().scan(payloads, now, **LIMITS)


def assert_agrees_with_decode(payloads: list[bytes], now_ms: int = NOW_MS) -> int:
    """Check every payload; returns how many the scanner took itself."""
    result = scan(payloads, now_ms)
    row = 0
    for k, payload in enumerate(payloads):
        if result.status[k] == FALLBACK:
            continue
        assert result.status[k] == SCANNED
        kept = int(result.kept[k])
        decoded = decode_readings(payload, now_ms=now_ms, **LIMITS)
        np.testing.assert_array_equal(result.ts_ms[row:row + kept], decoded.ts_ms)
        scanned_v = result.value[row:row + kept]
        assert scanned_v.tobytes() == decoded.value.tobytes(), payload
        counts = {"value_range": int(result.value_range[k]),
                  "ts_out_of_range": int(result.out_of_range[k])}
        assert decoded.dropped == {r: n for r, n in counts.items() if n}, payload
        row += kept
    assert row == result.ts_ms.shape[0]
    return int(np.count_nonzero(result.status == SCANNED))


def test_the_payloads_gateways_send_are_scanned_not_handed_back() -> None:
    payloads = [
        b'{"ts": 1732406400000, "v": 123456.7}',
        b'{"v":5,"ts":1732406401000}',
        b'{"ts": [1732406400000, 1732406401000], "v": [1.5, -2.25e3]}',
        b'[{"ts": 1732406400000, "v": 0.1}, {"ts": 1732406402000, "v": 1e-7}]',
        b' \n{"ts":[],"v":[]}\r\n',
        b"[]",
    ]
    assert assert_agrees_with_decode(payloads) == len(payloads)
    result = scan(payloads)
    assert result.kept.tolist() == [1, 1, 2, 2, 0, 0]
    assert result.value[:3].tolist() == [123456.7, 5.0, 1.5]


@pytest.mark.parametrize("payload", [
    b'{"ts": 1732406400000, "v": 1.0, "q": "good"}',  # quality: decode's to judge
    b'{"ts": "2024-11-24T00:00:00Z", "v": 1.0}',  # a string time
    b'{"ts": 1732406400000.0, "v": 1.0}',  # an integral float time
    b'{"ts": 1732406400000, "v": "NaN"}',
    b'{"ts": 1732406400000, "v": 12345678901234567890}',  # beyond exact conversion
    b'{"ts": 1732406400000, "v": 1e400}',
    b'{"ts": 1732406400000, "v": 1.0, "ts": 1732406401000}',  # a duplicate key
    b'{"t\\u0073": 1732406400000, "v": 1.0}',  # an escaped key
    b'{"ts": [1732406400000], "v": 1.0}',  # one list, one scalar
    b'{"ts": [1732406400000, 1], "v": [1.0]}',  # lengths differ
    b'{"ts": 1732406400000, "v": 01}',  # a leading zero
    b'{"ts": 1732406400000, "v": 1.0} x',  # trailing garbage
    b'{"ts": 1732406400000}',
    b"",
    b"\xef\xbb\xbf{\"ts\": 1732406400000, \"v\": 1}",  # a byte-order mark
    b'{"ts": 1732406400000, "v": 1.0}' + b" " * 5000,  # beyond max_bytes
])
def test_payloads_the_scanner_is_not_sure_of_are_handed_back(payload: bytes) -> None:
    result = scan([b'{"ts": 1732406400000, "v": 2}', payload, b'{"ts": 1732406401000, "v": 3}'])
    assert result.status.tolist() == [SCANNED, FALLBACK, SCANNED]
    assert result.value.tolist() == [2.0, 3.0]  # the neighbours are not disturbed


def test_readings_outside_the_accepted_time_range_are_dropped_and_counted() -> None:
    future = NOW_MS + 400_000
    payloads = [b'{"ts": [%d, %d, %d], "v": [1, 2, 3]}' % (NOW_MS, future, NOW_MS - 1),
                b'{"ts": %d, "v": 1}' % future]
    assert assert_agrees_with_decode(payloads) == 2
    result = scan(payloads)
    assert result.kept.tolist() == [2, 0]
    assert result.out_of_range.tolist() == [1, 1]


def test_readings_exactly_at_the_ends_of_the_accepted_time_range_are_kept() -> None:
    lo, hi = NOW_MS - LIMITS["max_past_ms"], NOW_MS + LIMITS["max_future_ms"]
    payloads = [b'{"ts": [%d, %d, %d, %d], "v": [1, 2, 3, 4]}' % (lo - 1, lo, hi, hi + 1)]
    assert assert_agrees_with_decode(payloads) == 1
    assert scan(payloads).ts_ms.tolist() == [lo, hi]


# -- random payloads ------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
BELOW_LIMIT = float(np.nextafter(VALUE_LIMIT, 0.0))
near_the_bound = st.sampled_from([
    VALUE_LIMIT, -VALUE_LIMIT, BELOW_LIMIT, -BELOW_LIMIT, 10**15, 10**15 - 1, -(10**15),
    999_999_999_999_999.9, 1.0000000000000002e15, 1e16, 9007199254740993, 1e300, 1e308,
    -1.7e308, 1.7976931348623157e308, 4294967295,
])
values = st.one_of(finite, st.integers(-(2**60), 2**60), near_the_bound,
                   st.floats(-2e15, 2e15), st.sampled_from([0.0, -0.0, 0, 1e22, 1e23, 5e-324]))
stamps = st.integers(NOW_MS - 40 * 86_400_000, NOW_MS + 600_000)


@st.composite
def number_text(draw: st.DrawFn, x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    style = draw(st.sampled_from(["repr", "fixed", "exp", "json"]))
    if style == "fixed" and abs(x) < 1e30:
        return f"{x:.{draw(st.integers(0, 20))}f}"
    if style == "exp":
        return f"{x:.{draw(st.integers(0, 20))}{draw(st.sampled_from('eE'))}}"
    return json.dumps(x) if style == "json" else repr(x)


def spaced(draw: st.DrawFn, text: str) -> str:
    return draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n"])) + text


@st.composite
def payload(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 6))
    ts = draw(st.lists(stamps, min_size=n, max_size=n))
    vs = draw(st.lists(values, min_size=n, max_size=n))
    form = draw(st.sampled_from(["single", "columnar", "batch"]))
    swap = draw(st.booleans())

    def obj(t: str, v: str) -> str:
        pairs = [spaced(draw, '"ts"') + spaced(draw, ":") + spaced(draw, t),
                 spaced(draw, '"v"') + spaced(draw, ":") + spaced(draw, v)]
        if swap:
            pairs.reverse()
        return "{" + ",".join(pairs) + spaced(draw, "}")

    if form == "single" and n:
        text = obj(str(ts[0]), draw(number_text(vs[0])))
    elif form == "columnar":
        text = obj("[" + ",".join(spaced(draw, str(t)) for t in ts) + "]",
                   "[" + ",".join(spaced(draw, draw(number_text(v))) for v in vs) + "]")
    else:
        items = [obj(str(t), draw(number_text(v))) for t, v in zip(ts, vs, strict=True)]
        text = "[" + ",".join(items) + "]"
    raw = spaced(draw, text).encode()
    mutation = draw(st.sampled_from(["none", "none", "delete", "insert", "replace"]))
    if mutation != "none" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        byte = bytes([draw(st.sampled_from(b'0123456789-+.eE,:[]{}" tsvq\\x'))])
        raw = {"delete": raw[:at] + raw[at + 1:], "insert": raw[:at] + byte + raw[at:],
               "replace": raw[:at] + byte + raw[at + 1:]}[mutation]
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payload(), min_size=1, max_size=8))
def test_every_scanned_payload_decodes_exactly_as_decode_readings_does(
        payloads: list[bytes]) -> None:
    assert_agrees_with_decode(payloads)


def test_values_at_and_beyond_the_bound_are_dropped_and_counted_as_decode_readings_does(
) -> None:
    payloads = [
        b'{"ts": %d, "v": 1e15}' % NOW_MS,
        b'{"ts": %d, "v": -1000000000000000}' % NOW_MS,
        b'{"ts": %d, "v": 999999999999999}' % NOW_MS,
        b'{"ts": [%d, %d, %d, %d], "v": [1, 1e16, -2e15, 2]}' % (
            NOW_MS, NOW_MS + 1, NOW_MS + 2, NOW_MS + 3),
        b'[{"ts": %d, "v": 5e9}, {"ts": %d, "v": 5e20}]' % (NOW_MS, NOW_MS + 1),
        b'{"ts": %d, "v": 1e16}' % (NOW_MS + 10**9),  # beyond both: the value is judged first
    ]
    assert assert_agrees_with_decode(payloads) == len(payloads)
    result = scan(payloads)
    assert result.kept.tolist() == [0, 0, 1, 2, 1, 0]
    assert result.value_range.tolist() == [1, 1, 0, 2, 1, 1]
    assert result.out_of_range.tolist() == [0] * 6
    assert result.value.tolist() == [999999999999999.0, 1.0, 2.0, 5e9]


@pytest.mark.parametrize("payload", [b'{"ts": 1732406400000, "v": 1e308}',
                                     b'{"ts": 1732406400000, "v": -1.7e308}',
                                     b'{"ts": [1732406400000], "v": [1.7976931348623157e308]}'])
def test_values_beyond_exact_conversion_are_handed_back_and_judged_there(
        payload: bytes) -> None:
    result = scan([payload])
    assert result.status.tolist() == [FALLBACK]
    assert decode_readings(payload, now_ms=NOW_MS, **LIMITS).dropped == {"value_range": 1}


@st.composite
def payload_with_a_repeated_key(draw: st.DrawFn) -> bytes:
    """One of the forms the scanner takes, with one of its objects given a key twice."""
    n = draw(st.integers(1, 4))
    ts = draw(st.lists(stamps, min_size=n, max_size=n))
    # (No value near the largest double: rounded to fewer digits it is not JSON.)
    vs = draw(st.lists(values.filter(lambda x: abs(x) < 1e300), min_size=n, max_size=n))
    form = draw(st.sampled_from(["single", "columnar", "batch"]))
    if form == "columnar":
        objects = [[("ts", "[" + ",".join(map(str, ts)) + "]"),
                    ("v", "[" + ",".join(draw(number_text(v)) for v in vs) + "]")]]
    else:
        objects = [[("ts", str(t)), ("v", draw(number_text(v)))]
                   for t, v in zip(ts[:1] if form == "single" else ts,
                                   vs[:1] if form == "single" else vs, strict=True)]
    victim = objects[draw(st.integers(0, len(objects) - 1))]
    key = draw(st.sampled_from(["ts", "v", "q", "x"]))
    again = dict(victim).get(key, draw(st.sampled_from(['"good"', "1", "null"])))
    if key not in dict(victim):
        victim.insert(draw(st.integers(0, len(victim))), (key, again))
    spelled = draw(st.sampled_from([key, "".join(f"\\u{ord(c):04x}" for c in key)]))
    victim.insert(draw(st.integers(0, len(victim))), (spelled, again))
    texts = ["{" + ",".join(spaced(draw, f'"{k}"') + ":" + spaced(draw, v) for k, v in pairs)
             + "}" for pairs in objects]
    return (texts[0] if form != "batch" else "[" + ",".join(texts) + "]").encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(payload_with_a_repeated_key(), min_size=1, max_size=6))
def test_payloads_with_a_repeated_key_are_handed_back_and_refused_whole(
        payloads: list[bytes]) -> None:
    result = scan(payloads)
    assert result.status.tolist() == [FALLBACK] * len(payloads)
    assert result.ts_ms.shape[0] == 0
    for payload in payloads:
        with pytest.raises(PayloadError) as info:
            decode_readings(payload, now_ms=NOW_MS, **LIMITS)
        assert info.value.reason == "duplicate_key", payload


@st.composite
def plain_number(draw: st.DrawFn) -> str:
    """A JSON number as gateways write them: up to 15 significant digits, small exponent."""
    digits = str(draw(st.integers(0, 10**15 - 1)))
    sign = draw(st.sampled_from(["", "-"]))
    dot = draw(st.integers(0, len(digits)))
    text = digits if dot in (0, len(digits)) else digits[:dot] + "." + digits[dot:]
    if draw(st.booleans()):
        text += draw(st.sampled_from(["e", "E"])) + str(draw(st.integers(-6, 6)))
    return sign + text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(stamps, plain_number()), min_size=1, max_size=20),
       st.sampled_from(["single", "columnar", "batch"]))
def test_plain_readings_are_always_scanned_whatever_their_spacing_or_number_style(
        readings: list[tuple[int, str]], form: str) -> None:
    if form == "single":
        raw = f'{{"ts": {readings[0][0]}, "v": {readings[0][1]}}}'
    elif form == "columnar":
        stamps_text = ", ".join(str(t) for t, _ in readings)
        values_text = ", ".join(v for _, v in readings)
        raw = f'{{"ts": [{stamps_text}], "v": [{values_text}]}}'
    else:
        raw = "[" + ",".join(f'{{"v":{v},"ts":{t}}}' for t, v in readings) + "]"
    assert assert_agrees_with_decode([raw.encode()]) == 1, raw


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=8))
def test_arbitrary_bytes_are_handed_back_or_decoded_as_decode_readings_does(
        payloads: list[bytes]) -> None:
    assert_agrees_with_decode(payloads)


def test_a_payload_cut_short_anywhere_is_handed_back_or_decoded_as_decode_readings_does() -> None:
    """Truncation, the way a scanner reads past its input, at every cut of every form."""
    whole = [b'{"ts": [1732406400000, 1732406401000], "v": [1.5, -2.25e3]}',
             b'[{"ts": 1732406400000, "v": 0.001}, {"v": 7, "ts": 1732406402000}]',
             b'{"ts": 1732406400000, "v": -0.0}']
    cuts = [payload[:n] for payload in whole for n in range(len(payload) + 1)]
    assert assert_agrees_with_decode(cuts) == len(whole)  # only the whole ones scan


def test_payloads_beyond_the_scanners_row_limit_are_handed_back_not_cut() -> None:
    scanner = PayloadScanner(max_rows=5)
    payloads = [b'{"ts": [%d, %d], "v": [1, 2]}' % (NOW_MS + 2 * k, NOW_MS + 2 * k + 1)
                for k in range(3)]
    result = scanner.scan(payloads, np.full(3, NOW_MS, dtype=np.int64), **LIMITS)
    assert result.status.tolist() == [SCANNED, SCANNED, FALLBACK]
    assert result.ts_ms.tolist() == [NOW_MS, NOW_MS + 1, NOW_MS + 2, NOW_MS + 3]
    again = scanner.scan(payloads[2:], np.full(1, NOW_MS, dtype=np.int64), **LIMITS)
    assert again.status.tolist() == [SCANNED]  # the columns are reused, not grown
