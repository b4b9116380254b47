"""Every InfluxQL query of the dashboards, run against a real InfluxDB 1.6.7.

The points are written with wattline's own line-protocol writer (the bytes the daemon
sends), POSTed to the v1 ``/write`` API with ``precision=ms``. Each panel, template
variable and annotation query is filled in as Grafana fills it in (``$timeFilter`` as
an absolute range in ms, ``$__interval``, the dashboard's variables with the format
they ask for) and sent to ``/query`` the way the provisioned InfluxQL data source sends
it (POST, its database, its Authorization header, which an InfluxDB 1.x without
authentication ignores); the rows it returns are compared with what the
panel should show, worked out here from the points written: the right series (site,
line, window), the right times and the values exactly as written.

Names are chosen to catch a careless query: the site ``Plant A.1`` has a neighbour
``Plant A21`` that an unescaped ``.`` would also match, one line name has a space, and
points just outside the time range are written too.
"""

from __future__ import annotations

import json
import random
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from tests.grafana_dashboards import (
    DASHBOARD_DIR,
    Query,
    dashboard_queries,
    fill_influxql,
    language,
    load_dashboard,
    provisioned_datasources,
)
from tests.processes import InfluxDB1
from wattline.contract.schemas import ALERT_SCHEMA, INTENSITY_SCHEMA
from wattline.ingest.sinks.line_protocol import encode_alerts, encode_intensity

pytestmark = pytest.mark.e2e

DB = "energy"  # the bucket's name, as the compose stack's DBRP mapping names the database
# What Grafana's environment gives the provisioning file.
GRAFANA_ENV = {"INFLUX_BUCKET": DB, "INFLUX_TOKEN": "a-read-only-token"}
SITE, NEIGHBOUR = "Plant A.1", "Plant A21"
LINES = {SITE: ("eaf-1", "eaf 2", "kiln-1", "potline-1", "rolling mill"),
         NEIGHBOUR: ("eaf-1", "eaf 2", "kiln-9")}
WINDOWS = ("15m", "1h", "24h")
START_MS = 1_764_547_200_000  # 2025-12-01 00:00 UTC: the dashboards' time range ...
END_MS = START_MS + 6 * 60_000  # ... six minutes long
TICK_MS = 10_000
INTERVAL, INTERVAL_MS = "1m", 60_000
TIME_FILTER = f"time >= {START_MS}ms and time <= {END_MS}ms"
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")

# What a user picks: one line and two of its windows on the line detail; one window and
# every line (the variable's All, that is every value its query lists) or some of them
# on the overview.
LINE_DETAIL = {"site": SITE, "line": "eaf 2", "window": ["15m", "24h"]}
OVERVIEW_WINDOW = "24h"
ALL = "All"


# --- the points written ---------------------------------------------------------------------


def intensity_rows() -> list[dict[str, Any]]:
    """Ticks from a minute before the range to a minute after it, every line and window.

    About one row in five is idle (no production, so no intensities); the newest
    tick in range of the line detail's 15m window is idle, so "latest" and "last
    intensity" differ there; and kiln-1 is idle for the whole third minute, so its
    panels have a gap there.
    """
    rng = random.Random(17)
    rows = []
    for site, lines in LINES.items():
        for line in lines:
            for window in WINDOWS:
                for t in range(START_MS - 60_000, END_MS + 60_000 + 1, TICK_MS):
                    energy = rng.uniform(100, 9000)
                    electricity = rng.uniform(50, 5000)
                    production = rng.uniform(1, 120) if rng.random() > 0.2 else 0.0
                    if (site, line, window, t) == (SITE, "eaf 2", "15m", END_MS):
                        production = 0.0
                    if line == "kiln-1" and t // 60_000 == START_MS // 60_000 + 2:
                        production = 0.0
                    idle = production == 0.0
                    rows.append({
                        "site": site, "line": line, "window": window, "time_ms": t,
                        "energy_kgce": energy, "electricity_kwh": electricity,
                        "production_t": production,
                        "kgce_per_t": None if idle else energy / production,
                        "kwh_per_t": None if idle else electricity / production,
                    })
    return rows


