"""Grades of day and month periods against the national levels of their line's product.

A ``day`` or ``month`` row of a line whose config table names a ``product`` gets

- ``grade``: 1, 2 or 3, the best of the product's GB grades whose limit the period's
  intensity does not exceed, or 0 when it exceeds every grade's limit or the national
  baseline (for every product but blast-furnace iron and converter steel the grade-3
  limit is the baseline; for those two, an intensity between the grade-3 limit and the
  baseline is worse than every grade and graded 0);
- ``gap_to_benchmark``: the intensity minus the national benchmark, in the level's
  unit (kgce/t or kWh/t, whichever the level is stated in).

Each is left out (null) where the product has no such level, and both where the
period has no intensity (no production). Shifts are not graded. Levels are "lower is
better" even where they are negative (a converter with gas recovery).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from wattline.contract.reference_data import NationalLevel, ReferenceData

__all__ = ["GRADED_PERIODS", "PeriodGrading", "grade_of"]

GRADED_PERIODS = ("day", "month")
"""The period kinds that carry a grade (the national levels are annual figures; a day
and a month are what a plant compares with them)."""


def grade_of(intensity: float, grades: Sequence[float], baseline: float | None) -> int:
    """The GB grade (1 best) of an intensity, or 0 when it is worse than grade 3 or the
    baseline. A limit is inclusive: an intensity equal to grade 1's limit is grade 1."""
    if baseline is not None and intensity > baseline:
        return 0
    for grade, limit in enumerate(grades, start=1):
        if intensity <= limit:
            return grade
    return 0


@dataclass(frozen=True)
class _LineLevel:
    column: str  # kgce_per_t or kwh_per_t
    level: NationalLevel


class PeriodGrading:
    """Grades period rows by their line's product; ``products`` maps ``site/line`` to a
    product of the reference data (lines without one are not graded)."""

    def __init__(self, products: Mapping[str, str], reference: ReferenceData) -> None:
        self._levels: dict[str, _LineLevel] = {}
        for name, product in products.items():
            level = reference.levels.get(product)
            column = {"kgce/t": "kgce_per_t", "kWh/t": "kwh_per_t"}.get(
                level.unit if level else "")
            if level is not None and column is not None:
                self._levels[name] = _LineLevel(column, level)

    def columns(self, table: pa.Table) -> tuple[pa.Array, pa.Array]:
        """``grade`` (int64) and ``gap_to_benchmark`` (float64) for each row of a periods
        table with site, line, period and the two intensity columns."""
        n = table.num_rows
        grade: list[int | None] = [None] * n
        gap = np.full(n, np.nan)
        if self._levels and n:
            sites = table.column("site").to_pylist()
            lines = table.column("line").to_pylist()
            kinds = table.column("period").to_pylist()
            ratios = {c: table.column(c).to_pylist() for c in ("kgce_per_t", "kwh_per_t")}
            for i in range(n):
                own = self._levels.get(f"{sites[i]}/{lines[i]}")
                value = ratios[own.column][i] if own is not None else None
                if value is None or kinds[i] not in GRADED_PERIODS:
                    continue
                level = own.level  # type: ignore[union-attr]
                if level.gb_grades:
                    grade[i] = grade_of(value, level.gb_grades, level.baseline)
                if level.benchmark is not None:
                    gap[i] = value - level.benchmark
        return pa.array(grade, pa.int64()), pa.array(gap, mask=np.isnan(gap))
