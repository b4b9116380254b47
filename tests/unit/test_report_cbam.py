"""``wattline report cbam``, run as the user runs it (a subprocess), on small stores of
known day rows: a hand-computed example (figures, units, factors and sources), the CSV
and HTML forms, gaps, an empty period, a line without a CN code, and wrong input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from wattline.ingest.periods_stage import PERIOD_SCHEMA
from wattline.ingest.reports.cbam_report import JSON_KEYS, NOT_COVERED
from wattline.ingest.sinks.parquet_store import ParquetStore

BERLIN = ZoneInfo("Europe/Berlin")
CARBON = ("co2_direct_t", "co2_indirect_t", "co2_per_t")
SCHEMA = pa.schema([*PERIOD_SCHEMA, *(pa.field(n, pa.float64()) for n in CARBON
                                      if n not in PERIOD_SCHEMA.names)])

# The config of the example plant: an EAF whose meters the config describes, a kiln with
# process CO2 per tonne, a potline with process CO2 per unit of net anode, a rolling mill
# without a product and a coke oven whose product is not a CBAM good.
CONFIG = """\
plant_timezone = "Europe/Berlin"

[meters."works/eaf-1/energy/incomer"]
carrier = "electricity"
unit = "kWh"

[meters."works/eaf-1/energy/burner"]
carrier = "natural_gas"
unit = "m3"

[meters."works/kiln-1/energy/coal-feed"]
carrier = "raw_coal"
unit = "kg"

[meters."works/kiln-1/energy/drives"]
carrier = "electricity"

[lines."works/eaf-1"]
product = "eaf_steel"

[lines."works/kiln-1"]
product = "cement_clinker"
process_co2_per_t = 0.5
process_co2_source = "raw meal carbonate balance, lab report 2025-07"

[lines."works/potline-1"]
product = "aluminium_liquid"
process_material = "net anode"
process_material_per_t = 0.40625
process_co2_per_material = 3.5
process_co2_source = "anode consumption and carbon content, 2025 mass balance"