def alert_rows() -> list[dict[str, Any]]:
    def alert(site: str, line: str, rule: str, t: int, state: int, value: float | None,
              threshold: float | None, message: str) -> dict[str, Any]:
        return {"site": site, "line": line, "rule": rule, "time_ms": t, "state": state,
                "value": value, "threshold": threshold, "message": message}

    spike = 'short intensity {} kgce/t {} the spike limit over the long intensity (90 kgce/t)'
    return [
        alert(SITE, "eaf 2", "spike", START_MS + 20_000, 1, 95.25, 90.0,
              spike.format("95.25", "above")),
        alert(SITE, "eaf 2", "spike", START_MS + 150_000, 0, 88.5, 90.0,
              spike.format("88.5", "back under")),
        alert(SITE, "eaf 2", "above_baseline", START_MS + 200_000, 1, 73.125, 72.0,
              'level intensity 73.125 kgce/t above the national baseline level (72 kgce/t)'),
        alert(SITE, "eaf 2", "above_baseline", START_MS + 300_000, 0, None, None,
              'level intensity: none (line idle); alert ends'),
        # Not in the panel: before the range, another line, the neighbouring site.
        alert(SITE, "eaf 2", "spike", START_MS - 30_000, 1, 99.0, 90.0, "before the range"),
        alert(SITE, "eaf-1", "spike", START_MS + 40_000, 1, 97.0, 90.0, "another line"),
        alert(NEIGHBOUR, "eaf 2", "spike", START_MS + 60_000, 1, 98.0, 90.0, "another site"),
    ]


@dataclass(frozen=True)
class Written:
    server: InfluxDB1
    intensity: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


@pytest.fixture()
def written(make_influxdb1: Callable[..., InfluxDB1]) -> Written:
    server = make_influxdb1(databases=(DB,))
    intensity, alerts = intensity_rows(), alert_rows()
    body = encode_intensity(pa.Table.from_pylist(intensity, schema=INTENSITY_SCHEMA))
    body += encode_alerts(pa.Table.from_pylist(alerts, schema=ALERT_SCHEMA))
    status, reply = server.write(body.decode(), DB, precision="ms")
    assert status == 204, reply
    return Written(server, intensity, alerts)


# --- what each panel should show ------------------------------------------------------------


