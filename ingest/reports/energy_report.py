"""The energy report's figures: per line, its days, shifts and batches against its
product's national levels, and its ISO 50006 baseline with the CUSUM of savings.

``build_energy_report`` takes the period rows (``energy_period``: shift, day, month) and
batch rows (``energy_batch``) of the report and baseline ranges as Arrow tables, already
read from the store, and returns plain dataclasses; ``report_json`` turns them into the
JSON document of docs/reports.md. No I/O here: reading the store and drawing the page
are the callers' jobs.

Intensities are in the unit of the product's national level (kgce/t for most products,
kWh/t for aluminium), and so is the baseline model's energy: ``energy_kgce`` or
``electricity_kwh``. Only final periods (``final`` true) enter the baseline and the
savings; a period still open is shown in the day and shift tables, marked open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from wattline.contract.errors import WattlineError
from wattline.contract.reference_data import NationalLevel
from wattline.ingest.grading import grade_of
from wattline.ingest.reports.baseline import (
    BaselineModel,
    BaselineRefused,
    fit_baseline,
    savings_against,
)

__all__ = ["MODEL_PERIODS", "EnergyReport", "LineReport", "ReportError", "build_energy_report",
           "report_json"]

MODEL_PERIODS = ("day", "shift", "month")
"""Period kinds a baseline model may be fitted on (``--model-period``)."""

_COLUMN_OF_UNIT = {"kgce/t": ("energy_kgce", "kgce_per_t", "kgce"),
                   "kWh/t": ("electricity_kwh", "kwh_per_t", "kWh")}


class ReportError(WattlineError):
    """The report cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class PeriodFigures:
    """One shift, day or month of a line, or one batch (``period`` "batch")."""

    period: str
    start_ms: int  # the period's start; a batch's close
    label: str  # local time, as the plant names it
    energy_kgce: float
    electricity_kwh: float
    production_t: float
    intensity: float | None  # in the level's unit; None while idle
    grade: int | None
    final: bool
    batch: str | None = None
    co2_per_t: float | None = None  # tCO2 per tonne, where the store has it (live carbon)


@dataclass(frozen=True)
class SavingFigures:
    """One report period against the baseline model, in the model's energy unit."""

    start_ms: int
    label: str
    production_t: float
    expected: float
    actual: float
    saving: float
    cusum: float


@dataclass(frozen=True)
class LineReport:
    """Everything the report says about one line."""

    site: str
    line: str
    product: str
    level: NationalLevel
    energy_column: str  # energy_kgce or electricity_kwh: the model's energy
    energy_unit: str  # kgce or kWh
    days: list[PeriodFigures]
    shifts: list[PeriodFigures]
    batches: list[PeriodFigures] | None  # None: not a batch line
    model: BaselineModel
    baseline: list[PeriodFigures]  # the periods the model was fitted on
    savings: list[SavingFigures]
    cusum_slope_share: float
    total_saving_share: float
    variable_means: tuple[float, ...] = ()  # each relevant variable's baseline mean

    @property
    def intercept_at_means(self) -> float:
        """The model's energy at no production with its relevant variables at their
        baseline means: where the chart's line of energy against production starts."""
        return self.model.intercept + sum(
            c * v for c, v in zip(self.model.coefficients[1:], self.variable_means, strict=True))

    @property
    def production_t(self) -> float:
        return float(sum(d.production_t for d in self.days))

    @property
    def intensity(self) -> float | None:
        """The report period's intensity over its days, in the level's unit."""
        made = self.production_t
        energy = sum(getattr(d, self.energy_column) for d in self.days)
        return energy / made if made > 0 else None

    @property
    def worst_shift(self) -> PeriodFigures | None:
        graded = [s for s in self.shifts if s.intensity is not None]
        return max(graded, key=lambda s: s.intensity or 0.0) if graded else None


@dataclass(frozen=True)
class EnergyReport:
    date_from: str
    date_to: str
    baseline_from: str
    baseline_to: str
    timezone: str
    model_period: str
    lines: list[LineReport] = field(default_factory=list)


def _local_label(ms: int, tz: ZoneInfo, period: str) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    if period == "day":
        return when.strftime("%Y-%m-%d")
    if period == "month":
        return when.strftime("%Y-%m")
    return when.strftime("%Y-%m-%d %H:%M")


