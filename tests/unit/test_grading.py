"""Grades and gaps of day and month periods against the national levels."""

from __future__ import annotations

import pyarrow as pa
import pytest

from wattline.contract.reference_data import load_reference
from wattline.ingest.grading import PeriodGrading, grade_of
from wattline.ingest.periods_stage import PERIOD_SCHEMA

EAF = [61.0, 64.0, 72.0]


@pytest.mark.parametrize(("intensity", "grade"), [
    (-5.0, 1), (61.0, 1), (61.000001, 2), (64.0, 2), (70.0, 3), (72.0, 3), (72.01, 0)])
def test_the_grade_is_the_best_whose_limit_the_intensity_does_not_exceed(
    intensity: float, grade: int,
) -> None:
    assert grade_of(intensity, EAF, baseline=72.0) == grade


def test_worse_than_the_baseline_is_grade_0_even_inside_grade_3() -> None:
    assert grade_of(-11.0, [-30.0, -28.0, -12.0], baseline=-10.0) == 0  # BOF: > -12
    assert grade_of(-9.0, [-30.0, -28.0, -12.0], baseline=-10.0) == 0
    assert grade_of(-29.0, [-30.0, -28.0, -12.0], baseline=-10.0) == 2


def _rows(*rows: tuple[str, str, float | None, float | None]) -> pa.Table:
    return pa.Table.from_pylist([
        {"site": "s", "line": line, "period": period, "time_ms": 0, "energy_kgce": 0.0,
         "electricity_kwh": 0.0, "production_t": 0.0, "kgce_per_t": kgce, "kwh_per_t": kwh,
         "final": True, "late_readings": 0} for line, period, kgce, kwh in rows],
        schema=PERIOD_SCHEMA)


def test_days_and_months_are_graded_in_the_levels_unit_and_shifts_are_not() -> None:
    grading = PeriodGrading({"s/eaf": "eaf_steel", "s/pot": "aluminium_liquid"},
                            load_reference())
    grade, gap = grading.columns(_rows(
        ("eaf", "day", 63.0, 9999.0), ("eaf", "month", 80.0, 1.0), ("eaf", "shift", 63.0, 1.0),
        ("pot", "day", 1.0, 13_100.0), ("other", "day", 63.0, 1.0), ("eaf", "day", None, None)))
    assert grade.to_pylist() == [2, 0, None, 3, None, None]
    assert gap.to_pylist() == [pytest.approx(2.0), pytest.approx(19.0), None,
                               pytest.approx(100.0), None, None]
