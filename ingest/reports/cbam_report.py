"""The CBAM report's figures: per line and its product's CN code, over whole plant days,
the activity level, direct and indirect emissions, the specific embedded emissions and
every factor used.

``build_cbam_report`` takes the ``day`` period rows of the report's plant days (final
and open ones, as ``store_periods.periods`` reads them) and what the config says of
each line, and returns plain dataclasses; ``cbam_json`` and ``cbam_csv`` write them
(docs/carbon.md, The CBAM report). No I/O here.

What is summed, and what is not:

- a day counts when its final row is in the store with carbon figures: its
  ``production_t``, ``co2_direct_t`` and ``co2_indirect_t`` as the daemon computed
  them. A day counts whole, as the daemon closed it; the store does not say whether a
  day's readings were all there (a line that stopped at noon made half a day);
- a day without a final row (nothing written, the store pruned, or the day still
  open) and a day whose row has no carbon figures (a store written before wattline
  recorded carbon) are not counted and not estimated: each is listed by date, so a
  gap is never silent. The specific emissions are over the counted days only;
- process CO2 (``process_co2_*`` of the line's config) is the counted production
  times its factor, added to the direct emissions and listed as a factor.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from wattline.contract.errors import WattlineError
from wattline.ingest.process_co2 import ProcessCo2
from wattline.ingest.reports.store_periods import PlantDays

__all__ = ["DIRECT_ONLY_CHAPTERS", "JSON_KEYS", "NOT_COVERED", "CbamLine", "CbamReport",
           "Factor", "ReportError", "build_cbam_report", "cbam_csv", "cbam_json",
           "charged_emissions"]

JSON_KEYS = ("line", "product", "cn_code", "from", "to", "production_t", "co2_direct_t",
             "co2_indirect_t", "see_direct", "see_indirect", "factors")
"""The keys of each line's entry in the JSON document (contract section 8), in order."""

UNITS = {"production_t": "t", "co2_direct_t": "tCO2e", "co2_indirect_t": "tCO2e",
         "see_direct": "tCO2e/t", "see_indirect": "tCO2e/t"}

DIRECT_ONLY_CHAPTERS = ("72", "73", "76")
"""CN chapters of iron and steel (72, 73) and aluminium (76): Regulation (EU) 2023/956,
Annex II, counts only their direct emissions."""

NOT_COVERED = (
    "Precursors: the embedded emissions of precursors bought in (pig iron, DRI, "
    "ferro-alloys, alumina or unwrought aluminium, clinker for cement) are not included; "
    "add them from the suppliers' declared values.",
    "Process emissions (carbon of consumed anodes and electrodes, carbonates calcined in "
    "the kiln feed, charge carbon) are not measured by any meter. They are included only "
    "for a line whose config gives them by mass balance (process_co2_per_t, or "
    "process_material with process_material_per_t and process_co2_per_material), listed "
    "among its factors; for every other line they are not covered.",
    "Gases other than CO2 (the PFCs of aluminium anode effects, CH4, N2O) are not "
    "included: tCO2e here is CO2 from combustion, bought electricity and heat, and the "
    "configured process CO2.",
    "For iron and steel and for aluminium the EU charges direct emissions only "
    "(Regulation (EU) 2023/956, Annex II): their indirect emissions are reported here "
    "but not charged. For cement both count.",
    "Emissions of transport and of anything outside the line's metered boundary are not "
    "included.",
    "Days without a final day row with carbon figures are not estimated: they are listed "
    "for each line, and the figures cover the counted days only.",
)
"""What the report states, on every page, that it does not cover."""


