"""A mapped reading meets exactly the rules of a JSON reading: on random readings, a
[[payloads]] mapping keeps the same (time, value) pairs as ``decode_readings`` on the
same readings written as ``[{"ts": .., "v": ..}]``, and drops the others for the same
reasons (``mapping`` where the mapping finds no value or time at all)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.ingest.config_payloads import parse_payloads
from wattline.ingest.decode.mapping import PayloadMapper
from wattline.ingest.decode.payloads import decode_readings

NOW = 1_796_637_600_000
LIMITS = {"max_future_ms": 300_000, "max_past_ms": 86_400_000, "max_bytes": 1 << 20}
MAPPER = PayloadMapper(parse_payloads([{
    "topic": "gw/+", "readings": "document.r", "site": "'s'", "line": "'l'",
    "kind": "'energy'", "meter": "topic[1]", "value": "reading.v", "time": "reading.ts"}]))

times = st.one_of(
    st.integers(NOW - 2 * 86_400_000, NOW + 600_000),
    st.integers(NOW - 1000, NOW).map(float),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(), st.none(), st.text(max_size=3),
)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60),
    st.sampled_from(["NaN", "inf", "12.5", ""]), st.booleans(), st.none(),
    st.lists(st.integers(0, 9), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(times, values), max_size=12))
def test_mapped_readings_follow_the_json_rules(readings: list[tuple[Any, Any]]) -> None:
    items = [{"ts": ts, "v": v} for ts, v in readings]
    mapping = MAPPER.match("gw/m")
    assert mapping is not None
    got = MAPPER.read(mapping, "gw/m", orjson.dumps({"r": items}), now_ms=NOW, **LIMITS)

    want_dropped: dict[str, int] = {}
    want_kept: list[tuple[int, float]] = []
    for item in items:
        if item["ts"] is None or item["v"] is None:
            want_dropped["mapping"] = want_dropped.get("mapping", 0) + 1
            continue
        one = decode_readings(orjson.dumps([item]), now_ms=NOW, max_future_ms=300_000,
                              max_past_ms=86_400_000)
        if isinstance(item["ts"], str) and not one.dropped:
            # an RFC 3339 string is JSON's other time format; this mapping's is epoch_ms
            one_dropped = {"ts_invalid": 1}
        else:
            one_dropped = one.dropped
        for reason, n in one_dropped.items():
            want_dropped[reason] = want_dropped.get(reason, 0) + n
        if not one_dropped:
            want_kept += zip(one.ts_ms.tolist(), one.value.tolist(), strict=True)
    got_kept = [(t, v) for _, ts, vs in got.parts
                for t, v in zip(ts.tolist(), vs.tolist(), strict=True)]
    assert got.dropped == want_dropped
    assert got_kept == sorted(want_kept, key=lambda r: r[0])  # in time order, stable
    assert got.received == len(items)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab", max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abv"),
                                                                inner, max_size=3),
    max_leaves=12)
EXPRESSIONS = ("reading", "reading.v", "reading.a.b", "document.a.v.b", "reading.a[0]",
               "reading.v || reading.a", "to_number(reading.v)", "reading.a[?b].v")


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_the_compiled_evaluators_agree_with_jmespath(reading: Any, document: Any) -> None:
    import jmespath

    from wattline.ingest.decode.mapping import evaluator

    context = {"document": document, "topic": ["gw", "m"], "reading": reading}
    for text in EXPRESSIONS:
        try:
            want = jmespath.search(text, context)
        except jmespath.exceptions.JMESPathError:
            want = None
        assert evaluator(jmespath.compile(text))(context) == want, text
