"""The energy report as one self-contained HTML page: styles inline, charts inline SVG,
no script, no font, image or link to fetch, so it opens on a plant PC with no network.

Per line, from the top: the key figures a manager reads first (intensity against the
national levels, saving against the baseline, the worst shift), the charts, then the
tables behind them (days; shifts and batches folded away).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from wattline.ingest.reports.energy_charts import line_charts
from wattline.ingest.reports.energy_report import EnergyReport, LineReport, PeriodFigures

__all__ = ["report_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:60em;color:#222;line-height:1.35}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.2em;border-top:2px solid #1f4e79;
padding-top:.6em;margin-top:2em}h3{font-size:1em;margin:1.2em 0 .3em}
.meta{color:#555;font-size:.9em}
.key{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.key div{border:1px solid #ccc;border-radius:4px;padding:.4em .7em;min-width:10em}
.key b{display:block;font-size:1.3em}.good{color:#2e7d32}.bad{color:#c62828}
figure{margin:.6em 0}figure svg{width:100%;height:auto}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
td,th{padding:.15em .6em;text-align:right;border-bottom:1px solid #eee}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
details{margin:.4em 0}summary{cursor:pointer;color:#1f4e79}
.note{font-size:.85em;color:#444}
"""


def _n(value: float | None, digits: int = 1) -> str:
    return "\u2013" if value is None else f"{value:,.{digits}f}"


def _grade(value: int | None) -> str:
    return {None: "\u2013", 0: "below baseline"}.get(value, f"grade {value}")


def _versus(r: LineReport, value: float | None) -> tuple[str, str]:
    """A word on an intensity against the levels, and its CSS class."""
    level = r.level
    if value is None:
        return "no production", ""
    if level.baseline is not None and value > level.baseline:
        return f"{value - level.baseline:,.1f} above the national baseline", "bad"
    if level.benchmark is not None and value <= level.benchmark:
        return "at or better than the benchmark", "good"
    if level.benchmark is not None:
        return f"{value - level.benchmark:,.1f} above the benchmark", ""
    return "", ""


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _period_rows(periods: Sequence[PeriodFigures], carbon: bool) -> list[list[str]]:
    return [[p.batch or p.label, _n(p.production_t), _n(p.energy_kgce, 0),
             _n(p.electricity_kwh, 0), _n(p.intensity), _grade(p.grade),
             *([_n(p.co2_per_t, 3)] if carbon else []), "" if p.final else "open"]
            for p in periods]


def _period_table(r: LineReport, periods: Sequence[PeriodFigures], first: str) -> str:
    """The periods' figures; a tCO2/t column where the store holds live carbon."""
    carbon = any(p.co2_per_t is not None for p in periods)
    return _table([first, "production t", "energy kgce", "electricity kWh", r.level.unit,
                   "grade", *(["tCO2/t"] if carbon else []), ""],
                  _period_rows(periods, carbon))


def _key_figures(r: LineReport, model_period: str) -> str:
    level = r.level
    word, css = _versus(r, r.intensity)
    total_saving = r.savings[-1].cusum if r.savings else 0.0
    saving_css = "good" if total_saving >= 0 else "bad"
    worst = r.worst_shift
    boxes = [
        (f"intensity, {level.unit}", _n(r.intensity), word, css),
        ("national levels", f"{_n(level.benchmark, 0)} / {_n(level.baseline, 0)}",
         "benchmark / baseline", ""),
        ("production", f"{_n(r.production_t, 0)} t", f"{len(r.days)} day(s)", ""),
        (f"saved against the baseline, {r.energy_unit}", _n(total_saving, 0),
         f"{100 * r.total_saving_share:+.1f} % of expected", saving_css),
        ("CUSUM slope", f"{100 * r.cusum_slope_share:+.1f} %",
         f"of expected energy per {model_period}", saving_css),
        ("worst shift", _n(worst.intensity) if worst else "\u2013",
         f"{worst.label}, {_n(worst.production_t, 0)} t" if worst
         else "no shift with production", ""),
    ]
    return '<div class="key">' + "".join(
        f'<div><span>{escape(t)}</span><b class="{c}">{escape(v)}</b>'
        f'<span class="note">{escape(s)}</span></div>' for t, v, s, c in boxes) + "</div>"


def _figure(kind: str, index: int, svg: str) -> str:
    return f'<figure id="chart-{kind}-{index}" data-chart="{kind}">{svg}</figure>'