[lines."works/coke-1"]
product = "coke_stamp_charged"
"""

# Per line and day of January 2026: (t, direct tCO2, indirect tCO2). Binary fractions,
# so the sums below are exact.
DAYS = {
    "eaf-1": [(100.0, 4.25, 21.25), (120.0, 4.75, 25.5), (80.0, 3.0, 17.0)],
    "kiln-1": [(1000.0, 300.5, 30.0), (1000.0, 300.5, 30.0), (1000.0, 300.5, 30.0)],
    "potline-1": [(10.0, 0.0, 80.0), (12.0, 0.0, 96.0), (10.0, 0.0, 80.0)],
    "coke-1": [(50.0, 10.0, 1.0)] * 3,
    "mill-1": [(200.0, 1.0, 5.0)] * 3,
}

GRID = {"factor": "grid electricity", "value": 0.5306, "unit": "tCO2/MWh", "scope": 2,
        "source": "MEE/NBS national average electricity CO2 factor for 2023 (CN, 2023)",
        "status": "sourced"}

# Hand-computed: sums of the days above; process CO2 = production x factor; SEE = tCO2/t.
EXPECTED = [
    {"line": "works/eaf-1", "product": "eaf_steel", "cn_code": "7206/7207",
     "from": "2026-01-01", "to": "2026-01-03",
     "production_t": 300.0,            # 100 + 120 + 80
     "co2_direct_t": 12.0,             # 4.25 + 4.75 + 3.0
     "co2_indirect_t": 63.75,          # 21.25 + 25.5 + 17.0
     "see_direct": 0.04,               # 12 / 300
     "see_indirect": 0.2125,           # 63.75 / 300
     "factors": [
         {**GRID, "meters": ["incomer"]},
         {"factor": "natural_gas (combustion)", "value": 0.001994, "unit": "tCO2/m3",
          "scope": 1, "source": "NCV 35,544 kJ/m3 (GB/T 2589) x 56,100 kgCO2/TJ (IPCC 2006 "
          "Vol 2 Table 1.4, natural gas)", "status": "derived", "meters": ["burner"]}]},
    {"line": "works/kiln-1", "product": "cement_clinker", "cn_code": "2523 10 00",
     "from": "2026-01-01", "to": "2026-01-03",
     "production_t": 3000.0,
     "co2_direct_t": 2401.5,           # 3 x 300.5 combustion + 3000 t x 0.5 process
     "co2_indirect_t": 90.0,
     "see_direct": 0.8005,             # 2401.5 / 3000
     "see_indirect": 0.03,             # 90 / 3000
     "factors": [
         {**GRID, "meters": ["drives"]},
         {"factor": "raw_coal (combustion)", "value": 0.001978, "unit": "tCO2/kg",
          "scope": 1, "source": "NCV 20,908 kJ/kg (GB/T 2589) x 94,600 kgCO2/TJ (IPCC 2006 "
          "Table 1.4, other bituminous coal)", "status": "derived", "meters": ["coal-feed"]},
         {"factor": "process CO2 (mass balance)", "value": 0.5, "unit": "tCO2/t product",
          "scope": 1, "source": "raw meal carbonate balance, lab report 2025-07",
          "status": "configured", "meters": None}]},
    {"line": "works/potline-1", "product": "aluminium_liquid", "cn_code": "7601",
     "from": "2026-01-01", "to": "2026-01-03",
     "production_t": 32.0,             # 10 + 12 + 10
     "co2_direct_t": 45.5,             # 32 t x 0.40625 t anode/t x 3.5 tCO2/t anode
     "co2_indirect_t": 256.0,          # 80 + 96 + 80
     "see_direct": 1.421875,           # 45.5 / 32
     "see_indirect": 8.0,              # 256 / 32
     "factors": "every carrier"},      # no meter of the line described: checked apart
]


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=BERLIN).timestamp() * 1000)


def _row(line: str, day: date, figures: tuple[float, float, float], *, final: bool = True,
         carbon: bool = True) -> dict[str, Any]:
    made, direct, indirect = figures
    return {"site": "works", "line": line, "period": "day", "time_ms": _day_ms(day),
            "energy_kgce": 1.0, "electricity_kwh": 1.0, "production_t": made,
            "kgce_per_t": None, "kwh_per_t": None, "final": final, "late_readings": 0,
            "grade": None, "gap_to_benchmark": None,
            "co2_direct_t": direct if carbon else None,
            "co2_indirect_t": indirect if carbon else None,
            "co2_per_t": (direct + indirect) / made if carbon else None}


def _store(path: Path, rows: list[dict[str, Any]]) -> Path:
    store = ParquetStore(path)
    store.open()
    if rows:
        store.write_periods(pa.Table.from_pylist(rows, schema=SCHEMA))
    return path


def _example(tmp_path: Path) -> tuple[Path, Path]:
    rows = [_row(line, date(2026, 1, 1) + timedelta(days=k), figures)
            for line, days in DAYS.items() for k, figures in enumerate(days)]
    rows.append(_row("eaf-1", date(2026, 1, 4), (5.0, 1.0, 1.0), final=False))  # outside
    rows.append(_row("eaf-1", date(2025, 12, 31), (5.0, 1.0, 1.0)))  # outside
    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG)
    return _store(tmp_path / "store", rows), config


def _cbam(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wattline.ingest", "report", "cbam",
                           *map(str, args)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "100"}, check=False)


def _one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_the_hand_computed_example_in_json_figures_units_and_sources_exactly(
        tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    result = _cbam("--store", store, "--config", config, "--from", "2026-01-01", "--to",
                   "2026-01-03", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["units"] == {"production_t": "t", "co2_direct_t": "tCO2e",
                                 "co2_indirect_t": "tCO2e", "see_direct": "tCO2e/t",
                                 "see_indirect": "tCO2e/t"}
    assert document["plant_timezone"] == "Europe/Berlin"
    lines = document["lines"]
    assert all(tuple(line) == JSON_KEYS for line in lines)
    assert lines[:2] == EXPECTED[:2]
    potline = lines[2]
    assert {k: v for k, v in potline.items() if k != "factors"} == {
        k: v for k, v in EXPECTED[2].items() if k != "factors"}
    assert potline["factors"][0] == {**GRID, "meters": None}
    assert potline["factors"][-1] == {
        "factor": "process CO2 of net anode (mass balance)", "value": 1.421875,
        "unit": "tCO2/t product", "scope": 1, "status": "configured", "meters": None,
        "source": "0.40625 t net anode per t product x 3.5 tCO2 per t net anode; anode "
                  "consumption and carbon content, 2025 mass balance"}
    carriers = {f["factor"] for f in potline["factors"][1:-1]}
    assert {"natural_gas (combustion)", "raw_coal (combustion)", "steam (purchased)"} <= carriers
    coverage = {c["line"]: c for c in document["coverage"]}
    assert coverage["works/kiln-1"]["process_co2_t"] == 1500.0
    assert coverage["works/kiln-1"]["combustion_co2_direct_t"] == 901.5
    assert coverage["works/eaf-1"]["process_co2_t"] is None  # not configured: not covered
    assert coverage["works/eaf-1"]["charged_emissions"] == "direct"
    assert coverage["works/potline-1"]["charged_emissions"] == "direct"
    assert coverage["works/kiln-1"]["charged_emissions"] == "direct and indirect"
    assert all(c["counted_days"] == 3 and not c["missing_days"] for c in coverage.values())
    assert document["left_out"] == [
        {"line": "works/coke-1", "reason": "its product 'coke_stamp_charged' has no CN code: "
                                           "it is not a good the CBAM covers"},
        {"line": "works/mill-1", "reason": 'no product configured: set [lines."works/mill-1"] '
                                           "product in the config (--config) to one with a CN "
                                           "code"}]
    assert document["not_covered"] == list(NOT_COVERED)
    assert "warning: works/mill-1 left out" in result.stderr


def test_the_csv_has_a_row_per_line_with_the_same_figures(tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    result = _cbam("--store", store, "--config", config, "--from", "2026-01-01", "--to",
                   "2026-01-03", "--format", "csv", "--line", "works/kiln-1")
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {k: row[k] for k in JSON_KEYS[:-1]} == {
        k: str(v) for k, v in EXPECTED[1].items() if k != "factors"}
    assert row["charged_emissions"] == "direct and indirect"
    assert (row["counted_days"], row["days"], row["gaps"]) == ("3", "3", "")
    assert "process CO2 (mass balance): 0.5 tCO2/t product (scope 1; raw meal carbonate " \
           "balance, lab report 2025-07)" in row["factors"]


def test_the_html_page_is_self_contained_and_says_what_it_does_not_cover(
        tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    out = tmp_path / "q1.html"
    result = _cbam("--store", store, "--config", config, "--from", "2026-01-01", "--to",
                   "2026-01-03", "--out", out)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    for fetched in ("<script", "<link", "<img", "http://", "https://", "@import", "url("):
        assert fetched not in page
    assert "Precursors" in page and "Annex II" in page
    assert "2,401.500" in page and "0.8005" in page and "CN 2523 10 00" in page
    assert "raw meal carbonate balance, lab report 2025-07" in page
    assert "not configured: not covered" in page  # the EAF's process CO2
    assert f"to {out}" in result.stderr


def test_missing_open_and_carbonless_days_are_listed_and_not_counted(tmp_path: Path) -> None:
    day = date(2026, 3, 1)
    rows = [_row("eaf-1", day, (100.0, 4.0, 20.0)),
            # 2 March: nothing; 3 March: provisional only; 4 March: from before carbon
            _row("eaf-1", day + timedelta(days=2), (50.0, 2.0, 10.0), final=False),
            _row("eaf-1", day + timedelta(days=3), (70.0, 0.0, 0.0), carbon=False),
            _row("eaf-1", day + timedelta(days=4), (100.0, 4.0, 20.0))]
    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG)
    store = _store(tmp_path / "store", rows)
    result = _cbam("--store", store, "--config", config, "--from", "2026-03-01", "--to",
                   "2026-03-05", "--format", "json", "--line", "works/eaf-1")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (line,) = document["lines"]
    assert (line["production_t"], line["co2_direct_t"], line["see_direct"]) == (200.0, 8.0,
                                                                              0.04)
    (coverage,) = document["coverage"]
    assert coverage["counted_days"] == 2 and coverage["days"] == 5
    assert coverage["missing_days"] == ["2026-03-02"]
    assert coverage["open_days"] == ["2026-03-03"]
    assert coverage["days_without_carbon"] == ["2026-03-04"]
    assert ("warning: works/eaf-1: 2 of 5 days counted; not counted: 2026-03-02 2026-03-03 "
            "2026-03-04") in result.stderr


def test_the_days_are_plant_days_across_the_clock_change_and_empty_lines_are_gaps(
        tmp_path: Path) -> None:
    # 29 March 2026 is 23 hours long in Berlin; its row starts at 23:00 UTC on the 28th.
    rows = [_row("eaf-1", date(2026, 3, 28) + timedelta(days=k), (10.0, 1.0, 2.0))
            for k in range(3)]
    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG)
    store = _store(tmp_path / "store", rows)
    result = _cbam("--store", store, "--config", config, "--from", "2026-03-29", "--to",
                   "2026-03-29", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    lines = {line["line"]: line for line in document["lines"]}
    assert lines["works/eaf-1"]["production_t"] == 10.0
    assert lines["works/eaf-1"]["co2_indirect_t"] == 2.0
    # The configured lines with nothing in the store that day are there, the day missing.
    for c in document["coverage"]:
        if c["line"] != "works/eaf-1":
            assert (c["counted_days"], c["missing_days"]) == (0, ["2026-03-29"])
            assert lines[c["line"]]["see_direct"] is None


def test_a_period_with_no_final_day_is_one_line_saying_so(tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    error = _one_line_error(_cbam("--store", store, "--config", config, "--from",
                                  "2026-06-01", "--to", "2026-06-30", "--format", "json"))
    assert "no final day with carbon figures from 2026-06-01 to 2026-06-30" in error
    assert "check the dates" in error


def test_a_line_without_a_cn_code_is_refused_with_why(tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    for name, why in (("works/coke-1", "'coke_stamp_charged' has no CN code"),
                      ("works/mill-1", 'no product configured: set [lines."works/mill-1"]')):
        error = _one_line_error(_cbam("--store", store, "--config", config, "--from",
                                      "2026-01-01", "--to", "2026-01-03", "--line", name))
        assert f"line {name} cannot be reported" in error and why in error


def test_without_a_config_no_line_has_a_product_and_the_error_says_so(tmp_path: Path) -> None:
    store, _ = _example(tmp_path)
    error = _one_line_error(_cbam("--store", store, "--from", "2026-01-01", "--to",
                                  "2026-01-03"))
    assert "no line with a CN code to report" in error and "no product configured" in error


def test_a_store_with_ticks_only_or_no_store_is_one_line_with_what_to_do(
        tmp_path: Path) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG)
    empty = _store(tmp_path / "store", [])
    error = _one_line_error(_cbam("--store", empty, "--config", config, "--from",
                                  "2026-01-01", "--to", "2026-01-31"))
    assert "holds no period rows" in error
    error = _one_line_error(_cbam("--store", tmp_path / "nowhere", "--config", config,
                                  "--from", "2026-01-01", "--to", "2026-01-31"))
    assert "no store at" in error and "--store" in error


@pytest.mark.parametrize(("args", "expected"), [
    (("--from", "2026-13-01", "--to", "2026-12-31"), "expected a date YYYY-MM-DD"),
    (("--from", "2026-02-01", "--to", "2026-01-01"), "before"),
    (("--from", "2026-01-01", "--to", "2026-01-31", "--line", "eaf-1"), "SITE/LINE"),
    (("--from", "2026-01-01", "--to", "2026-01-31", "--format", "pdf"), "pdf"),
])
def test_wrong_options_are_one_line_errors_with_status_2(tmp_path: Path, args: tuple[str, ...],
                                                         expected: str) -> None:
    store, config = _example(tmp_path)
    error = _one_line_error(_cbam("--store", store, "--config", config, *args), status=2)
    assert expected in error


def test_a_range_of_days_from_before_carbon_is_refused_saying_so(tmp_path: Path) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(CONFIG)
    store = _store(tmp_path / "store", [_row("eaf-1", date(2026, 1, 1), (10.0, 0.0, 0.0),
                                             carbon=False)])
    error = _one_line_error(_cbam("--store", store, "--config", config, "--from",
                                  "2026-01-01", "--to", "2026-01-01", "--line", "works/eaf-1"))
    assert "have no carbon figures" in error and "before it recorded carbon" in error


def test_a_line_neither_in_the_store_nor_in_the_config_names_the_lines_there(
        tmp_path: Path) -> None:
    store, config = _example(tmp_path)
    error = _one_line_error(_cbam("--store", store, "--config", config, "--from",
                                  "2026-01-01", "--to", "2026-01-03", "--line", "works/eaf-9"))
    assert "no day periods of line 'works/eaf-9'" in error
    assert "works/eaf-1, works/kiln-1" in error


def test_a_meters_measured_factor_or_calorific_value_is_listed_as_its_own(
        tmp_path: Path) -> None:
    store, _ = _example(tmp_path)
    config = tmp_path / "measured.toml"
    config.write_text(CONFIG.replace(
        'carrier = "natural_gas"\nunit = "m3"\n',
        'carrier = "natural_gas"\nunit = "m3"\nncv_kj_per_unit = 36000.0\n').replace(
        'carrier = "raw_coal"\nunit = "kg"\n',
        'carrier = "raw_coal"\nunit = "kg"\ntco2_per_unit = 0.0021\n'))
    result = _cbam("--store", store, "--config", config, "--from", "2026-01-01", "--to",
                   "2026-01-03", "--format", "json")
    assert result.returncode == 0, result.stderr
    factors = {line["line"]: line["factors"] for line in json.loads(result.stdout)["lines"]}
    gas = factors["works/eaf-1"][1]
    assert gas["value"] == pytest.approx(0.001994 * 36000 / (1.2143 * 29307), rel=1e-12)
    assert (gas["status"], gas["meters"]) == ("measured", ["burner"])
    assert "36000 kJ/m3" in gas["source"]
    assert factors["works/kiln-1"][1] == {
        "factor": "raw_coal (measured)", "value": 0.0021, "unit": "tCO2/kg", "scope": 1,
        "source": "the plant's measured value, [meters.\"works/kiln-1/energy/coal-feed\"] "
                  "tco2_per_unit", "status": "measured", "meters": ["coal-feed"]}
