"""Line protocol encoding of results batches (contract section 4)."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattline.ingest.results import INTENSITY_SCHEMA
from wattline.ingest.sinks.line_protocol import encode_intensity, escape_tag_value, format_float


def _batch(**overrides: list) -> pa.Table:
    columns = {
        "site": ["s1"], "line": ["eaf-1"], "window": ["15m"], "time_ms": [1732406400000],
        "energy_kgce": [61.5], "electricity_kwh": [420.25], "production_t": [1.0],
        "kgce_per_t": [61.5], "kwh_per_t": [420.25],
    }
    columns.update(overrides)
    return pa.table(columns, schema=INTENSITY_SCHEMA)


def _parse_point(line: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    """A small line-protocol reader for the points this encoder writes (escaped tags)."""
    head, fields, ts = re.split(r"(?<!\\) ", line)
    parts = re.split(r"(?<!\\),", head)
    tags = {}
    for part in parts[1:]:
        key, value = re.split(r"(?<!\\)=", part, maxsplit=1)
        tags[key] = re.sub(r"\\(.)", r"\1", value)
    values = {k: float(v) for k, v in (f.split("=") for f in fields.split(","))}
    return parts[0], tags, values, int(ts)


def test_a_producing_window_writes_every_field_with_its_tags_and_ms_time() -> None:
    line = encode_intensity(_batch()).decode()
    assert line == (
        "energy_intensity,site=s1,line=eaf-1,window=15m energy_kgce=61.5,"
        "electricity_kwh=420.25,production_t=1.0,kgce_per_t=61.5,kwh_per_t=420.25 "
        "1732406400000\n"
    )


def test_an_idle_window_leaves_out_the_intensity_fields() -> None:
    line = encode_intensity(_batch(production_t=[0.0], kgce_per_t=[None], kwh_per_t=[None]))
    _, _, fields, _ = _parse_point(line.decode().strip())
    assert set(fields) == {"energy_kgce", "electricity_kwh", "production_t"}


def test_an_empty_batch_encodes_to_nothing() -> None:
    assert encode_intensity(INTENSITY_SCHEMA.empty_table()) == b""


@pytest.mark.parametrize("raw", ["a,b", "a=b", "a b", "a\\b", "x,=\\ y"])
def test_tag_values_with_special_characters_are_escaped_and_read_back(raw: str) -> None:
    line = encode_intensity(_batch(line=[raw])).decode().strip()
    assert line.count("\n") == 0
    _, tags, _, _ = _parse_point(line)
    assert tags["line"] == raw


@pytest.mark.parametrize("raw", ["a\nb", "a\rb", ""])
def test_tag_values_line_protocol_cannot_carry_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        escape_tag_value(raw)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_fields_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        format_float(value)


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
    points = [_parse_point(x) for x in encode_intensity(batch).decode().splitlines()]
    assert [(t["line"], t["window"], ts) for _, t, _, ts in points] == [
        ("a", "15m", 10_000), ("b", "15m", 10_000), ("a", "1h", 20_000)]
    assert [f["energy_kgce"] for _, _, f, _ in points] == [1.0, 2.0, 3.0]