def in_range(rows: list[dict[str, Any]], **match: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Rows in the time range whose tags pass every test in ``match``."""
    return [r for r in rows if START_MS <= r["time_ms"] <= END_MS
            and all(test(r[tag]) for tag, test in match.items())]


def last_per_interval(rows: list[dict[str, Any]], field: str, by: str) -> set[tuple]:
    """``SELECT last(field) ... GROUP BY time($__interval), by fill(none)``: per series
    and interval the newest value of the field; intervals without one are left out."""
    newest: dict[tuple, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["time_ms"]):
        if r[field] is not None:
            newest[(r[by], r["time_ms"] // INTERVAL_MS * INTERVAL_MS)] = r
    return {(tag, start, r[field]) for (tag, start), r in newest.items()}


def last_per_series(rows: list[dict[str, Any]], field: str, by: str) -> set[tuple]:
    """``SELECT last(field) ... GROUP BY by``: the newest value and its time per series."""
    newest = {r[by]: r for r in sorted(rows, key=lambda r: r["time_ms"])
              if r[field] is not None}
    return {(tag, r["time_ms"], r[field]) for tag, r in newest.items()}


def newest_row_per_series(rows: list[dict[str, Any]], by: str) -> set[tuple]:
    """``SELECT fields ... GROUP BY by ORDER BY time DESC LIMIT 1``: the newest tick of
    each series, its intensities empty where that tick was idle."""
    newest = {r[by]: r for r in sorted(rows, key=lambda r: r["time_ms"])}
    return {(tag, r["time_ms"], *(r[f] for f in FIELDS)) for tag, r in newest.items()}


def answered_by_interval(rows: list[dict[str, Any]], by: str) -> set[tuple]:
    return {(r[by], r["time"], r["last"]) for r in rows}


def answered_latest(rows: list[dict[str, Any]], by: str) -> set[tuple]:
    return {(r[by], r["time"], *(r[f] for f in FIELDS)) for r in rows}


def one_of(values: Sequence[str]) -> Callable[[str], bool]:
    return lambda v: v in values


# --- the test -------------------------------------------------------------------------------


def influxql_queries(dashboard: str) -> dict[str, Query]:
    queries = dashboard_queries(DASHBOARD_DIR / f"{dashboard}.json")
    return {q.where: q for q in queries if language(q.datasource_uid) == "influxql"}


def run(server: InfluxDB1, query: Query, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """The query filled in and sent as the provisioned data source sends it; its rows,
    each with the tags of its series."""
    source = provisioned_datasources()[query.datasource_uid]
    settings, secrets = source["jsonData"], source["secureJsonData"]

    def from_env(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: GRAFANA_ENV[m.group(1)], value)

    assert settings["httpMode"] == "POST"
    form = {"q": fill_influxql(query.text, variables, time_filter=TIME_FILTER,
                               interval=INTERVAL),
            "db": from_env(settings["dbName"]), "epoch": "ms"}
    request = urllib.request.Request(
        f"{server.url}/query", data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={settings["httpHeaderName1"]: from_env(secrets["httpHeaderValue1"])})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    rows = []
    for result in answer["results"]:
        assert "error" not in result, f"{query.id}: {result['error']}"
        for series in result.get("series", []):
            for values in series["values"]:
                rows.append({**series.get("tags", {}),
                             **dict(zip(series["columns"], values, strict=True))})
    return rows


def tag_values(rows: list[dict[str, Any]]) -> list[str]:
    return [r["value"] for r in rows]


def textbox_defaults(dashboard: str) -> dict[str, str]:
    variables = load_dashboard(DASHBOARD_DIR / f"{dashboard}.json")["templating"]["list"]
    return {v["name"]: v["current"]["value"] for v in variables if v["type"] == "textbox"}


def test_line_detail_queries_return_the_chosen_lines_windows_as_written(
    written: Written,
) -> None:
    queries = influxql_queries("line-detail")
    server, chosen = written.server, LINE_DETAIL

    assert tag_values(run(server, queries.pop("$site"), {})) == [SITE, NEIGHBOUR]
    assert tag_values(run(server, queries.pop("$line"), chosen)) == sorted(LINES[SITE])
    assert tag_values(run(server, queries.pop("$window"), chosen)) == sorted(WINDOWS)

    rows = in_range(written.intensity, site=one_of([SITE]), line=one_of([chosen["line"]]),
                    window=one_of(chosen["window"]))
    panels = {"Intensity, kgce/t/A": "kgce_per_t", "Electricity intensity, kWh/t/A": "kwh_per_t",
              "Energy, kgce per window/A": "energy_kgce",
              "Electricity, kWh per window/A": "electricity_kwh",
              "Production, t per window/A": "production_t"}
    for where, field in panels.items():
        expected = last_per_interval(rows, field, "window")
        assert {w for w, _, _ in expected} == set(chosen["window"])
        assert answered_by_interval(run(server, queries.pop(where), chosen), "window") == (
            expected), where

    latest = answered_latest(run(server, queries.pop("Latest tick per window/A"), chosen),
                             "window")
    assert latest == newest_row_per_series(rows, "window")
    # The newest 15m tick is idle: its intensities are empty, not an older tick's.
    intensities = {(w, t): (kgce, kwh) for w, t, _e, _el, _p, kgce, kwh in latest}
    assert intensities[("15m", END_MS)] == (None, None)

    alerts = run(server, queries.pop("annotation Energy alerts (energy_alert)"), chosen)
    expected_alerts = in_range(written.alerts, site=one_of([SITE]),
                               line=one_of([chosen["line"]]))
    assert len(expected_alerts) == 4
    assert [(a["time"], a["message"], a["rule"]) for a in alerts] == [
        (a["time_ms"], a["message"], a["rule"]) for a in expected_alerts]

    assert not queries, f"queries this test does not check: {sorted(queries)}"


@pytest.mark.parametrize("picked", [ALL, ["eaf 2", "kiln-1", "rolling mill"]],
                         ids=["all lines", "some lines"])
def test_plant_overview_queries_return_each_products_lines_as_written(
    written: Written, picked: str | list[str],
) -> None:
    queries = influxql_queries("plant-overview")
    server = written.server

    assert tag_values(run(server, queries.pop("$site"), {})) == [SITE, NEIGHBOUR]
    lines = tag_values(run(server, queries.pop("$line"), {"site": SITE}))
    assert lines == sorted(LINES[SITE])
    windows = tag_values(run(server, queries.pop("$window"), {"site": SITE}))
    assert windows == sorted(WINDOWS)
    # The line variable's default is All: every value its query returned.
    picked = lines if picked == ALL else picked
    chosen = {"site": SITE, "line": picked, "window": OVERVIEW_WINDOW,
              **textbox_defaults("plant-overview")}
    assert chosen["eaf_lines"] == "^eaf"

    rows = in_range(written.intensity, site=one_of([SITE]), line=one_of(picked),
                    window=one_of([OVERVIEW_WINDOW]))
    products = {"EAF steel (eaf_steel)": ("kgce_per_t", "eaf"),
                "Cement clinker (cement_clinker)": ("kgce_per_t", "kiln"),
                "Aluminium liquid (aluminium_liquid)": ("kwh_per_t", "potline")}
    for title, (field, prefix) in products.items():
        unit = "kWh/t" if field == "kwh_per_t" else "kgce/t"
        mine = [r for r in rows if r["line"].startswith(prefix)]
        expected = last_per_interval(mine, field, "line")
        assert {line for line, _, _ in expected} == {
            line for line in picked if line.startswith(prefix)}
        answer = run(server, queries.pop(f"{title}: {unit} per line/A"), chosen)
        assert answered_by_interval(answer, "line") == expected, title
        answer = run(server, queries.pop(f"{title}: latest {unit}/A"), chosen)
        assert {(r["line"], r["time"], r["last"]) for r in answer} == (
            last_per_series(mine, field, "line")), title

    table = run(server, queries.pop("Every line: latest values in the window/A"), chosen)
    assert answered_latest(table, "line") == newest_row_per_series(rows, "line")
    assert {r["line"] for r in table} == set(picked)

    assert not queries, f"queries this test does not check: {sorted(queries)}"
