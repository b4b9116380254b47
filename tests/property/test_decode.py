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
                          st.floats(allow_nan=False, allow_infinity=False)), max_size=50))
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
        {"rollover": [1000]},
        {"rollower": 1000},
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