def _line_section(report: EnergyReport, r: LineReport, index: int) -> str:
    charts = line_charts(r, report.timezone)
    m = r.model
    extra = "".join(f" + {c:,.3f} \u00d7 {v}" for v, c in zip(m.variables[1:],
                                                             m.coefficients[1:], strict=True))
    model_text = (f"E = {m.intercept:,.1f} {r.energy_unit} + {m.slope:,.3f} {r.energy_unit}/t "
                  f"\u00d7 P{extra}, fitted on {m.periods} final {report.model_period}s from "
                  f"{report.baseline_from} to {report.baseline_to}: R\u00b2 {m.r_squared:.3f}, "
                  f"residual standard deviation {m.residual_sd:,.1f} {r.energy_unit}.")
    worst_days = sorted((d for d in r.days if d.intensity is not None),
                        key=lambda d: -(d.intensity or 0.0))[:3]
    parts = [
        f'<section class="line" id="line-{index}">',
        f"<h2>{escape(r.site)} / {escape(r.line)} \u2014 {escape(r.product)}</h2>",
        f'<p class="meta">{escape(r.level.metric)} ({escape(r.level.unit)}); national levels: '
        f"{escape(r.level.source)} ({escape(r.level.status)})</p>",
        _key_figures(r, report.model_period),
        _figure("days", index, charts["days"]),
        _figure("shifts", index, charts["shifts"]),
    ]
    if "batches" in charts:
        parts.append(_figure("batches", index, charts["batches"]))
    parts += [
        "<h3>ISO 50006 energy baseline</h3>",
        f'<p class="note">{escape(model_text)}</p>',
        _figure("model", index, charts["model"]),
        _figure("expected", index, charts["expected"]),
        _figure("cusum", index, charts["cusum"]),
        "<h3>Days</h3>",
        _period_table(r, r.days, "day"),
    ]
    if worst_days:
        parts.append('<p class="note">Highest days: ' + escape(", ".join(
            f"{d.label} ({_n(d.intensity)})" for d in worst_days)) + "</p>")
    parts.append(f"<details><summary>Shifts ({len(r.shifts)})</summary>"
                 f"{_period_table(r, r.shifts, 'shift start')}</details>")
    if r.batches is not None:
        parts.append(f"<details><summary>Batches ({len(r.batches)})</summary>"
                     f"{_period_table(r, r.batches, 'batch')}</details>")
    parts.append(f"<details><summary>Expected and actual per {report.model_period} "
                 f"({len(r.savings)})</summary>" + _table(
                     [report.model_period, "production t", f"expected {r.energy_unit}",
                      f"actual {r.energy_unit}", f"saving {r.energy_unit}",
                      f"CUSUM {r.energy_unit}"],
                     ([s.label, _n(s.production_t), _n(s.expected, 0), _n(s.actual, 0),
                       _n(s.saving, 0), _n(s.cusum, 0)] for s in r.savings)) + "</details>")
    parts.append("</section>")
    return "\n".join(parts)


def report_html(report: EnergyReport) -> str:
    """The whole page."""
    sections = "\n".join(_line_section(report, r, i) for i, r in enumerate(report.lines))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Energy report {escape(report.date_from)} to {escape(report.date_to)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Energy report, {escape(report.date_from)} to {escape(report.date_to)}</h1>
<p class="meta">Plant time zone {escape(report.timezone)}; baseline {escape(report.baseline_from)}
to {escape(report.baseline_to)}; {len(report.lines)} line(s). Made by wattline from its Parquet
store.</p>
{sections}
<h2>How to read this report</h2>
<p class="note">Intensity is the line's energy per tonne of product in the unit of its national
level (GB/T 2589 coal equivalent, kgce/t, or electricity, kWh/t), compared with the national
benchmark (best practice) and baseline (the floor a line must not exceed); a grade is the
product's GB grade (1 best), "below baseline" when worse than every grade. The baseline model
(ISO 50006) explains each period's energy by its production, fitted by least squares over the
baseline period; "expected" is what the line would have used at the baseline's efficiency for
what it made, the saving is expected minus actual, and the CUSUM adds the savings up: a rising
CUSUM is saving, a falling one is losing, and a change of slope marks when performance changed.
Open periods (not yet final) are shown but not counted in the model or the savings.</p>
</body></html>
"""