class ReportError(WattlineError):
    """The report cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class Factor:
    """One emission factor the figures rest on, with its source."""

    factor: str  # what it is: "grid electricity", "natural_gas combustion", ...
    value: float
    unit: str  # tCO2/MWh, tCO2/m3, tCO2/t product
    scope: int  # 1 direct, 2 indirect
    source: str
    status: str = ""  # the reference data's status: sourced, derived, secondary, measured
    meters: tuple[str, ...] | None = None  # the line's meters it applies to; None: not known


@dataclass(frozen=True)
class CbamLine:
    """One line over the report's days."""

    line: str  # site/line
    product: str
    cn_code: str
    first: date
    last: date
    production_t: float
    combustion_direct_t: float  # scope 1 from the meters, as the daemon summed it
    process_co2_t: float | None  # None: no process CO2 configured, so not covered
    co2_indirect_t: float
    factors: tuple[Factor, ...]
    counted_days: tuple[date, ...]
    missing_days: tuple[date, ...]  # no final day row in the store
    open_days: tuple[date, ...]  # only provisional rows: the day is not closed yet
    days_without_carbon: tuple[date, ...]  # a final row from before carbon was recorded

    @property
    def co2_direct_t(self) -> float:
        return self.combustion_direct_t + (self.process_co2_t or 0.0)

    @property
    def see_direct(self) -> float | None:
        return self.co2_direct_t / self.production_t if self.production_t > 0 else None

    @property
    def see_indirect(self) -> float | None:
        return self.co2_indirect_t / self.production_t if self.production_t > 0 else None

    @property
    def charged(self) -> str:
        return charged_emissions(self.cn_code)

    @property
    def gaps(self) -> tuple[date, ...]:
        """Every day of the range that is not counted, in order."""
        return tuple(sorted((*self.missing_days, *self.open_days, *self.days_without_carbon)))


@dataclass(frozen=True)
class CbamReport:
    first: date
    last: date
    timezone: str
    lines: tuple[CbamLine, ...]
    left_out: tuple[tuple[str, str], ...] = field(default=())  # (line, why) without a CN code

    @property
    def n_days(self) -> int:
        return (self.last - self.first).days + 1


def charged_emissions(cn_code: str) -> str:
    """``direct`` for iron, steel and aluminium, else ``direct and indirect``."""
    return "direct" if cn_code.strip()[:2] in DIRECT_ONLY_CHAPTERS else "direct and indirect"


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _line_figures(name: str, product: str, cn_code: str, rows: Sequence[dict[str, Any]],
                  days: PlantDays, factors: Sequence[Factor],
                  process: ProcessCo2 | None) -> CbamLine:
    finals: dict[date, dict[str, Any]] = {}
    open_days: set[date] = set()
    for row in rows:
        day = days.day_of(int(row["time_ms"]))
        if row["final"]:
            finals[day] = row
        else:
            open_days.add(day)
    counted, without_carbon = [], []
    production = direct = indirect = 0.0
    for day in sorted(finals):
        row = finals[day]
        figures = [_number(row.get(k)) for k in ("production_t", "co2_direct_t",
                                                 "co2_indirect_t")]
        if any(f is None for f in figures):
            without_carbon.append(day)
            continue
        made, scope1, scope2 = (float(f) for f in figures)  # type: ignore[arg-type]
        counted.append(day)
        production += made
        direct += scope1
        indirect += scope2
    all_factors = list(factors)
    process_t = None
    if process is not None:
        process_t = production * process.per_t
        all_factors.append(_process_factor(process))
    return CbamLine(
        line=name, product=product, cn_code=cn_code, first=days.first, last=days.last,
        production_t=production, combustion_direct_t=direct, process_co2_t=process_t,
        co2_indirect_t=indirect, factors=tuple(all_factors), counted_days=tuple(counted),
        missing_days=tuple(d for d in days if d not in finals and d not in open_days),
        open_days=tuple(sorted(open_days - set(finals))),
        days_without_carbon=tuple(without_carbon))


def _process_factor(process: ProcessCo2) -> Factor:
    if process.material is None:
        return Factor("process CO2 (mass balance)", process.per_t, "tCO2/t product", 1,
                      process.source, "configured")
    detail = (f"{process.material_per_t:g} t {process.material} per t product x "
              f"{process.co2_per_material:g} tCO2 per t {process.material}")
    return Factor(f"process CO2 of {process.material} (mass balance)", process.per_t,
                  "tCO2/t product", 1, f"{detail}; {process.source}", "configured")


