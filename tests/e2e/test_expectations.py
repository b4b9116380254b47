"""simulate --truth: the expectations file beside a run (intensities and injected alerts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.processes import Mosquitto
from wattline.ingest.app.cli import main
from wattline.simulators.events import EnergySpike
from wattline.simulators.expectations import write_expectations
from wattline.simulators.truth import expected_intensity

START_MS = 1_732_406_400_000


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_file_holds_every_tick_and_window_and_each_spike_with_its_bounds(
        tmp_path: Path) -> None:
    spike = EnergySpike("kiln-1", start_s=1800, duration_s=900, factor=3.0)
    path = tmp_path / "truth.jsonl"
    n_rows, n_alerts = write_expectations(
        path, ["kiln-1", "eaf-1"], site="s", start_ms=START_MS, plant_s=3600, rate_s=10,
        seed=1, events=[spike], windows=("5m", "1h"), emit_every_s=10, alert_for=3)
    got = rows(path)
    intensity = [r for r in got if r["kind"] == "intensity"]
    every_alert = [r for r in got if r["kind"] == "expected_alert"]
    assert (len(intensity), len(every_alert)) == (n_rows, n_alerts)
    alerts = [r for r in every_alert if r["rule"] == "spike"]
    # The kiln (~110 kgce/t) is above the clinker benchmark (100) from the start, and
    # above the baseline (117) while the spike triples its energy: level alerts too.
    assert {r["rule"] for r in every_alert} == {"spike", "above_benchmark", "above_baseline"}
    assert {(r["line"], r["window"]) for r in intensity} == {
        (line, w) for line in ("kiln-1", "eaf-1") for w in ("5m", "1h")}
    assert alerts == [{"kind": "expected_alert", "rule": "spike", "site": "s",
                       "line": "kiln-1",
                       "start_after_ms": START_MS + 1_800_000,
                       "start_by_ms": START_MS + 1_800_000 + 300_000 + 40_000,
                       "end_after_ms": START_MS + 2_700_000,
                       "end_by_ms": START_MS + 2_700_000 + 300_000 + 40_000}]
    during = [r for r in intensity if r["line"] == "kiln-1" and r["window"] == "5m"
              and START_MS + 2_200_000 <= r["time_ms"] <= START_MS + 2_600_000]
    before = [r for r in intensity if r["line"] == "kiln-1" and r["window"] == "5m"
              and START_MS + 1_000_000 <= r["time_ms"] <= START_MS + 1_700_000]
    # The spike triples the energy per tonne.
    assert min(r["kgce_per_t"] for r in during) > 2.5 * max(r["kgce_per_t"] for r in before)


def test_without_spikes_the_truth_matches_expected_intensity(tmp_path: Path) -> None:
    from wattline.simulators.publisher import published_series

    path = tmp_path / "truth.jsonl"
    write_expectations(path, ["potline-1"], site="s", start_ms=START_MS, plant_s=600,
                       rate_s=10, seed=2, windows=("1m",))
    series = published_series(["potline-1"], site="s", start_ms=START_MS, plant_s=600,
                              rate_s=10, seed=2)
    want = expected_intensity(series, windows=("1m",))
    got = [r for r in rows(path) if r["kind"] == "intensity"]
    assert [(r["time_ms"], r["kgce_per_t"]) for r in got] == [
        (w.time_ms, w.kgce_per_t) for w in want]


@pytest.mark.e2e
def test_simulate_writes_its_truth_beside_a_published_run(
        mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    result = CliRunner().invoke(main, [
        "simulate", "--mqtt-url", mosquitto.url, "--lines", "kiln-1", "--site", site,
        "--duration", "2", "--speed", "1200", "--spike", "kiln-1@10m+15mx2",
        "--truth", str(path), "--truth-windows", "5m,1h"])
    assert result.exit_code == 0, result.output
    assert "expected alert(s)" in result.output
    got = rows(path)
    assert sum(r["kind"] == "expected_alert" and r["rule"] == "spike" for r in got) == 1
    assert {r["site"] for r in got} == {site}


def test_an_idle_period_stops_production_and_leaves_standby_energy(tmp_path: Path) -> None:
    from wattline.simulators.events import IdlePeriod, parse_idle

    assert parse_idle("kiln-1@30m+20m") == IdlePeriod("kiln-1", 1800, 1200)
    path = tmp_path / "truth.jsonl"
    write_expectations(path, ["kiln-1"], site="s", start_ms=START_MS, plant_s=3600, rate_s=10,
                       seed=1, events=[parse_idle("kiln-1@30m+20m")], windows=("5m",))
    got = rows(path)
    idle = [r for r in got if r["kind"] == "intensity"
            and START_MS + 2_100_000 <= r["time_ms"] <= START_MS + 3_000_000]
    busy = [r for r in got if r["kind"] == "intensity"
            and START_MS + 900_000 <= r["time_ms"] <= START_MS + 1_700_000]
    assert idle and all(r["production_t"] == 0 and r["kgce_per_t"] is None for r in idle)
    standby = max(r["energy_kgce"] for r in idle) / min(r["energy_kgce"] for r in busy)
    assert 0.05 < standby < 0.15  # a tenth of the draw
    assert [r for r in got if r["kind"] == "expected_no_alert"] == [
        {"kind": "expected_no_alert", "rule": "spike", "site": "s", "line": "kiln-1",
         "from_ms": START_MS + 1_800_000, "to_ms": START_MS + 3_000_000}]
