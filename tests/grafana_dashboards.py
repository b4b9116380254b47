"""Reading deploy/grafana's dashboards and filling in their queries as Grafana would.

Shared by the static checks (tests/deploy/test_deploy_grafana.py) and the run of every
InfluxQL query against a real InfluxDB 1.x (tests/e2e/test_dashboards_influxql.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "wattline.yml"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str
    datasource_uid: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.where}"


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """The provisioned data sources by uid."""
    config = yaml.safe_load(DATASOURCES_FILE.read_text(encoding="utf-8"))
    return {ds["uid"]: ds for ds in config["datasources"]}


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panels, including those inside (collapsed) rows."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


def dashboard_queries(path: Path) -> list[Query]:
    """Every query text of one dashboard (panels, template variables, annotations),
    with the uid of the data source it goes to."""
    dashboard = load_dashboard(path)
    name = path.stem
    queries = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            uid = target.get("datasource", panel.get("datasource"))["uid"]
            text = target.get("expr") or target.get("query")
            queries.append(Query(name, f"{panel['title']}/{target['refId']}", uid, text))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            queries.append(Query(name, f"${var['name']}", var["datasource"]["uid"], text))
    for annotation in dashboard["annotations"]["list"]:
        queries.append(Query(name, f"annotation {annotation['name']}",
                             annotation["datasource"]["uid"], annotation["target"]["query"]))
    return queries


def language(uid: str) -> str:
    """flux, influxql or promql: what the provisioned data source ``uid`` speaks."""
    ds = provisioned_datasources()[uid]
    if ds["type"] == "prometheus":
        return "promql"
    return "flux" if ds["jsonData"].get("version") == "Flux" else "influxql"


# --- filling in an InfluxQL query -----------------------------------------------------------

# Grafana's variable syntaxes: $name, [[name:format]], ${name.path:format}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)
# The characters Grafana's regex format puts a backslash before.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def grafana_regex(value: str | Sequence[str]) -> str:
    """Grafana's ``regex`` format: each value regex-escaped, several as ``(a|b)``."""
    values = [value] if isinstance(value, str) else list(value)
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def fill_influxql(
    query: str,
    variables: Mapping[str, str | Sequence[str]],
    *,
    time_filter: str,
    interval: str,
) -> str:
    """``query`` as Grafana's InfluxDB data source sends it.

    ``$timeFilter`` and ``$__interval`` become ``time_filter`` and ``interval``; a
    dashboard variable is formatted as its ``:format`` says, or else with ``regex``,
    the format the InfluxQL data source asks for (``raw`` keeps the value; several
    values join with commas). A variable the mapping lacks raises ``KeyError``, as a
    query naming a variable the dashboard does not have would go out unfilled.
    """
    builtins = {"timeFilter": time_filter, "__interval": interval}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6) or "regex"
        if name in builtins:
            return builtins[name]
        value = variables[name]
        if fmt == "raw":
            return value if isinstance(value, str) else ",".join(value)
        if fmt == "regex":
            return grafana_regex(value)
        raise ValueError(f"format {fmt!r} of ${name} is not one these dashboards use")

    return _VARIABLE.sub(fill, query)
