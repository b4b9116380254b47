"""The energy report's figures from period rows: intensities in the level's unit, the
baseline fitted on final baseline periods, savings over the report, one-line refusals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.report_rows import line_rows, ms
from wattline.contract.reference_data import load_reference
from wattline.ingest.reports.energy_html import report_html
from wattline.ingest.reports.energy_report import (
    EnergyReport,
    ReportError,
    build_energy_report,
    latest_rows,
    report_json,
)

LEVELS = load_reference().levels
LABELS = ("2026-11-01", "2026-11-30", "2026-09-01", "2026-10-31")


def _built(periods: pa.Table, batches: pa.Table | None = None, *,
           products: dict[str, str | None] | None = None,
           baseline: tuple[str, str] = ("2026-09-01", "2026-11-01"),
           model_period: str = "day") -> EnergyReport:
    return build_energy_report(
        periods, batches, products=products or {"demo/eaf-1": "eaf_steel"},
        batch_lines={"demo/eaf-1"} if batches is not None else set(), levels=LEVELS,
        report=(ms("2026-11-01"), ms("2026-12-01")),
        baseline=(ms(baseline[0]), ms(baseline[1])), labels=LABELS,
        model_period=model_period)


def _report(periods: pa.Table, batches: pa.Table | None = None, *,
            products: dict[str, str | None] | None = None,
            baseline: tuple[str, str] = ("2026-09-01", "2026-11-01"),
            model_period: str = "day") -> dict:
    return report_json(_built(periods, batches, products=products, baseline=baseline,
                              model_period=model_period))


def test_days_and_shifts_of_the_report_period_carry_their_intensity_and_grade() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91)
    line = _report(periods)["lines"][0]
    assert [d["label"] for d in line["days"]][:2] == ["2026-11-01", "2026-11-02"]
    assert len(line["days"]) == 30 and len(line["shifts"]) == 90
    rows = {(r["period"], r["time_ms"]): r for r in periods.to_pylist()}
    for day in line["days"]:
        row = rows[("day", day["start_ms"])]
        assert day["intensity"] == pytest.approx(row["kgce_per_t"])
        expected_grade = next(g for g, limit in enumerate([61, 64, 72], 1)
                              if row["kgce_per_t"] <= limit)
        assert day["grade"] == expected_grade
    made = sum(d["production_t"] for d in line["days"])
    used = sum(d["energy_kgce"] for d in line["days"])
    assert line["intensity"] == pytest.approx(used / made)
    assert line["worst_shift"]["intensity"] == max(s["intensity"] for s in line["shifts"])


def test_the_model_is_the_least_squares_fit_of_the_baseline_days() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91, saving=0.05,
                           saving_from="2026-11-01")
    line = _report(periods)["lines"][0]
    days = [r for r in periods.to_pylist() if r["period"] == "day"
            and ms("2026-09-01") <= r["time_ms"] < ms("2026-11-01")]
    design = np.column_stack([np.ones(len(days)), [d["production_t"] for d in days]])
    coef = np.linalg.lstsq(design, [d["energy_kgce"] for d in days], rcond=None)[0]
    assert line["model"]["periods"] == 61
    assert line["model"]["intercept"] == pytest.approx(coef[0], rel=1e-9)
    assert line["model"]["per_t"] == pytest.approx(coef[1], rel=1e-9)
    assert line["cusum_slope_share"] == pytest.approx(0.05, abs=0.002)
    saved = [s["saving"] for s in line["savings"]]
    assert line["savings"][-1]["cusum"] == pytest.approx(sum(saved))


def test_a_potline_is_reported_in_kwh_per_tonne() -> None:
    periods, _ = line_rows("demo", "potline-1", "2026-09-01", 91, kgce_per_t=1600.0)
    line = _report(periods, products={"demo/potline-1": "aluminium_liquid"})["lines"][0]
    assert line["unit"] == "kWh/t" and line["model"]["energy"] == "electricity_kwh"
    row = next(r for r in periods.to_pylist() if r["time_ms"] == line["days"][0]["start_ms"]
               and r["period"] == "day")
    assert line["days"][0]["intensity"] == pytest.approx(row["kwh_per_t"])


def test_batches_are_listed_for_a_batch_line_only() -> None:
    periods, heats = line_rows("demo", "eaf-1", "2026-09-01", 91, batches_per_shift=4)
    line = _report(periods, heats)["lines"][0]
    assert len(line["batches"]) == 30 * 3 * 4
    assert line["batches"][0]["batch"].startswith("H")
    assert _report(periods)["lines"][0]["batches"] is None


def test_an_open_period_is_shown_but_not_fitted() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91)
    rows = periods.to_pylist()
    first = next(r for r in rows if r["period"] == "day")
    rows.append({**first, "final": False, "energy_kgce": 1.0})  # a stale provisional row
    open_day = {**first, "time_ms": first["time_ms"] - 86_400_000, "final": False}
    rows.append(open_day)
    table = pa.Table.from_pylist(rows, schema=periods.schema)
    chosen = [r for r in latest_rows(table) if r["period"] == "day"]
    assert next(r for r in chosen if r["time_ms"] == first["time_ms"])["final"]
    line = _report(table, baseline=("2026-08-31", "2026-11-01"))["lines"][0]
    assert line["model"]["periods"] == 61  # not the open day before September


def test_a_line_without_a_product_is_one_error_naming_it() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91)
    with pytest.raises(ReportError, match=r'demo/eaf-1 has no product.*\[lines."demo/eaf-1"\]'):
        _report(periods, products={"demo/eaf-1": None})


def test_a_report_period_without_periods_is_refused() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 40)  # ends in October
    with pytest.raises(ReportError, match="no days or shifts of this line"):
        _report(periods)


def test_too_few_baseline_days_are_refused_with_how_many() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91)
    with pytest.raises(ReportError, match=r"demo/eaf-1: no baseline model over its 10 final "
                       r"day\(s\).*at least 12"):
        _report(periods, baseline=("2026-09-01", "2026-09-11"))


def test_a_baseline_production_does_not_explain_is_refused_with_its_r_squared() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91, base_kgce_per_shift=30_000.0,
                           kgce_per_t=1.0, tonnes_per_shift=(495.0, 505.0), noise=0.02)
    with pytest.raises(ReportError, match=r"R\^2 0\.\d+ over 61 periods, below 0.75"):
        _report(periods)


def test_carbon_per_tonne_is_carried_where_the_store_has_it() -> None:
    periods, _ = line_rows("demo", "eaf-1", "2026-09-01", 91)
    rows = periods.to_pylist()
    for r in rows:
        r["co2_per_t"] = 0.25 if r["period"] == "day" else None
    schema = periods.schema
    if "co2_per_t" not in schema.names:  # a schema from before live carbon
        schema = schema.append(pa.field("co2_per_t", pa.float64()))
    with_carbon = pa.Table.from_pylist(rows, schema=schema)
    line = _report(with_carbon)["lines"][0]
    assert {d["co2_per_t"] for d in line["days"]} == {0.25}
    assert {s["co2_per_t"] for s in line["shifts"]} == {None}
    page = report_html(_built(with_carbon))
    assert page.count("<th>tCO2/t</th>") == 1 and "<td>0.250</td>" in page  # days only
    assert "tCO2/t" not in report_html(_built(periods))
