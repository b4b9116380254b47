"""deploy/prometheus: the scrape config, alert rules and Alertmanager route, checked by the
real tools (promtool, amtool), and the rules' metric names checked against what the
collector exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import missing_component
from tests.processes import ComponentMissing, find_binary
from wattline.ingest.metrics import CollectorMetrics

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _tool(name: str) -> str:
    try:
        return find_binary(name)
    except ComponentMissing as err:
        missing_component(err)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_scrape_config_is_valid_for_promtool() -> None:
    _run(_tool("promtool"), "check", "config", "prometheus.yml")


def test_alert_rules_are_valid_for_promtool() -> None:
    _run(_tool("promtool"), "check", "rules", "wattline.rules.yml")


def test_alert_rule_unit_tests_pass() -> None:
    done = _run(_tool("promtool"), "test", "rules", "wattline.rules.test.yml")
    assert "SUCCESS" in done.stdout + done.stderr


def test_alertmanager_route_example_is_valid_for_amtool() -> None:
    _run(_tool("amtool"), "check-config", "alertmanager.yml")


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_every_metric_the_rules_use_is_exported_by_the_collector() -> None:
    rules = (PROMETHEUS_DIR / "wattline.rules.yml").read_text()
    used = set(re.findall(r"\bwattline_[a-z0-9_]+", rules))
    assert used, "the rules should use wattline metrics"
    missing = used - _exported_names()
    assert not missing, f"rules use metrics the collector does not export: {sorted(missing)}"


@pytest.mark.parametrize("alert", ["WattlineEnergySpike", "WattlineStaleLine",
                                   "WattlineAboveNationalBaseline",
                                   "WattlineAboveNationalBenchmark", "WattlinePowerSurge",
                                   "WattlineCollectorDown", "WattlineSinkWriteErrors",
                                   "WattlinePayloadErrorRate"])
def test_every_alert_has_a_unit_test(alert: str) -> None:
    tests = (PROMETHEUS_DIR / "wattline.rules.test.yml").read_text()
    assert f"alertname: {alert}" in tests


def _routed_to(alertname: str) -> str:
    done = _run(_tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml",
                f"alertname={alertname}", "site=plant", "line=line-1")
    return done.stdout.strip()


def _rules_by_group() -> dict[str, list[str]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "wattline.rules.yml").read_text())
    return {g["name"]: [r["alert"] for r in g["rules"]] for g in doc["groups"]}


def test_energy_alerts_reach_the_energy_team_and_collector_health_operations() -> None:
    groups = _rules_by_group()
    energy = [*groups["wattline-energy-alerts"], "WattlineEnergySpike"]
    assert len(energy) >= 4
    for name in energy:
        assert _routed_to(name) == "energy-team", name
    for name in groups["wattline-collector"]:
        assert _routed_to(name) == "operations", name
