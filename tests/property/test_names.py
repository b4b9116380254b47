"""Names as plants write them, through every writer: line protocol, the Parquet store,
Prometheus labels and a real VictoriaMetrics.

Names are drawn from the whole alphabet the topic rule allows (any character but
control characters and lone surrogates), with the characters each writer treats
specially drawn often. Every accepted name must come back exactly, and no name may
add a measurement, tag, field, folder, file or label of its own.
"""

from __future__ import annotations

import itertools
import tempfile
import urllib.request
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from wattline.contract.schemas import ALERT_SCHEMA, INTENSITY_SCHEMA
from wattline.contract.topics import TopicTemplate, valid_name
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.line_protocol import FIELDS, encode_alerts, encode_intensity
from wattline.ingest.sinks.parquet_store import ParquetStore, read_store

T0 = 1_732_406_400_000
# What line protocol, folder names, URI escaping, label text and shells treat specially.
SPECIAL = list(",= \\\"'%/.~#+:*?<>|{}[]$&;\u00a0\u2028\u200b\u202eé米😀\ufeff")
_char = st.one_of(st.sampled_from(SPECIAL),
                  st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")))
names = st.text(_char, min_size=1, max_size=64).filter(valid_name)
"""Any name the topic rule accepts."""
name_lists = st.lists(names, min_size=1, max_size=12, unique=True)


def test_the_strategy_draws_only_names_a_topic_can_carry() -> None:
    template = TopicTemplate()
    for name in ("Plant A", "Öfen-3", "a,b=c\\", "😀" * 64):
        assert template.parse(f"factory/{name}/{name}/energy/{name}").site == name


# --- a strict line-protocol reader, written from InfluxDB's rules -------------------------

_TAG_ESCAPES = {",", "=", " ", "\\"}


class LineProtocolError(ValueError):
    pass


def _take(text: str, i: int, stops: str, escapes: set[str]) -> tuple[str, int]:
    """Read an element from ``text[i:]`` up to an unescaped character of ``stops``.
    A backslash must escape one of ``escapes``; anything else is an error (strict)."""
    out: list[str] = []
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\":
            if i + 1 >= len(text) or text[i + 1] not in escapes:
                raise LineProtocolError(f"stray backslash at {i} in {text!r}")
            out.append(text[i + 1])
            i += 2
            continue
        if text[i] in "\n\r":
            raise LineProtocolError("line break inside a point")
        out.append(text[i])
        i += 1
    return "".join(out), i


def parse_point(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """One point: measurement, tags, fields (floats, ``1i`` integers, quoted strings), time."""
    measurement, i = _take(line, 0, ", ", {",", " ", "\\"})
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        key, i = _take(line, i + 1, "=", _TAG_ESCAPES)
        if line[i:i + 1] != "=":
            raise LineProtocolError("tag without =")
        value, i = _take(line, i + 1, ", ", _TAG_ESCAPES)
        if not key or not value or key in tags:
            raise LineProtocolError(f"empty or repeated tag {key!r}")
        tags[key] = value
    if line[i:i + 1] != " ":
        raise LineProtocolError("no field set")
    fields: dict[str, object] = {}
    i += 1
    while True:
        key, i = _take(line, i, "=", _TAG_ESCAPES)
        i += 1
        if line[i:i + 1] == '"':
            value, i = _take(line, i + 1, '"', {'"', "\\"})
            if line[i:i + 1] != '"':
                raise LineProtocolError("unterminated string field")
            i += 1
            fields[key] = value
        else:
            end = min((j for j in (line.find(",", i), line.find(" ", i)) if j >= 0),
                      default=len(line))
            text = line[i:end]
            fields[key] = int(text[:-1]) if text.endswith("i") else float(text)
            i = end
        if key in list(fields)[:-1]:
            raise LineProtocolError(f"repeated field {key!r}")
        if line[i:i + 1] == ",":
            i += 1
            continue
        break
    if line[i:i + 1] != " ":
        raise LineProtocolError("no timestamp")
    stamp = line[i + 1:]
    if not stamp.isdigit():
        raise LineProtocolError(f"bad timestamp {stamp!r}")
    return measurement, tags, fields, int(stamp)


def parse_body(body: bytes) -> list[tuple[str, dict[str, str], dict[str, object], int]]:
    text = body.decode("utf-8")
    assert text.endswith("\n")
    return [parse_point(line) for line in text[:-1].split("\n")]


def _intensity(sites: list[str], lines: list[str], window: str = "15m") -> pa.Table:
    n = len(sites)
    return pa.table({
        "site": sites, "line": lines, "window": [window] * n,
        "time_ms": [T0 + 10_000 * i for i in range(n)],
        "energy_kgce": [1.5] * n, "electricity_kwh": [2.0] * n, "production_t": [0.5] * n,
        "kgce_per_t": [3.0] * n, "kwh_per_t": [4.0] * n,
    }, schema=INTENSITY_SCHEMA)


def _pairs(sites: list[str]) -> list[str]:
    """A second column of names for the lines: the same names in another order."""
    return sites[1:] + sites[:1]


@settings(max_examples=300, deadline=None)
@given(name_lists)
def test_names_round_trip_through_intensity_line_protocol(sites: list[str]) -> None:
    lines = _pairs(sites)
    points = parse_body(encode_intensity(_intensity(sites, lines)))
    assert len(points) == len(sites)
    for (measurement, tags, fields, _), site, line in zip(points, sites, lines, strict=True):
        assert measurement == "energy_intensity"
        assert tags == {"site": site, "line": line, "window": "15m"}
        assert set(fields) == set(FIELDS)


@settings(max_examples=200, deadline=None)
@given(names, names)
def test_names_round_trip_through_alert_line_protocol(site: str, line: str) -> None:
    message = f"kgce/t on {site}/{line} is 2x its median"
    table = pa.Table.from_pylist([{
        "site": site, "line": line, "rule": "spike", "time_ms": T0, "state": 1,
        "value": 2.0, "threshold": 1.5, "message": message,
    }], schema=ALERT_SCHEMA)
    [(measurement, tags, fields, stamp)] = parse_body(encode_alerts(table))
    assert measurement == "energy_alert" and stamp == T0
    assert tags == {"site": site, "line": line, "rule": "spike"}
    assert fields == {"state": 1, "value": 2.0, "threshold": 1.5, "message": message}


# --- the Parquet store ---------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name_lists)
def test_names_round_trip_through_the_parquet_store_and_make_one_folder_each(
        sites: list[str]) -> None:
    lines = _pairs(sites)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = ParquetStore(root)
        store.open()
        store.write(_intensity(sites, lines))
        back = read_store(root).to_pylist()
        assert sorted((r["site"], r["line"]) for r in back) == sorted(zip(sites, lines,
                                                                        strict=True))
        assert read_store(root, site=sites[0], line=lines[0]).num_rows == 1
        everything = list(Path(tmp).rglob("*"))
        files = [p for p in everything if p.is_file()]
        assert all(root in p.parents for p in everything if p != root)
        assert len(files) == len(sites)  # one day, one file per (site, line)
        for f in files:
            date, site, line, _ = f.relative_to(root).parts  # no name adds a level
            assert date == "date=2024-11-24"
            assert site.startswith("site=") and line.startswith("line=")
            assert not f.name.startswith(".")
        folders = {f.parent for f in files}
        assert len(folders) == len(sites)
        # Tools reading the folder names with URI decoding get the names back too,
        # except for names too long for a folder (a digest).
        by_folder = ds.dataset(root, format="parquet", partitioning=ds.HivePartitioning(
            pa.schema([("date", pa.string()), ("site", pa.string()), ("line", pa.string())]),
            segment_encoding="uri")).to_table(columns=["site", "line"]).to_pylist()
        for row in by_folder:
            if not row["site"].startswith("~"):
                assert row["site"] in sites
            if not row["line"].startswith("~"):
                assert row["line"] in lines


@pytest.mark.parametrize("name", [".", "..", "../..", "a/../../b", "~x", "x.", "%2e%2e",
                                  "C:\\temp", "con", "NUL"])
def test_names_that_look_like_paths_stay_inside_their_folder(tmp_path: Path,
                                                             name: str) -> None:
    store = ParquetStore(tmp_path / "store")
    store.open()
    store.write(_intensity([name], [name]))
    [f] = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(f.relative_to(tmp_path / "store").parts) == 4
    assert [(r["site"], r["line"]) for r in read_store(tmp_path / "store").to_pylist()] == [
        (name, name)]


# --- Prometheus labels ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(name_lists)
def test_names_round_trip_through_prometheus_labels(sites: list[str]) -> None:
    lines = _pairs(sites)
    metrics = CollectorMetrics(CollectorRegistry())
    for site, line in zip(sites, lines, strict=True):
        metrics.last_reading.labels(site, line).set(T0 / 1000)
        metrics.kgce_per_t.labels(site, line, "15m").set(2.5)
        metrics.alert_active.labels(site, line, "spike").set(1)
    expected = set(zip(sites, lines, strict=True))
    for families in (text_string_to_metric_families(generate_latest(metrics.registry).decode()),
                     parse_openmetrics(generate_openmetrics(metrics.registry).decode())):
        seen: dict[str, set[tuple[str, str]]] = {}
        for family in families:
            for sample in family.samples:
                if "site" not in sample.labels:
                    continue
                extra = set(sample.labels) - {"site", "line", "window", "rule"}
                assert not extra, sample
                seen.setdefault(sample.name, set()).add(
                    (sample.labels["site"], sample.labels["line"]))
        assert seen == {"wattline_line_last_reading_timestamp_seconds": expected,
                        "wattline_intensity_kgce_per_t": expected,
                        "wattline_alert_active": expected}


# --- a real VictoriaMetrics ----------------------------------------------------------

_runs = itertools.count()


@pytest.mark.e2e
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sites=name_lists)
def test_names_round_trip_through_victoriametrics(victoria, sites: list[str]) -> None:
    """The encoder's points, written to a real server, come back with the names exactly,
    and as exactly one series per field and row: no name added a series or a label."""
    lines = _pairs(sites)
    window = f"w{uuid.uuid4().hex[:12]}-{next(_runs)}"  # this example's series only
    body = encode_intensity(_intensity(sites, lines, window))
    request = urllib.request.Request(f"{victoria.url}/api/v2/write?precision=ms", data=body,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204
    series = victoria.export(f'{{window="{window}"}}')
    assert len(series) == len(sites) * len(FIELDS)
    got: dict[str, set[tuple[str, str]]] = {}
    for s in series:
        labels = s["metric"]
        assert set(labels) == {"__name__", "site", "line", "window"}, labels
        got.setdefault(labels["__name__"], set()).add((labels["site"], labels["line"]))
    expected = set(zip(sites, lines, strict=True))
    assert got == {f"energy_intensity_{field}": expected for field in FIELDS}

