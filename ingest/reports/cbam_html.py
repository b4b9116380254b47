"""The CBAM report as one self-contained HTML page: styles inline, no script, font,
image or link to fetch, so it opens and prints on a PC with no network.

From the top: what the report does not cover (before any figure, so nobody reads the
figures without it), then per line its key figures, which emissions the EU charges,
the days counted and the gaps, and every factor with its source; the lines left out,
and why, at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from html import escape

from wattline.ingest.reports.cbam_report import NOT_COVERED, CbamLine, CbamReport, Factor

__all__ = ["cbam_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:62em;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.15em;border-top:2px solid #1f4e79;
padding-top:.6em;margin-top:2em}h3{font-size:1em;margin:1.1em 0 .3em}
.meta{color:#555;font-size:.9em}
.scope{border:1px solid #c62828;background:#fff5f5;padding:.5em 1em;margin:1em 0}
.scope li{margin:.2em 0}
table{border-collapse:collapse;font-size:.88em;margin:.4em 0}
td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charged{font-weight:600}.gap{color:#c62828}.ok{color:#2e7d32}
@media print{.scope{break-inside:avoid}h2{break-before:auto}}
"""


def _n(value: float | None, digits: int) -> str:
    return "\u2013" if value is None else f"{value:,.{digits}f}"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _days(days: Sequence[date]) -> str:
    return ", ".join(str(d) for d in days)


def _coverage(line: CbamLine, n_days: int) -> str:
    counted = len(line.counted_days)
    if not line.gaps:
        return f'<p class="ok">All {n_days} plant days counted.</p>'
    parts = [f'<p class="gap">{counted} of {n_days} plant days counted; the figures cover '
             "those days only (gaps are not estimated):</p><ul>"]
    for label, days in (("no final day in the store", line.missing_days),
                        ("not closed yet (only provisional rows)", line.open_days),
                        ("final row without carbon figures (written before wattline "
                         "recorded carbon)", line.days_without_carbon)):
        if days:
            parts.append(f"<li>{escape(label)} ({len(days)}): {escape(_days(days))}</li>")
    return "".join(parts) + "</ul>"


def _factor_row(f: Factor) -> list[str]:
    meters = "not recorded" if f.meters is None else ", ".join(f.meters)
    return [escape(f.factor), f"{f.value:g}", escape(f.unit), str(f.scope),
            escape(f.source), escape(f.status), escape(meters)]


def _line(line: CbamLine, n_days: int) -> str:
    charged = ("The EU charges direct emissions only for this good (iron, steel or "
               "aluminium, Regulation (EU) 2023/956 Annex II); indirect emissions are "
               "reported, not charged." if line.charged == "direct" else
               "The EU counts direct and indirect emissions for this good.")
    figures = _table(
        ("figure", "value", "unit"),
        [("Activity level (production)", _n(line.production_t, 3), "t"),
         ("Direct emissions", _n(line.co2_direct_t, 3), "tCO2e"),
         ("\u2003of which combustion (metered carriers)", _n(line.combustion_direct_t, 3),
          "tCO2e"),
         ("\u2003of which process CO2 (mass balance)",
          _n(line.process_co2_t, 3) if line.process_co2_t is not None
          else "not configured: not covered", "" if line.process_co2_t is None else "tCO2e"),
         ("Indirect emissions (electricity, bought heat)", _n(line.co2_indirect_t, 3),
          "tCO2e"),
         ("Specific embedded emissions, direct", _n(line.see_direct, 4), "tCO2e/t"),
         ("Specific embedded emissions, indirect", _n(line.see_indirect, 4), "tCO2e/t")],
        numeric={1})
    factors = _table(("factor", "value", "unit", "scope", "source", "status", "meters"),
                     (_factor_row(f) for f in line.factors), numeric={1, 3})
    return (f"<h2>{escape(line.line)} \u2014 {escape(line.product)}, CN {escape(line.cn_code)}"
            f"</h2><p class=\"meta\">{line.first} to {line.last}</p>{figures}"
            f'<p class="charged">{escape(charged)}</p><h3>Days</h3>'
            f"{_coverage(line, n_days)}<h3>Factors used</h3>{factors}")


def cbam_html(report: CbamReport, version: str = "") -> str:
    """The whole page; ``version`` (wattline's) is named in its footer."""
    scope = "".join(f"<li>{escape(text)}</li>" for text in NOT_COVERED)
    lines = "".join(_line(line, report.n_days) for line in report.lines)
    left = ""
    if report.left_out:
        left = ("<h2>Lines left out</h2><ul>" + "".join(
            f"<li>{escape(name)}: {escape(why)}</li>" for name, why in report.left_out)
            + "</ul>")
    title = f"CBAM embedded emissions, {report.first} to {report.last}"
    made_by = f"wattline {escape(version)}" if version else "wattline"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"meta\">Plant days {report.first} to "
        f"{report.last} ({report.n_days} days, time zone {escape(report.timezone)}), summed "
        "from the final day periods of the Parquet store. Emissions in tonnes of CO2 "
        "(tCO2e), activity level in tonnes of product.</p>"
        f"<div class=\"scope\"><b>Not covered by this report</b><ul>{scope}</ul></div>"
        f"{lines}{left}<p class=\"meta\">Made by {made_by} (wattline report cbam).</p>"
        "</body></html>\n")
