"""deploy/grafana: the dashboards ask only for what the pipeline writes and exports.

Every query of every dashboard (panels, template variables, annotations) is read
back and the names in it are checked: InfluxQL queries against the
measurements, tags and fields of docs/formats.md, outputs, PromQL expressions against the
metrics a fresh ``CollectorMetrics`` registers. A renamed field or metric breaks a
test here before it blanks a panel on a plant's screen. The InfluxQL queries also run
against a real InfluxDB 1.x in tests/e2e/test_dashboards_influxql.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from tests.conftest import missing_component
from tests.grafana_dashboards import (
    DASHBOARD_DIR,
    DASHBOARD_FILES,
    DATASOURCES_FILE,
    Query,
    all_panels,
    dashboard_queries,
    fill_influxql,
    language,
    load_dashboard,
    provisioned_datasources,
)
from tests.processes import ComponentMissing, find_binary
from wattline.contract.reference_data import load_reference
from wattline.ingest.metrics import BatchHistogram, CollectorMetrics
from wattline.ingest.sinks import line_protocol


@dataclass(frozen=True)
class Measurement:
    tags: frozenset[str]
    fields: frozenset[str]


# The outputs (docs/formats.md, outputs), taken from what the line-protocol writer writes.
SCHEMA: dict[str, Measurement] = {
    line_protocol.MEASUREMENT: Measurement(
        frozenset(line_protocol.TAGS), frozenset(line_protocol.FIELDS)
    ),
    line_protocol.ALERT_MEASUREMENT: Measurement(
        frozenset(line_protocol.ALERT_TAGS), frozenset(line_protocol.ALERT_FIELDS)
    ),
}
# Series Prometheus makes itself for every scrape target, and the labels it adds.
PROMETHEUS_SERIES = {"up": frozenset()}
TARGET_LABELS = frozenset({"instance", "job"})


# --- what the pipeline exports --------------------------------------------------------------


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a collector exposes on /metrics, with its label names.

    Built from a fresh registry: a counter family ``x`` is exposed as ``x_total``, a
    histogram as ``x_bucket`` (with ``le``), ``x_sum`` and ``x_count``.
    """
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    # prometheus_client keeps a metric's label names only on the metric object.
    labels = {
        m._name: frozenset(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    labels.update({m.name: frozenset(m.labelnames) for m in vars(metrics).values()
                   if isinstance(m, BatchHistogram)})
    series: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        names = labels[family.name]
        if family.type == "counter":
            series[f"{family.name}_total"] = names
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = names | {"le"}
            series[f"{family.name}_sum"] = names
            series[f"{family.name}_count"] = names
        else:
            series[family.name] = names
    return series


EXPORTED = exported_series()


# --- reading the dashboards -----------------------------------------------------------------


def datasource_refs(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every data source reference: panels, their targets, variables and annotations."""
    refs = []
    for panel in all_panels(dashboard["panels"]):
        if "datasource" in panel:
            refs.append((f"panel {panel['title']!r}", panel["datasource"]))
        for target in panel.get("targets", []):
            refs.append((f"panel {panel['title']!r} target {target['refId']}",
                         target.get("datasource", panel.get("datasource"))))
    for var in dashboard["templating"]["list"]:
        if "datasource" in var:
            refs.append((f"variable {var['name']}", var["datasource"]))
    for annotation in dashboard["annotations"]["list"]:
        refs.append((f"annotation {annotation['name']!r}", annotation["datasource"]))
    return refs


# --- InfluxQL -------------------------------------------------------------------------------

INFLUXQL_WORDS = frozenset({
    "select", "from", "where", "and", "or", "group", "by", "fill", "none", "null",
    "previous", "linear", "order", "asc", "desc", "limit", "slimit", "offset", "soffset",
    "tz", "as", "time", "show", "tag", "values", "with", "key",
})
# Grafana's own variables in an InfluxQL query; every other one is the dashboard's.
GRAFANA_BUILTINS = frozenset({"timeFilter", "__interval"})


def _quoted(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def influxql_problems(query: str) -> list[str]:
    """What an InfluxQL query names that the pipeline does not write."""
    text = re.sub(r"(=~|!~)\s*/(?:[^/\\]|\\.)*/", r"\1 ''", query)  # regex literals
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)  # string literals
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)  # Grafana variables
    source = re.search(r'\bFROM\s+((?:"[^"]+"|[\w]+)(?:\.(?:"[^"]+"|[\w]+))*)', text, re.I)
    if source is None:
        return ["the query has no FROM clause"]
    measurement = source.group(1).split(".")[-1].strip('"')
    if measurement not in SCHEMA:
        return [f"unknown measurement {measurement!r}"]
    text = text[: source.start()] + text[source.end():]
    text = re.sub(r'\bAS\s+(?:"[^"]+"|\w+)', "", text, flags=re.I)
    names = set(_quoted(text))
    bare = re.sub(r'"[^"]*"', "", text)
    names |= {
        word
        for word in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\b(?!\s*\()", bare)
        if word.lower() not in INFLUXQL_WORDS
    }
    known = SCHEMA[measurement].tags | SCHEMA[measurement].fields | {"time"}
    return [f"unknown tag or field {n!r}" for n in sorted(names - known)]


# --- PromQL ---------------------------------------------------------------------------------

PROMQL_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def promql_problems(expr: str) -> list[str]:
    """Metrics and labels a PromQL expression (or Grafana label_values()) uses that the
    collector does not export."""
    labels: set[str] = set()
    call = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", expr, re.S)
    if call:
        expr = call.group(1)
        labels.add(call.group(2))
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for clause in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text
    ):
        labels |= set(re.findall(r"[A-Za-z_]\w*", clause))
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    metrics = {
        name
        for name, call_paren in re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text)
        if not call_paren and name.lower() not in PROMQL_WORDS
    }
    if not metrics:
        return ["the expression names no metric"]
    known = {**EXPORTED, **PROMETHEUS_SERIES}
    problems = [f"unknown metric {m!r}" for m in sorted(metrics - known.keys())]
    allowed = TARGET_LABELS.union(*(known[m] for m in metrics if m in known))
    problems += [f"unknown label {label!r}" for label in sorted(labels - allowed)]
    return problems


def query_problems(query: Query) -> list[str]:
    check = {"influxql": influxql_problems, "promql": promql_problems}
    return check[language(query.datasource_uid)](query.text)


ALL_QUERIES = [q for path in DASHBOARD_FILES for q in dashboard_queries(path)]


# --- the checker itself can fail ------------------------------------------------------------


def test_influxql_checker_rejects_names_the_pipeline_does_not_write() -> None:
    good = (
        'SELECT last("kwh_per_t") AS "x" FROM "energy_intensity" WHERE "site" = \'$site\' '
        'AND "line" =~ /^$line$/ AND $timeFilter GROUP BY time($__interval), "line" fill(none)'
    )
    assert influxql_problems(good) == []
    assert influxql_problems(good.replace('"kwh_per_t"', '"kwh"')) == [
        "unknown tag or field 'kwh'"
    ]
    assert influxql_problems(good.replace('"line" fill', "meter fill")) == [
        "unknown tag or field 'meter'"
    ]
    assert influxql_problems(good.replace('"energy_intensity"', '"db"."rp"."energy"')) == [
        "unknown measurement 'energy'"
    ]
    tags = 'SHOW TAG VALUES FROM "energy_intensity" WITH KEY = "line" WHERE "site" =~ /^a$/'
    assert influxql_problems(tags) == []
    assert influxql_problems(tags.replace('"line"', '"plant"')) == [
        "unknown tag or field 'plant'"
    ]


def test_influxql_filler_escapes_and_joins_values_as_grafana_does() -> None:
    query = ('SELECT last("x") FROM "m" WHERE "site" =~ /^${site:regex}$/ AND "line" =~ '
             '/${lines:raw}/ AND "line" =~ /^$line$/ AND $timeFilter GROUP BY time($__interval)')
    filled = fill_influxql(query, {"site": "Plant A.1 (north)", "lines": "^eaf|^EAF",
                                   "line": ["eaf 2", "k/1"]},
                           time_filter="time >= 1ms and time <= 2ms", interval="1m")
    assert filled == (
        'SELECT last("x") FROM "m" WHERE "site" =~ /^Plant A\\.1 \\(north\\)$/ AND '
        '"line" =~ /^eaf|^EAF/ AND "line" =~ /^(eaf 2|k\\/1)$/ AND '
        'time >= 1ms and time <= 2ms GROUP BY time(1m)'
    )
    with pytest.raises(KeyError):
        fill_influxql("SELECT * FROM m WHERE a =~ /$nope/", {}, time_filter="", interval="")


def test_promql_checker_rejects_metrics_and_labels_the_collector_does_not_export() -> None:
    good = (
        'histogram_quantile(0.99, sum by (le) (rate(wattline_end_to_end_latency_seconds_bucket'
        '{instance=~"$instance"}[$__rate_interval]))) / 1e-3'
    )
    assert promql_problems(good) == []
    assert promql_problems(good.replace("latency_seconds", "latency_ms")) == [
        "unknown metric 'wattline_end_to_end_latency_ms_bucket'",
        "unknown label 'le'",
    ]
    # A counter is exposed with _total only.
    assert promql_problems("rate(wattline_messages_received[5m])") == [
        "unknown metric 'wattline_messages_received'"
    ]
    assert promql_problems('sum by (topic) (wattline_messages_received_total{reason="x"})') == [
        "unknown label 'reason'",
        "unknown label 'topic'",
    ]
    assert promql_problems("label_values(wattline_mqtt_connected, site)") == [
        "unknown label 'site'"
    ]


# --- the dashboards -------------------------------------------------------------------------


def test_the_three_dashboards_are_there_as_valid_json_with_unique_uids() -> None:
    assert {p.stem for p in DASHBOARD_FILES} >= {
        "plant-overview", "line-detail", "collector-health"
    }
    dashboards = [load_dashboard(p) for p in DASHBOARD_FILES]
    uids = [d["uid"] for d in dashboards]
    assert len(set(uids)) == len(uids), f"dashboard uids repeat: {uids}"
    titles = [d["title"] for d in dashboards]
    assert len(set(titles)) == len(titles), f"dashboard titles repeat: {titles}"
    for d in dashboards:
        assert d["schemaVersion"] >= 36
        assert "id" not in d or d["id"] is None, "provisioned dashboards must not carry an id"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_panels_have_unique_ids_and_fit_the_grid(path: Path) -> None:
    panels = all_panels(load_dashboard(path)["panels"])
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), f"panel ids repeat: {ids}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']!r} is wider than the grid"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_has_site_line_and_window_variables(path: Path) -> None:
    names = {v["name"] for v in load_dashboard(path)["templating"]["list"]}
    assert {"site", "line", "window"} <= names


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_data_source_a_dashboard_uses_is_provisioned(path: Path) -> None:
    provisioned = provisioned_datasources()
    for where, ref in datasource_refs(load_dashboard(path)):
        assert ref["uid"] in provisioned, f"{where}: data source {ref['uid']!r} not provisioned"
        assert ref["type"] == provisioned[ref["uid"]]["type"], f"{where}: wrong type"


def test_dashboards_query_influxdb_in_influxql_only_and_prometheus() -> None:
    """InfluxQL runs on InfluxDB 1.x, on 2.x through a DBRP mapping and on 3.x; Flux
    on 2.x alone, so no panel, variable or annotation may need it."""
    languages = {language(q.datasource_uid) for q in ALL_QUERIES}
    assert languages == {"influxql", "promql"}
    assert {language(uid) for uid in provisioned_datasources()} == {"influxql", "promql"}


@pytest.mark.parametrize(
    "query", [q for q in ALL_QUERIES if language(q.datasource_uid) == "influxql"],
    ids=lambda q: q.id)
def test_influxql_query_matches_variables_as_escaped_regular_expressions(query: Query) -> None:
    """A dashboard variable sits inside a /regex/ with an explicit :regex (or :raw for
    the product patterns): Grafana regex-escapes what the InfluxQL source fills in, which
    is right inside /.../ and wrong inside a '...' string (a site named "a.b" would
    become 'a\\.b'), and the explicit format keeps it so in every Grafana version."""
    regexes = re.findall(r"=~\s*/((?:[^/\\]|\\.)*)/", query.text)
    outside = re.sub(r"=~\s*/(?:[^/\\]|\\.)*/", "", query.text)
    inside = re.findall(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", " ".join(regexes))
    assert inside or query.where == "$site", "the query filters on no variable"
    for name, fmt, bare in inside:
        assert not bare and fmt in {"regex", "raw"}, f"${{{name or bare}}} without :regex"
    stray = set(re.findall(r"\$\{?(\w+)", outside)) - GRAFANA_BUILTINS
    assert not stray, f"variables outside a regular expression: {sorted(stray)}"
    if not query.text.startswith("SHOW"):
        assert "$timeFilter" in outside, "the query is not limited to the dashboard's time"


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda q: q.id)
def test_query_names_only_what_the_pipeline_writes_or_exports(query: Query) -> None:
    assert query_problems(query) == [], query.text


def test_prometheus_expressions_parse_with_promtool(tmp_path: Path) -> None:
    try:
        promtool = find_binary("promtool")
    except ComponentMissing as err:
        missing_component(err)
    exprs = [
        q.text for q in ALL_QUERIES
        if language(q.datasource_uid) == "promql" and not q.text.startswith("label_values(")
    ]
    assert exprs
    # Grafana's variables, as Grafana would fill them in.
    filled = [
        re.sub(r"\$\{?\w+\}?", ".*",
               expr.replace("$__rate_interval", "1m").replace("$__range", "6h"))
        for expr in exprs
    ]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:expr{i}", "expr": expr} for i, expr in enumerate(filled)
    ]}]}
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_overview_shows_every_product_against_its_national_levels() -> None:
    """Each per-product panel's thresholds are the benchmark and baseline of
    contract/data/energy.yaml, on the field in that product's unit, and it says so."""
    levels = load_reference().levels
    field_of_unit = {"kgce/t": "kgce_per_t", "kWh/t": "kwh_per_t"}
    overview = load_dashboard(DASHBOARD_DIR / "plant-overview.json")
    seen: set[str] = set()
    for panel in all_panels(overview["panels"]):
        named = re.search(r"\(([a-z_]+)\)", panel["title"])
        if not named or named.group(1) not in levels:
            continue
        product = levels[named.group(1)]
        seen.add(product.product)
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps[1:]] == [product.benchmark, product.baseline]
        fields = {f for t in panel["targets"]
                  for f in re.findall(r'\bSELECT\s+last\("([^"]+)"\)', t["query"])}
        assert fields == {field_of_unit[product.unit]}
        # Its lines are the ones its own pattern variable names.
        (lines_var,) = set(re.findall(r"`\$(\w+_lines)`", panel["description"]))
        assert all(f'"line" =~ /${{{lines_var}:raw}}/' in t["query"] for t in panel["targets"])
        assert "contract/data/energy.yaml" in panel["description"]
        assert product.source in panel["description"]
    assert seen == {"eaf_steel", "cement_clinker", "aluminium_liquid"}


def test_line_detail_shows_energy_alerts_as_annotations() -> None:
    detail = load_dashboard(DASHBOARD_DIR / "line-detail.json")
    (alerts,) = detail["annotations"]["list"]
    target = alerts["target"]
    assert re.search(r'\bFROM "energy_alert"', target["query"])
    # The message already says the value, threshold and whether the alert started or
    # ended (docs/formats.md); the rule becomes the annotation's tag.
    assert (target["textColumn"], target["tagsColumn"]) == ("message", "rule")
    assert re.match(r'SELECT "message", "rule" FROM', target["query"])
    assert "yet" not in json.dumps(detail), "the dashboard still says alerts are to come"


def test_datasources_take_their_settings_from_the_environment() -> None:
    """No organisation, bucket, URL or token is written into the provisioning file."""
    text = DATASOURCES_FILE.read_text(encoding="utf-8")
    sources = provisioned_datasources()
    influxql = sources["wattline-influx-influxql"]
    assert influxql["isDefault"] is True
    assert influxql["jsonData"]["dbName"] == "${INFLUX_BUCKET}"
    assert influxql["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influxql["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"
    assert {ds["url"] for ds in sources.values()} == {"${INFLUX_URL}", "${PROMETHEUS_URL}"}
    assert "dbrp" in text.lower(), "the InfluxQL source should say how the DBRP mapping is made"
