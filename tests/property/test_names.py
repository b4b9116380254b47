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

from tests.influx_line_protocol import parse_line
from wattline.contract.schemas import ALERT_SCHEMA, INTENSITY_SCHEMA
from wattline.contract.topics import TopicTemplate, valid_name
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.line_protocol import (
    FIELDS,
    TAGS,
    encode_alerts,
    encode_intensity,
    escape_tag_value,
    unwritable_rows,
)
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


# --- line protocol, read by InfluxDB's rules (tests/influx_line_protocol.py) ------------

lp_names = names.filter(lambda n: not n.endswith("\\"))
"""Names line protocol can carry: InfluxDB cannot read back a tag value ending in a
backslash, so both writers refuse those rows (``unwritable_rows``)."""
lp_name_lists = st.lists(lp_names, min_size=1, max_size=12, unique=True)


def parse_point(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """One point as InfluxDB reads it: measurement, tags, fields, time."""
    measurement, tags, fields, stamp = parse_line(line)
    assert stamp is not None, f"no timestamp in {line!r}"
    return measurement, tags, fields, stamp


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
        "kgce_per_t": [3.0] * n, "kwh_per_t": [4.0] * n, "co2_direct_t": [0.25] * n,
        "co2_indirect_t": [0.5] * n, "co2_per_t": [1.5] * n,
    }, schema=INTENSITY_SCHEMA)


def _pairs(sites: list[str]) -> list[str]:
    """A second column of names for the lines: the same names in another order."""
    return sites[1:] + sites[:1]


@settings(max_examples=300, deadline=None)
@given(lp_name_lists)
def test_names_round_trip_through_intensity_line_protocol(sites: list[str]) -> None:
    lines = _pairs(sites)
    points = parse_body(encode_intensity(_intensity(sites, lines)))
    assert len(points) == len(sites)
    for (measurement, tags, fields, _), site, line in zip(points, sites, lines, strict=True):
        assert measurement == "energy_intensity"
        assert tags == {"site": site, "line": line, "window": "15m"}
        assert set(fields) == set(FIELDS)


@settings(max_examples=200, deadline=None)
@given(lp_names, lp_names)
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


@settings(max_examples=100, deadline=None)
@given(name_lists)
def test_names_ending_in_a_backslash_are_refused_alone(sites: list[str]) -> None:
    lines = _pairs(sites)
    table = _intensity(sites, lines)
    refused = unwritable_rows(table, TAGS)
    assert set(refused) == {i for i, (s, ln) in enumerate(zip(sites, lines, strict=True))
                            if s.endswith("\\") or ln.endswith("\\")}
    for name in sites:
        if name.endswith("\\"):
            with pytest.raises(ValueError, match="ending in a backslash"):
                escape_tag_value(name)
    kept = [i for i in range(table.num_rows) if i not in refused]
    if kept:
        points = parse_body(encode_intensity(table.take(kept)))
        assert [(t["site"], t["line"]) for _, t, _, _ in points] == [
            (sites[i], lines[i]) for i in kept]


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


def victoria_reads_back(name: str) -> bool:
    """Whether VictoriaMetrics reads ``name`` back from InfluxDB's escaping: its parser
    takes ``\\\\`` for one backslash, so a backslash directly before another, a comma
    or a space is read otherwise (see the test below and docs/formats.md)."""
    return not any(name[i] == "\\" and name[i + 1] in "\\, " for i in range(len(name) - 1))


@pytest.mark.e2e
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sites=st.lists(lp_names.filter(victoria_reads_back), min_size=1, max_size=12,
                      unique=True))
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


@pytest.mark.e2e
def test_victoriametrics_reads_backslashes_otherwise_than_influxdb(victoria) -> None:
    """What docs/formats.md says of VictoriaMetrics: line protocol escaped as InfluxDB
    reads it comes back the same for a backslash before any other character (and ``=``),
    with one backslash of two, and a point whose name has a backslash before a comma or
    a space is not stored at all (the write is still answered 204)."""
    window = f"w{uuid.uuid4().hex[:12]}"
    names = ["a\\b", "e\\=q", "kiln 2,hall=B\\east", "a\\\\b", "a\\\\ b", "x\\,y", "c\\ d"]
    body = encode_intensity(_intensity(names, names, window))
    request = urllib.request.Request(f"{victoria.url}/api/v2/write?precision=ms", data=body,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204
    got = {(t - T0) // 10_000: s["metric"]["site"] for s in victoria.export(
        f'energy_intensity_energy_kgce{{window="{window}"}}') for t in s["timestamps"]}
    assert got == {0: "a\\b", 1: "e\\=q", 2: "kiln 2,hall=B\\east", 3: "a\\b", 4: "a\\ b"}
    assert [n for n in names if victoria_reads_back(n)] == names[:3]
