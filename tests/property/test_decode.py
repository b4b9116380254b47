"""Payload decoding: three reading forms, per-reading drops, whole-payload errors, meta."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.contract.errors import PAYLOAD_ERROR_REASONS, PayloadError
from wattline.ingest.decode.payloads import (
    READING_DROP_REASONS,
    VALUE_LIMIT,
    DecodedReadings,
    MeterMeta,
    decode_meta,
    decode_readings,
)

NOW = 1_732_406_400_000  # 2024-11-24T00:00:00Z
DAY = 86_400_000


def decode(doc: Any, **kwargs: int) -> DecodedReadings:
    return decode_readings(orjson.dumps(doc), now_ms=NOW, **kwargs)


def payload_error(payload: bytes, **kwargs: int) -> str:
    with pytest.raises(PayloadError) as info:
        decode_readings(payload, now_ms=NOW, **kwargs)
    assert info.value.reason in PAYLOAD_ERROR_REASONS
    return info.value.reason


def kept(decoded: DecodedReadings) -> list[tuple[int, float]]:
    return list(zip(decoded.ts_ms.tolist(), decoded.value.tolist(), strict=True))


def dropped_reason(reading: dict[str, Any]) -> str:
    """The reason a lone reading is dropped, checked in the list form too."""
    single = decode(reading)
    assert len(single) == 0
    assert sum(single.dropped.values()) == 1
    assert decode([reading]).dropped == single.dropped
    return next(iter(single.dropped))


# -- the three forms ------------------------------------------------------------------------


def test_single_reading_gives_int64_and_float64_columns() -> None:
    decoded = decode({"ts": NOW, "v": 123456.7})
    assert decoded.ts_ms.dtype == np.int64 and decoded.value.dtype == np.float64
    assert kept(decoded) == [(NOW, 123456.7)]
    assert decoded.dropped == {}


def test_integer_value_is_read_as_float() -> None:
    assert kept(decode({"ts": NOW, "v": 42})) == [(NOW, 42.0)]


def test_batch_keeps_readings_in_message_order() -> None:
    batch = [{"ts": NOW, "v": 2.0}, {"ts": NOW - 1000, "v": 1.0}, {"ts": NOW + 1000, "v": 3}]
    assert kept(decode(batch)) == [(NOW, 2.0), (NOW - 1000, 1.0), (NOW + 1000, 3.0)]


def test_columnar_batch_gives_the_columns() -> None:
    decoded = decode({"ts": [NOW - 2000, NOW - 1000, NOW], "v": [1, 2.5, 4]})
    assert kept(decoded) == [(NOW - 2000, 1.0), (NOW - 1000, 2.5), (NOW, 4.0)]
    assert decoded.ts_ms.dtype == np.int64 and decoded.value.dtype == np.float64


def test_columnar_quality_list_drops_bad_ones() -> None:
    decoded = decode({"ts": [NOW, NOW + 1, NOW + 2], "v": [1, 2, 3], "q": ["good", "bad", 0]})
    assert kept(decoded) == [(NOW, 1.0), (NOW + 2, 3.0)]
    assert decoded.dropped == {"quality": 1}


def test_extra_keys_in_a_reading_are_ignored() -> None:
    assert kept(decode({"ts": NOW, "v": 1.0, "unit": "kWh"})) == [(NOW, 1.0)]


def test_a_batch_value_is_kept_as_the_readings_batch_id() -> None:
    assert decode({"ts": NOW, "v": 80.0, "batch": "H2291"}).labels == ((NOW, "H2291"),)
    listed = decode([{"ts": NOW, "v": 1.0}, {"ts": NOW + 1, "v": 2.0, "batch": 2291},
                     {"ts": NOW + 2, "v": 3.0, "batch": "Öfen-3 H7"}])
    assert listed.labels == ((NOW + 1, "2291"), (NOW + 2, "Öfen-3 H7"))
    assert kept(listed) == [(NOW, 1.0), (NOW + 1, 2.0), (NOW + 2, 3.0)]


@pytest.mark.parametrize("bad", [True, None, 1.5, "", " H1", "H1\t", "x" * 65, ["H1"], {}])
def test_a_batch_value_that_is_no_id_keeps_the_reading_without_one(bad: Any) -> None:
    decoded = decode({"ts": NOW, "v": 80.0, "batch": bad})
    assert kept(decoded) == [(NOW, 80.0)]
    assert decoded.labels == () and decoded.bad_labels == 1 and decoded.dropped == {}


def test_a_dropped_reading_leaves_no_batch_id() -> None:
    decoded = decode([{"ts": NOW, "v": "x", "batch": "H1"}, {"ts": NOW, "v": 1, "batch": "H2"}])
    assert decoded.labels == ((NOW, "H2"),) and decoded.dropped == {"value_type": 1}


@pytest.mark.parametrize("doc", [[], {"ts": [], "v": []}, {"ts": [], "v": [], "q": []}])
def test_an_empty_batch_is_valid_and_has_no_readings(doc: Any) -> None:
    decoded = decode(doc)
    assert len(decoded) == 0 and decoded.dropped == {}
    assert decoded.ts_ms.dtype == np.int64 and decoded.value.dtype == np.float64


# -- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-24T00:00:00Z", NOW),
        ("2024-11-24T00:00:00z", NOW),
        ("2024-11-24t00:00:00Z", NOW),
        ("2024-11-24 00:00:00Z", NOW),
        ("2024-11-24T00:00:00+00:00", NOW),
        ("2024-11-24T00:00:00-00:00", NOW),
        ("2024-11-24T08:00:00+08:00", NOW),
        ("2024-11-23T19:30:00-04:30", NOW),
        ("2024-11-24T00:00:00.250Z", NOW + 250),
        ("2024-11-24T00:00:00.5+00:00", NOW + 500),
        ("2024-11-24T00:00:00.123456789Z", NOW + 123),  # sub-millisecond digits truncated
        ("2024-11-23T23:59:59.9999Z", NOW - 1),
    ],
)
def test_rfc3339_timestamps_with_offset_are_read_to_the_millisecond(
    text: str, expected: int
) -> None:
    assert kept(decode({"ts": text, "v": 1.0})) == [(expected, 1.0)]


@pytest.mark.parametrize(
    "ts",
    [
        "2024-11-24T00:00:00",        # no offset: local time of an unknown zone
        "2024-11-24T00:00:00.5",
        "2024-11-24",
        "20241124T000000Z",           # ISO 8601 basic format, not RFC 3339
        "2024-11-24T00:00Z",          # no seconds
        "2024-13-24T00:00:00Z",
        "2024-11-24T23:59:60Z",       # leap second
        "2024-11-24T00:00:00+24:00",
        "2024-11-24T00:00:00+0800",
        "\uff12\uff10\uff12\uff14-11-24T00:00:00Z",  # full-width digits
        "1732406400000",              # epoch ms as a string
        "",
        1.5e12 + 0.5,                 # fractional milliseconds
        True,
        None,
        {"ms": NOW},
    ],
)
def test_unreadable_timestamp_is_ts_invalid(ts: Any) -> None:
    assert dropped_reason({"ts": ts, "v": 1.0}) == "ts_invalid"


def test_integral_float_timestamp_is_taken_as_milliseconds() -> None:
    assert kept(decode({"ts": float(NOW), "v": 1.0})) == [(NOW, 1.0)]


def test_missing_timestamp_in_a_batch_is_ts_invalid() -> None:
    decoded = decode([{"v": 1.0}, {"ts": NOW, "v": 2.0}])
    assert kept(decoded) == [(NOW, 2.0)]
    assert decoded.dropped == {"ts_invalid": 1}


@pytest.mark.parametrize(
    "ts", [NOW + 300_001, NOW - 30 * DAY - 1, 0, -1, 2**63, 2**64 - 1, "2124-11-24T00:00:00Z"]
)
def test_timestamp_beyond_the_allowed_span_is_ts_out_of_range(ts: Any) -> None:
    assert dropped_reason({"ts": ts, "v": 1.0}) == "ts_out_of_range"


@pytest.mark.parametrize("ts", [NOW + 300_000, NOW - 30 * DAY])
def test_span_limits_are_inclusive(ts: int) -> None:
    assert len(decode({"ts": ts, "v": 1.0})) == 1


def test_span_follows_the_arguments() -> None:
    assert len(decode({"ts": NOW + 10, "v": 1.0}, max_future_ms=5)) == 0
    assert len(decode({"ts": NOW - 2 * DAY, "v": 1.0}, max_past_ms=3 * DAY)) == 1


def test_columnar_timestamps_beyond_int64_are_out_of_range_not_an_error() -> None:
    decoded = decode({"ts": [NOW, 2**64 - 1], "v": [1.0, 2.0]})
    assert kept(decoded) == [(NOW, 1.0)]
    assert decoded.dropped == {"ts_out_of_range": 1}


# -- values and quality ---------------------------------------------------------------------


@pytest.mark.parametrize("v", ["12.5", "", "abc", True, False, None, {"x": 1}])
def test_value_that_is_not_a_number_is_value_type(v: Any) -> None:
    assert dropped_reason({"ts": NOW, "v": v}) == "value_type"


def test_missing_value_in_a_batch_is_value_type() -> None:
    assert decode([{"ts": NOW}]).dropped == {"value_type": 1}


def test_list_inside_a_batch_reading_drops_only_that_reading() -> None:
    decoded = decode([{"ts": NOW, "v": [1.0]}, {"ts": [NOW], "v": 1.0}, {"ts": NOW, "v": 2.0}])
    assert kept(decoded) == [(NOW, 2.0)]
    assert decoded.dropped == {"value_type": 1, "ts_invalid": 1}


@pytest.mark.parametrize("v", ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "1e999"])
def test_value_string_naming_a_non_finite_float_is_value_not_finite(v: str) -> None:
    assert dropped_reason({"ts": NOW, "v": v}) == "value_not_finite"


@pytest.mark.parametrize("q", ["good", 0])
def test_good_quality_is_kept(q: Any) -> None:
    assert kept(decode({"ts": NOW, "v": 1.0, "q": q})) == [(NOW, 1.0)]


@pytest.mark.parametrize("q", ["bad", "uncertain", "GOOD", 1, 192, 0.0, False, None, [], {}])
def test_any_other_quality_is_dropped_as_quality(q: Any) -> None:
    assert dropped_reason({"ts": NOW, "v": 1.0, "q": q}) == "quality"


def test_quality_is_judged_before_value_and_timestamp() -> None:
    assert dropped_reason({"ts": "junk", "v": "NaN", "q": "bad"}) == "quality"
    assert dropped_reason({"ts": "junk", "v": "NaN"}) == "value_not_finite"


def test_bad_readings_never_cost_the_good_ones_of_the_same_batch() -> None:
    batch = [
        {"ts": NOW - 3000, "v": 1.0},
        {"ts": NOW - 2000, "v": "NaN"},
        {"ts": "2024-11-24T00:00:00", "v": 2.0},
        {"ts": NOW - 1000, "v": 3.0, "q": "bad"},
        {"ts": NOW - 500, "v": True},
        {"ts": NOW + DAY, "v": 4.0},
        {"ts": "2024-11-23T23:59:59Z", "v": 5.0, "q": "good"},
    ]
    decoded = decode(batch)
    assert kept(decoded) == [(NOW - 3000, 1.0), (NOW - 1000, 5.0)]
    assert decoded.dropped == {
        "value_not_finite": 1, "ts_invalid": 1, "quality": 1, "value_type": 1,
        "ts_out_of_range": 1,
    }
    columnar = {k: [r.get(k, "good") for r in batch] for k in ("ts", "v", "q")}
    assert kept(decode(columnar)) == kept(decoded)
    assert decode(columnar).dropped == decoded.dropped


# -- value bounds ---------------------------------------------------------------------------

BELOW_LIMIT = float(np.nextafter(VALUE_LIMIT, 0.0))


@pytest.mark.parametrize("v", [VALUE_LIMIT, -VALUE_LIMIT, 10**15, -(10**15), 2**60, 1e16,
                               1e300, 1e308, -1.7e308, 1.7976931348623157e308, 5e9 * 1e6])
def test_value_at_or_beyond_the_bound_is_value_range(v: float) -> None:
    assert dropped_reason({"ts": NOW, "v": v}) == "value_range"
    columnar = decode({"ts": [NOW, NOW + 1], "v": [1.0, v]})
    assert kept(columnar) == [(NOW, 1.0)] and columnar.dropped == {"value_range": 1}


@pytest.mark.parametrize("v", [BELOW_LIMIT, -BELOW_LIMIT, 10**15 - 1, -(10**15 - 1),
                               999_999_999_999_999.9, 4294967295, 0.0, -0.0, 5e-324])
def test_value_just_inside_the_bound_is_kept_exactly(v: float) -> None:
    for doc in ({"ts": NOW, "v": v}, [{"ts": NOW, "v": v}], {"ts": [NOW], "v": [v]}):
        decoded = decode(doc)
        assert decoded.dropped == {}
        assert decoded.value.tobytes() == np.array([v], dtype=np.float64).tobytes()


@pytest.mark.parametrize("text", [b"1e400", b"-1e400", b"1e309", b"-1.8e308", b"NaN",
                                  b"-NaN", b"nan", b"Infinity", b"-Infinity", b"inf", b"-inf"])
def test_non_finite_number_spellings_are_not_json(text: bytes) -> None:
    assert payload_error(b'{"ts": %d, "v": %s}' % (NOW, text)) == "invalid_json"
    assert payload_error(b'{"ts": [%d], "v": [%s]}' % (NOW, text)) == "invalid_json"


@pytest.mark.parametrize("v", ["inf", "-inf", "Infinity", "-Infinity", "NaN", "nan", "1e400",
                               "-1e309"])
def test_non_finite_value_strings_stay_value_not_finite(v: str) -> None:
    assert dropped_reason({"ts": NOW, "v": v}) == "value_not_finite"


def test_value_range_is_judged_after_quality_and_before_the_timestamp() -> None:
    assert dropped_reason({"ts": NOW, "v": 1e300, "q": "bad"}) == "quality"
    assert dropped_reason({"ts": "junk", "v": 1e300}) == "value_range"
    assert dropped_reason({"ts": NOW + DAY, "v": -1e20}) == "value_range"


def test_huge_values_never_cost_their_neighbours() -> None:
    batch = [{"ts": NOW - 3, "v": 1.0}, {"ts": NOW - 2, "v": 1e308}, {"ts": NOW - 1, "v": 2.0},
             {"ts": NOW, "v": -1.7e308}]
    for doc in (batch, {"ts": [r["ts"] for r in batch], "v": [r["v"] for r in batch]}):
        decoded = decode(doc)
        assert kept(decoded) == [(NOW - 3, 1.0), (NOW - 1, 2.0)]
        assert decoded.dropped == {"value_range": 2}


# -- repeated keys --------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b'{"ts": %d, "v": 1000, "v": 5e9}' % NOW,
    b'{"ts": %d, "ts": %d, "v": 1}' % (NOW, NOW + 1),
    b'{"ts": %d, "v": 1, "q": "good", "q": "bad"}' % NOW,
    b'{"ts": %d, "v": 1, "x": 1, "x": 1}' % NOW,  # even an ignored key, even the same value
    b'{"ts": %d, "t\\u0073": %d, "v": 1}' % (NOW, NOW),  # the same key once decoded
    b'[{"ts": %d, "v": 1}, {"ts": %d, "v": 2, "v": 3}]' % (NOW, NOW + 1),
    b'{"ts": [%d], "v": [1], "v": [2]}' % NOW,
    b'{"ts": [%d], "v": [1], "ts": [%d]}' % (NOW, NOW),
    b'{"ts": %d, "v": 1, "extra": {"a": 1, "b": {"c": 1, "c": 2}}}' % NOW,  # anywhere
    b'[{"ts": %d, "v": 1}, [{"a": 1, "a": 1}]]' % NOW,  # before the shape is judged
    b'{"ts": %d,"v":1,' % NOW + b'"d":' + b"[" * 1000 + b'{"k":1,"k":2}' + b"]" * 1000 + b"}",
])
def test_an_object_with_a_repeated_key_is_refused_whole(payload: bytes) -> None:
    assert payload_error(payload) == "duplicate_key"


@pytest.mark.parametrize("payload", [
    b'[{"ts": %d, "v": 1}, {"ts": %d, "v": 2}]' % (NOW, NOW + 1),  # one key per object
    b'{"ts": %d, "v": 1, "V": 2, "Ts": 3}' % NOW,  # keys differ in case
    b'{"ts": %d, "v": 1, "x": {"ts": 1, "v": 2}}' % NOW,  # the same keys in another object
    b'{"ts": %d, "v": 1, "x": "\\"v\\": 2, \\"v\\": 3"}' % NOW,  # inside a string
    b'{"ts": %d,"v":1,' % NOW + b'"d":' + b"[" * 1000 + b'{"k":1,"l":2}' + b"]" * 1000 + b"}",
])
def test_keys_repeated_only_across_objects_or_inside_strings_are_not_repeats(
        payload: bytes) -> None:
    assert kept(decode_readings(payload, now_ms=NOW))[0] == (NOW, 1.0)


def test_a_repeated_key_names_itself() -> None:
    with pytest.raises(PayloadError) as info:
        decode_readings(b'{"ts": %d, "v": 1000, "v": 5e9}' % NOW, now_ms=NOW)
    assert "'v'" in info.value.detail and "once" in str(info.value)


json_keys = st.sampled_from(["ts", "v", "q", "x"]) | st.text(max_size=4)


@st.composite
def object_with_a_repeat(draw: st.DrawFn) -> bytes:
    """A JSON text (a reading, a batch, a columnar batch or any value) in which one
    object, somewhere, has a key twice."""
    pairs = draw(st.lists(st.tuples(json_keys, json_values), min_size=1, max_size=5))
    at = draw(st.integers(0, len(pairs)))
    key = draw(st.sampled_from([k for k, _ in pairs]))
    pairs.insert(at, (key, draw(json_values)))
    inner = "{" + ",".join(f"{orjson.dumps(k).decode()}:{orjson.dumps(v).decode()}"
                           for k, v in pairs) + "}"
    wrap = draw(st.sampled_from(["{}", "[{}]", '[{"ts": 1, "v": 2}, {}]',
                                 '{"ts": 1, "v": 2, "x": {}}', '{"ts": [{}], "v": [1]}']))
    return wrap.replace("{}", inner, 1).encode()


@settings(max_examples=300)
@given(object_with_a_repeat())
def test_any_object_with_a_repeated_key_anywhere_is_duplicate_key(payload: bytes) -> None:
    assert payload_error(payload) == "duplicate_key"


# -- whole-payload errors -------------------------------------------------------------------


def test_payload_over_the_limit_is_too_large_before_parsing() -> None:
    limit = 1_048_576
    reading = b'{"ts": %d, "v": 1.0}' % NOW
    assert len(decode_readings(reading.ljust(limit), now_ms=NOW)) == 1
    assert payload_error(reading.ljust(limit + 1)) == "too_large"
    assert payload_error(b"\xff" * (limit + 1)) == "too_large"  # not even looked at


def test_zero_length_payload_is_empty() -> None:
    assert payload_error(b"") == "empty"


@pytest.mark.parametrize(
    "payload",
    [b"{", b"not json", b'{"ts": 1, "v": NaN}', b'{"ts": 1, "v": Infinity}', b"[1,]",
     b'{"v": "\xff\xfe"}', b"\xef\xbb\xbf{}", b" ", b'{"ts": 1, "v": 1e400}'],
)
def test_unparseable_payload_is_invalid_json(payload: bytes) -> None:
    assert payload_error(payload) == "invalid_json"


@pytest.mark.parametrize(
    "doc",
    [
        1.5, "reading", None, True,
        {}, {"v": 1.0}, {"ts": NOW}, {"value": 1.0, "time": NOW},
        {"ts": [NOW], "v": 1.0}, {"ts": NOW, "v": [1.0]},
        [{"ts": NOW, "v": 1.0}, 2.0], [[NOW, 1.0]], [None],
        {"ts": [NOW], "v": [1.0], "q": "good"},
    ],
)
def test_payload_in_none_of_the_forms_is_payload_shape(doc: Any) -> None:
    assert payload_error(orjson.dumps(doc)) == "payload_shape"


@pytest.mark.parametrize(
    "doc",
    [
        {"ts": [NOW, NOW + 1], "v": [1.0]},
        {"ts": [NOW], "v": [1.0, 2.0]},
        {"ts": [NOW], "v": [1.0], "q": ["good", "good"]},
        {"ts": [NOW], "v": [1.0], "q": []},
    ],
)
def test_columns_of_different_lengths_are_length_mismatch(doc: Any) -> None:
    assert payload_error(orjson.dumps(doc)) == "length_mismatch"


def test_payload_error_says_what_to_do_next() -> None:
    with pytest.raises(PayloadError) as info:
        decode_readings(b'{"value": 1}', now_ms=NOW)
    assert '{"ts": ms, "v": x}' in str(info.value)


# -- properties -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers(min_value=NOW - 31 * DAY, max_value=NOW + DAY)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["NaN", "good", "bad", "2024-11-24T00:00:00Z", "2024-11-24T00:00:00"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.sampled_from(["ts", "v", "q"]) | st.text(max_size=5), children,
                      max_size=4),
    max_leaves=20,
)


def check_invariants(decoded: DecodedReadings, n_max: int | None = None) -> None:
    assert decoded.ts_ms.dtype == np.int64 and decoded.value.dtype == np.float64
    assert decoded.ts_ms.shape == decoded.value.shape
    assert np.isfinite(decoded.value).all()
    assert (np.abs(decoded.value) < VALUE_LIMIT).all()
    assert ((decoded.ts_ms >= NOW - 30 * DAY) & (decoded.ts_ms <= NOW + 300_000)).all()
    assert set(decoded.dropped) <= set(READING_DROP_REASONS)
    assert all(count > 0 for count in decoded.dropped.values())
    if n_max is not None:
        assert len(decoded) + sum(decoded.dropped.values()) == n_max


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        check_invariants(decode_readings(payload, now_ms=NOW))


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_raises_nothing_but_payload_error(doc: Any) -> None:
    with contextlib.suppress(PayloadError):
        check_invariants(decode(doc))


reading_fields = st.fixed_dictionaries(
    {"ts": json_scalars, "v": json_scalars},
    optional={"q": st.sampled_from(["good", 0, "bad", 1, None, False, 0.0])},
)


@settings(max_examples=200)
@given(st.lists(reading_fields, max_size=8))
def test_columnar_and_batch_forms_agree(readings: list[dict[str, Any]]) -> None:
    """The columnar fast path must give what the per-reading path gives."""
    batch = decode(readings)
    check_invariants(batch, n_max=len(readings))
    columnar: dict[str, list[Any]] = {"ts": [r["ts"] for r in readings],
                                      "v": [r["v"] for r in readings]}
    if any("q" in r for r in readings):
        columnar["q"] = [r.get("q", "good") for r in readings]
    decoded = decode(columnar)
    assert kept(decoded) == kept(batch)
    assert decoded.dropped == batch.dropped


@given(st.lists(st.tuples(st.integers(NOW - 30 * DAY, NOW + 300_000),
                          st.floats(-VALUE_LIMIT, VALUE_LIMIT, exclude_min=True,
                                    exclude_max=True)), max_size=50))
def test_clean_columnar_batch_keeps_every_reading_exactly(pairs: list[tuple[int, float]]) -> None:
    decoded = decode({"ts": [t for t, _ in pairs], "v": [v for _, v in pairs]})
    assert kept(decoded) == pairs and decoded.dropped == {}


# -- meta -----------------------------------------------------------------------------------


def test_meta_with_every_key() -> None:
    meta = decode_meta(
        b'{"carrier": "electricity", "unit": "kWh", "mode": "counter", "rollover": 1000000}'
    )
    assert meta == MeterMeta("electricity", "kWh", "counter", 1_000_000.0)
    assert isinstance(meta.rollover, float)


def test_meta_with_direction_and_max_rate() -> None:
    meta = decode_meta(b'{"carrier": "electricity", "unit": "kWh", "mode": "counter", '
                       b'"rollover": 1000000, "direction": "export", "max_rate": 90000}')
    assert meta == MeterMeta("electricity", "kWh", "counter", 1e6, "export", 90000.0)
    assert isinstance(meta.max_rate, float)
    assert decode_meta(b'{"direction": "import"}').direction == "import"


@pytest.mark.parametrize("rollover", [2**64, 2.0**64, 1, 5e-324, 4294967296, 42949672.95])
def test_rollover_up_to_two_to_the_64_is_taken(rollover: float) -> None:
    assert decode_meta(b'{"rollover": %s}' % str(rollover).encode()).rollover == float(rollover)


def test_a_rollover_of_1e300_is_refused_naming_the_key() -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(b'{"rollover": 1e300}')
    assert info.value.reason == "meta_invalid"
    assert "rollover" in info.value.detail and "2**64" in info.value.detail


def test_a_repeated_meta_key_is_duplicate_key() -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(b'{"rollover": 1000, "mode": "delta", "rollover": 1e300}')
    assert info.value.reason == "duplicate_key"


def test_meta_keys_are_optional_and_null_means_absent() -> None:
    assert decode_meta(b'{"mode": "delta", "unit": null}') == MeterMeta(mode="delta")
    assert decode_meta(b"{}") == MeterMeta()


def test_cleared_retained_meta_means_defaults() -> None:
    assert decode_meta(b"") == MeterMeta()


def test_unknown_carrier_is_left_to_the_registry() -> None:
    assert decode_meta(b'{"carrier": "unobtainium"}').carrier == "unobtainium"


@pytest.mark.parametrize(
    "doc",
    [
        [], "counter", 1,
        {"carrier": 1}, {"carrier": ""}, {"unit": ["kWh"]},
        {"mode": "cumulative"}, {"mode": "Counter"}, {"mode": 0},
        {"rollover": 0}, {"rollover": -10}, {"rollover": "1e6"}, {"rollover": True},
        {"rollover": [1000]}, {"rollover": 1e300}, {"rollover": 2.0**64 * (1 + 2**-52)},
        {"rollover": -1e-300}, {"rollover": 1.7e308},
        {"direction": "Export"}, {"direction": "out"}, {"direction": 1}, {"direction": ""},
        {"max_rate": 0}, {"max_rate": -5}, {"max_rate": "90000"}, {"max_rate": True},
        {"max_rate": [1]},
        {"rollower": 1000}, {"maxrate": 1}, {"Direction": "import"},
    ],
)
def test_wrong_meta_is_meta_invalid(doc: Any) -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(orjson.dumps(doc))
    assert info.value.reason == "meta_invalid"


def test_misspelt_meta_key_suggests_the_right_one() -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(b'{"rollower": 1000}')
    assert "did you mean 'rollover'" in info.value.detail


def test_unparseable_meta_is_invalid_json() -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(b'{"mode": counter}')
    assert info.value.reason == "invalid_json"


def test_oversized_meta_is_too_large() -> None:
    with pytest.raises(PayloadError) as info:
        decode_meta(b" " * 65_537)
    assert info.value.reason == "too_large"


@given(st.binary(max_size=100) | json_values.map(orjson.dumps))
def test_decode_meta_raises_nothing_but_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_meta(payload)