def latest_rows(periods: pa.Table) -> list[dict[str, Any]]:
    """One row per (site, line, period, start): the final one if written, else the last
    written (the store keeps an open period's provisional rows too)."""
    chosen: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in periods.to_pylist():
        key = (row["site"], row["line"], row["period"], row["time_ms"])
        held = chosen.get(key)
        if held is None or row["final"] or not held["final"]:
            chosen[key] = row
    return sorted(chosen.values(), key=lambda r: r["time_ms"])


def _figures(row: dict[str, Any], level: NationalLevel, ratio: str, tz: ZoneInfo,
             period: str) -> PeriodFigures:
    intensity = row.get(ratio)
    grade = (grade_of(intensity, level.gb_grades, level.baseline)
             if intensity is not None and level.gb_grades and period != "batch" else None)
    return PeriodFigures(
        period=period, start_ms=int(row["time_ms"]), label=_local_label(row["time_ms"], tz,
                                                                         period),
        energy_kgce=float(row["energy_kgce"]), electricity_kwh=float(row["electricity_kwh"]),
        production_t=float(row["production_t"]), intensity=intensity, grade=grade,
        final=bool(row.get("final", True)), batch=row.get("batch"),
        co2_per_t=row.get("co2_per_t"))


def _variable_columns(name: str, periods: Sequence[PeriodFigures],
                      variables: Mapping[str, Mapping[str, float]]) -> dict[str, list[float]]:
    """Each relevant variable's value for each period, looked up by the period's label."""
    out: dict[str, list[float]] = {}
    for variable, values in variables.items():
        missing = [p.label for p in periods if p.label not in values]
        if missing:
            raise ReportError(f"{name}: the relevant variable {variable!r} has no value for "
                              f"{len(missing)} period(s), the first {missing[0]}: give one "
                              "for every baseline and report period")
        out[variable] = [values[p.label] for p in periods]
    return out


def _line_report(site: str, line: str, product: str, level: NationalLevel,
                 rows: Sequence[dict[str, Any]], batch_rows: Sequence[dict[str, Any]] | None,
                 report: tuple[int, int], baseline: tuple[int, int], model_period: str,
                 tz: ZoneInfo, variables: Mapping[str, Mapping[str, float]]) -> LineReport:
    name = f"{site}/{line}"
    energy_column, ratio, unit = _COLUMN_OF_UNIT[level.unit]

    def within(span: tuple[int, int], kind: str, finals: bool) -> list[PeriodFigures]:
        return [_figures(r, level, ratio, tz, kind) for r in rows
                if r["period"] == kind and span[0] <= r["time_ms"] < span[1]
                and (r["final"] or not finals)]

    days, shifts = within(report, "day", False), within(report, "shift", False)
    if not days and not shifts:
        raise ReportError(f"{name}: the store has no days or shifts of this line from the "
                          "report's --from to --to; check the dates (plant time zone) and "
                          "--line")
    fitted_on = within(baseline, model_period, True)
    energy = np.array([getattr(p, energy_column) for p in fitted_on])
    made = np.array([p.production_t for p in fitted_on])
    baseline_variables = _variable_columns(name, fitted_on, variables)
    try:
        model = fit_baseline(energy, made, baseline_variables)
    except BaselineRefused as refused:
        raise ReportError(f"{name}: no baseline model over its {len(fitted_on)} final "
                          f"{model_period}(s) from --baseline-from to --baseline-to: "
                          f"{refused.message}") from None
    reported = within(report, model_period, True)
    if not reported:
        raise ReportError(f"{name}: no final {model_period} in the report period to set "
                          "against the baseline (open periods are not counted)")
    result = savings_against(model, [getattr(p, energy_column) for p in reported],
                             [p.production_t for p in reported],
                             _variable_columns(name, reported, variables))
    savings = [SavingFigures(p.start_ms, p.label, p.production_t, float(e), float(a),
                             float(s), float(c))
               for p, e, a, s, c in zip(reported, result.expected, result.actual,
                                        result.saving, result.cusum, strict=True)]
    batches = None
    if batch_rows is not None:
        batches = [_figures(r, level, ratio, tz, "batch") for r in batch_rows
                   if report[0] <= r["time_ms"] < report[1]]
    return LineReport(site=site, line=line, product=product, level=level,
                      energy_column=energy_column, energy_unit=unit, days=days, shifts=shifts,
                      batches=batches, model=model, baseline=fitted_on, savings=savings,
                      cusum_slope_share=result.slope_share,
                      total_saving_share=result.total_share,
                      variable_means=tuple(float(np.mean(v))
                                           for v in baseline_variables.values()))


