"""Line protocol encoding of results batches (docs/formats.md, outputs)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.influx_line_protocol import parse_line
from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.sinks.line_protocol import encode_intensity, escape_tag_value, format_float

T0 = 1_732_406_400_000


def _batch(**overrides: list) -> pa.Table:
    """One row of a producing window, or as many as the overrides give (the other columns
    repeated)."""
    n = max((len(v) for v in overrides.values()), default=1)
    columns = {
        "site": ["s1"], "line": ["eaf-1"], "window": ["15m"], "time_ms": [T0],
        "energy_kgce": [61.5], "electricity_kwh": [420.25], "production_t": [1.0],
        "kgce_per_t": [61.5], "kwh_per_t": [420.25], "co2_direct_t": [0.0],
        "co2_indirect_t": [0.22298465], "co2_per_t": [0.22298465],
    }
    columns = {k: v * n for k, v in columns.items()}
    columns.update(overrides)
    return pa.table(columns, schema=INTENSITY_SCHEMA)


def _parse_point(line: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    measurement, tags, fields, ts = parse_line(line)
    assert ts is not None and all(isinstance(v, float) for v in fields.values())
    return measurement, tags, fields, ts  # type: ignore[return-value]


def _points(table: pa.Table) -> list[tuple[str, dict[str, str], dict[str, float], int]]:
    body = encode_intensity(table).decode()
    assert body.endswith("\n")
    return [_parse_point(line) for line in body[:-1].split("\n")]


def test_a_producing_window_writes_every_field_with_its_tags_and_ms_time() -> None:
    line = encode_intensity(_batch()).decode()
    assert line == (
        "energy_intensity,site=s1,line=eaf-1,window=15m energy_kgce=61.5,"
        "electricity_kwh=420.25,production_t=1,kgce_per_t=61.5,kwh_per_t=420.25,"
        f"co2_direct_t=0,co2_indirect_t=0.22298465,co2_per_t=0.22298465 {T0}\n"
    )


def test_an_idle_window_leaves_out_the_intensity_fields() -> None:
    [(_, _, fields, _)] = _points(_batch(production_t=[0.0], kgce_per_t=[None],
                                         kwh_per_t=[None], co2_per_t=[None]))
    assert fields == {"energy_kgce": 61.5, "electricity_kwh": 420.25, "production_t": 0.0,
                      "co2_direct_t": 0.0, "co2_indirect_t": 0.22298465}


def test_one_null_intensity_leaves_out_only_that_field() -> None:
    [(_, _, fields, _)] = _points(_batch(kgce_per_t=[None]))
    assert set(fields) == {"energy_kgce", "electricity_kwh", "production_t", "kwh_per_t",
                           "co2_direct_t", "co2_indirect_t", "co2_per_t"}


def test_an_empty_batch_encodes_to_nothing() -> None:
    assert encode_intensity(INTENSITY_SCHEMA.empty_table()) == b""


@pytest.mark.parametrize("raw", ["a,b", "a=b", "a b", "a\\b", "x,=\\ y", "ü n,i", "a\\\\b",
                                 "x\\,y", "\\ lead"])
def test_tag_values_with_special_characters_are_escaped_and_read_back(raw: str) -> None:
    body = encode_intensity(_batch(line=[raw], site=[raw], window=[raw])).decode()
    assert body.count("\n") == 1
    [(_, tags, fields, _)] = _points(_batch(line=[raw], site=[raw], window=[raw]))
    assert tags == {"site": raw, "line": raw, "window": raw}
    assert fields["kwh_per_t"] == 420.25


def test_escaping_puts_a_backslash_before_each_comma_equals_sign_and_space_only() -> None:
    # InfluxDB reads a backslash as an escape only before , = and space: others stay.
    assert escape_tag_value("a b,c=d\\e\\\\f") == "a\\ b\\,c\\=d\\e\\\\f"


@pytest.mark.parametrize("raw", ["a\nb", "a\rb", "end\n", "", "trailing\\", "C:\\plant\\\\"])
def test_tag_values_line_protocol_cannot_carry_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        escape_tag_value(raw)
    with pytest.raises(ValueError, match="'line'"):
        encode_intensity(_batch(site=["ok", "ok"], line=["fine", raw], window=["15m"] * 2,
                                time_ms=[T0] * 2, energy_kgce=[1.0] * 2,
                                electricity_kwh=[1.0] * 2, production_t=[1.0] * 2,
                                kgce_per_t=[1.0] * 2, kwh_per_t=[1.0] * 2))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_fields_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        format_float(value)
    with pytest.raises(ValueError, match="'kgce_per_t'"):
        encode_intensity(_batch(kgce_per_t=[value]))


def test_a_null_sum_is_refused_rather_than_left_out() -> None:
    table = pa.table({**_batch().to_pydict(), "energy_kgce": [None]})
    with pytest.raises(ValueError, match="'energy_kgce'"):
        encode_intensity(table)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_read_back_exactly(value: float) -> None:
    assert float(format_float(value)) == value


def test_many_rows_become_one_point_each_in_order() -> None:
    batch = _batch(
        site=["s"] * 3, line=["a", "b", "a"], window=["15m", "15m", "1h"],
        time_ms=[10_000, 10_000, 20_000], energy_kgce=[1.0, 2.0, 3.0],
        electricity_kwh=[1.0, 2.0, 3.0], production_t=[1.0, 2.0, 3.0],
        kgce_per_t=[1.0, 1.0, 1.0], kwh_per_t=[1.0, 1.0, 1.0],
    )
    points = _points(batch)
    assert [(t["line"], t["window"], ts) for _, t, _, ts in points] == [
        ("a", "15m", 10_000), ("b", "15m", 10_000), ("a", "1h", 20_000)]
    assert [f["energy_kgce"] for _, _, f, _ in points] == [1.0, 2.0, 3.0]


def test_a_sliced_batch_of_several_chunks_encodes_like_its_copy() -> None:
    rows = [_batch(line=[f"l{i}"], time_ms=[T0 + i], energy_kgce=[float(i)]) for i in range(6)]
    chunked = pa.concat_tables(rows).slice(2, 3)
    assert chunked.column("line").num_chunks > 1
    copy = pa.Table.from_pylist(chunked.to_pylist(), schema=INTENSITY_SCHEMA)
    assert encode_intensity(chunked) == encode_intensity(copy)
    assert [tags["line"] for _, tags, _, _ in _points(chunked)] == ["l2", "l3", "l4"]


_tag_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                    min_size=1, max_size=12).filter(lambda v: not v.endswith("\\"))
_finite = st.floats(allow_nan=False, allow_infinity=False)
_row = st.fixed_dictionaries({
    "site": _tag_text, "line": _tag_text, "window": _tag_text,
    "time_ms": st.integers(0, 2**53), "energy_kgce": _finite, "electricity_kwh": _finite,
    "production_t": _finite, "kgce_per_t": st.none() | _finite, "kwh_per_t": st.none() | _finite,
    "co2_direct_t": _finite, "co2_indirect_t": _finite, "co2_per_t": st.none() | _finite,
})


@settings(max_examples=60, deadline=None)
@given(st.lists(_row, min_size=1, max_size=8))
def test_every_row_reads_back_from_its_line_exactly(rows: list[dict]) -> None:
    points = _points(pa.Table.from_pylist(rows, schema=INTENSITY_SCHEMA))
    assert len(points) == len(rows)
    for row, (measurement, tags, fields, ts) in zip(rows, points, strict=True):
        assert measurement == "energy_intensity"
        assert tags == {"site": row["site"], "line": row["line"], "window": row["window"]}
        assert ts == row["time_ms"]
        expected = {k: row[k] for k in ("energy_kgce", "electricity_kwh", "production_t",
                                        "kgce_per_t", "kwh_per_t", "co2_direct_t",
                                        "co2_indirect_t", "co2_per_t") if row[k] is not None}
        assert fields == expected