def build_cbam_report(day_rows: pa.Table, days: PlantDays, *, products: Mapping[str, str | None],
                      cn_codes: Mapping[str, str | None],
                      factors: Mapping[str, Sequence[Factor]],
                      process: Mapping[str, ProcessCo2 | None],
                      only: str | None = None) -> CbamReport:
    """The report over ``days`` from their ``day`` rows (``PERIOD_SCHEMA``).

    ``products``: each configured line's product; ``cn_codes``: each product's CN code
    (None: not a CBAM good); ``factors``: each line's factors in force; ``process``:
    each line's process CO2. The lines are those with rows and those configured with a
    product (``only``: that line alone). A line without a CN code is left out, with
    why; ``ReportError`` when no line is left, or no day of the range is counted.
    """
    by_line: dict[str, list[dict[str, Any]]] = {}
    for row in day_rows.to_pylist():
        by_line.setdefault(f"{row['site']}/{row['line']}", []).append(row)
    names = sorted(set(by_line) | {n for n, p in products.items() if p})
    if only is not None:
        names = [only]
    lines, left_out = [], []
    for name in names:
        product = products.get(name)
        if not product:
            left_out.append((name, f"no product configured: set [lines.\"{name}\"] product in "
                                   "the config (--config) to one with a CN code"))
            continue
        cn_code = cn_codes.get(product)
        if not cn_code:
            left_out.append((name, f"its product {product!r} has no CN code: it is not a good "
                                   "the CBAM covers"))
            continue
        lines.append(_line_figures(name, product, cn_code, by_line.get(name, []), days,
                                   factors.get(name, ()), process.get(name)))
    if only is not None and left_out:
        raise ReportError(f"line {only} cannot be reported: {left_out[0][1]}")
    if not lines:
        why = "; ".join(f"{n}: {r}" for n, r in left_out) or "the store has no day periods"
        raise ReportError(f"no line with a CN code to report from {days.first} to "
                          f"{days.last} ({why})")
    if not any(line.counted_days for line in lines):
        carbonless = sum(len(line.days_without_carbon) for line in lines)
        if carbonless:
            raise ReportError(f"the store's final days from {days.first} to {days.last} "
                              f"({carbonless} line-days) have no carbon figures: they were "
                              "written by a wattline from before it recorded carbon; report "
                              "on days written since")
        raise ReportError(f"the store has no final day with carbon figures from {days.first} "
                          f"to {days.last} for {', '.join(line.line for line in lines)}; "
                          "check the dates (plant days, --to included) and --store")
    return CbamReport(days.first, days.last, days.timezone, tuple(lines), tuple(left_out))


def _factor_json(f: Factor) -> dict[str, Any]:
    return {"factor": f.factor, "value": f.value, "unit": f.unit, "scope": f.scope,
            "source": f.source, "status": f.status,
            "meters": None if f.meters is None else list(f.meters)}


def _line_json(line: CbamLine) -> dict[str, Any]:
    values = {"line": line.line, "product": line.product, "cn_code": line.cn_code,
              "from": str(line.first), "to": str(line.last), "production_t": line.production_t,
              "co2_direct_t": line.co2_direct_t, "co2_indirect_t": line.co2_indirect_t,
              "see_direct": line.see_direct, "see_indirect": line.see_indirect,
              "factors": [_factor_json(f) for f in line.factors]}
    return {key: values[key] for key in JSON_KEYS}


def _coverage_json(line: CbamLine, n_days: int) -> dict[str, Any]:
    return {"line": line.line, "days": n_days, "counted_days": len(line.counted_days),
            "missing_days": [str(d) for d in line.missing_days],
            "open_days": [str(d) for d in line.open_days],
            "days_without_carbon": [str(d) for d in line.days_without_carbon],
            "combustion_co2_direct_t": line.combustion_direct_t,
            "process_co2_t": line.process_co2_t, "charged_emissions": line.charged}


def cbam_json(report: CbamReport) -> dict[str, Any]:
    """The report as the JSON document of docs/carbon.md."""
    return {
        "report": "CBAM embedded emissions",
        "from": str(report.first), "to": str(report.last),
        "plant_timezone": report.timezone, "units": UNITS,
        "lines": [_line_json(line) for line in report.lines],
        "coverage": [_coverage_json(line, report.n_days) for line in report.lines],
        "left_out": [{"line": n, "reason": r} for n, r in report.left_out],
        "not_covered": list(NOT_COVERED),
    }


def _factor_text(f: Factor) -> str:
    return f"{f.factor}: {f.value:g} {f.unit} (scope {f.scope}; {f.source})"


CSV_COLUMNS = (*JSON_KEYS[:-1], "charged_emissions", "counted_days", "days", "gaps",
               "factors")


def cbam_csv(report: CbamReport) -> str:
    """One row per line: the JSON keys (factors as text), which emissions the EU
    charges, and the days counted and not (``gaps``, dates separated by spaces)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in report.lines:
        row = _line_json(line)
        writer.writerow([*("" if row[k] is None else row[k] for k in JSON_KEYS[:-1]),
                         line.charged, len(line.counted_days), report.n_days,
                         " ".join(str(d) for d in line.gaps),
                         " | ".join(_factor_text(f) for f in line.factors)])
    return out.getvalue()