def build_energy_report(periods: pa.Table, batches: pa.Table | None, *,
                        products: Mapping[str, str | None], batch_lines: set[str],
                        levels: Mapping[str, NationalLevel], report: tuple[int, int],
                        baseline: tuple[int, int], labels: tuple[str, str, str, str],
                        timezone: str = "UTC", model_period: str = "day",
                        variables: Mapping[str, Mapping[str, float]] | None = None
                        ) -> EnergyReport:
    """The report of every line in ``periods`` (spans are ``[from, to)`` epoch ms).

    ``products`` maps ``site/line`` to its product (``[lines]`` of the config);
    ``batch_lines`` are the lines whose batches are shown; ``labels`` are the report's
    and baseline's from and to dates as the user gave them. Raises ``ReportError``
    when a line has no product, no periods in the report range or no baseline model.
    ``variables`` are relevant variables besides production (degree-days, ...): each
    maps a period's ``label`` (``2026-11-01``, ``2026-11-01 08:00``, ``2026-11``) to its
    value, and must have one for every baseline and report period of the model's kind.
    """
    if model_period not in MODEL_PERIODS:
        raise ValueError(f"model period {model_period!r} is not one of {MODEL_PERIODS}")
    tz = ZoneInfo(timezone)
    rows = latest_rows(periods)
    by_line: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_line.setdefault((row["site"], row["line"]), []).append(row)
    batch_by_line: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if batches is not None:
        for row in sorted(batches.to_pylist(), key=lambda r: r["time_ms"]):
            batch_by_line.setdefault((row["site"], row["line"]), []).append(row)
    out = EnergyReport(*labels, timezone=timezone, model_period=model_period)
    if not by_line:
        raise ReportError(f"the store holds no periods from {labels[0]} to {labels[1]} nor in the "
                          f"baseline {labels[2]} to {labels[3]}: "
                          "is it the --store the daemon writes, and are the dates right?")
    for (site, line), own in sorted(by_line.items()):
        name = f"{site}/{line}"
        product = products.get(name)
        if not product:
            raise ReportError(f'{name} has no product, so there are no levels to compare it '
                              f'with: give it one in the config file ([lines."{name}"] '
                              'product = "...") and pass it with --config, or leave the line '
                              'out with --line')
        level = levels.get(product)
        if level is None or level.unit not in _COLUMN_OF_UNIT:
            raise ReportError(f"{name}: product {product!r} has no national level in kgce/t "
                              "or kWh/t in the reference data")
        batch_rows = batch_by_line.get((site, line), []) if name in batch_lines else None
        out.lines.append(_line_report(site, line, product, level, own, batch_rows, report,
                                      baseline, model_period, tz, variables or {}))
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None


def report_json(report: EnergyReport) -> dict[str, Any]:
    """The report as the JSON document of docs/reports.md."""
    lines = []
    for r in report.lines:
        level = r.level
        worst = r.worst_shift
        lines.append({
            "line": f"{r.site}/{r.line}", "site": r.site, "name": r.line,
            "product": r.product, "metric": level.metric, "unit": level.unit,
            "levels": {"benchmark": level.benchmark, "baseline": level.baseline,
                       "gb_grades": list(level.gb_grades) if level.gb_grades else None,
                       "source": level.source, "status": level.status},
            "production_t": r.production_t, "intensity": _finite(r.intensity),
            "worst_shift": asdict(worst) if worst else None,
            "days": [asdict(d) for d in r.days], "shifts": [asdict(s) for s in r.shifts],
            "batches": [asdict(b) for b in r.batches] if r.batches is not None else None,
            "model": {"energy": r.energy_column, "energy_unit": r.energy_unit,
                      "period": report.model_period, "intercept": r.model.intercept,
                      "per_t": r.model.slope,
                      "variables": dict(zip(r.model.variables[1:], r.model.coefficients[1:],
                                            strict=True)),
                      "r_squared": r.model.r_squared,
                      "periods": r.model.periods, "residual_sd": r.model.residual_sd},
            "savings": [asdict(s) for s in r.savings],
            "cusum_slope_share": _finite(r.cusum_slope_share),
            "total_saving_share": _finite(r.total_saving_share),
        })
    return {"report": "energy", "from": report.date_from, "to": report.date_to,
            "baseline_from": report.baseline_from, "baseline_to": report.baseline_to,
            "timezone": report.timezone, "model_period": report.model_period, "lines": lines}
