"""The energy report's charts, drawn with matplotlib into SVG text to inline in the page.

Each function takes one line's figures and returns an ``<svg>`` element (no XML header),
whose ``<title>`` names the chart. Text stays text (``svg.fonttype`` none), so the page
is small and its words searchable; nothing refers to a file or the network.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from wattline.ingest.reports.energy_report import LineReport, PeriodFigures

__all__ = ["CHARTS", "line_charts"]

CHARTS = ("days", "shifts", "batches", "model", "expected", "cusum")
"""Chart kinds, in page order (``batches`` only for batch lines)."""

_ACTUAL, _EXPECTED, _GOOD, _BAD = "#1f4e79", "#9e9e9e", "#2e7d32", "#c62828"
_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "wattline", "font.size": 9,
          "axes.spines.top": False, "axes.spines.right": False}


def _svg(figure: Figure, title: str) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Title": title})
    text = out.getvalue()
    # The metadata's title is the svg's first child: what a screen reader names it by.
    return text[text.index("<svg"):]


def _figure() -> Figure:
    return Figure(figsize=(8.0, 2.6), layout="constrained")


def _legend(axes: Axes) -> None:
    """Beside the plot, where it hides no point."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _when(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).replace(tzinfo=None)


def _levels(axes: Axes, r: LineReport) -> None:
    level = r.level
    if level.benchmark is not None:
        axes.axhline(level.benchmark, color=_GOOD, linestyle="--", linewidth=1,
                     label=f"benchmark {level.benchmark:g}")
    if level.baseline is not None:
        axes.axhline(level.baseline, color=_BAD, linestyle="--", linewidth=1,
                     label=f"national baseline {level.baseline:g}")


def _intensity_chart(r: LineReport, periods: Sequence[PeriodFigures], tz: ZoneInfo,
                     title: str, what: str, bars: bool) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    shown = [p for p in periods if p.intensity is not None]
    x = [_when(p.start_ms, tz) for p in shown]
    y = [p.intensity for p in shown]
    colours = [_BAD if r.level.baseline is not None and v is not None and v > r.level.baseline
               else _ACTUAL for v in y]
    if bars and len(shown) > 1:
        width = min((b - a).total_seconds() for a, b in itertools.pairwise(x)) / 86400
        axes.bar(x, y, width=0.8 * width, color=colours, align="edge", label=what)
    elif what == "batch":
        axes.scatter(x, y, s=6, color=colours, label=what)
    else:
        axes.plot(x, y, marker="o", markersize=3, color=_ACTUAL, linewidth=1, label=what)
    _levels(axes, r)
    axes.set_ylabel(r.level.unit)
    axes.set_title(title, loc="left")
    _legend(axes)
    figure.autofmt_xdate()
    return _svg(figure, title)


def _model_chart(r: LineReport) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    unit = r.energy_unit
    base_p = [p.production_t for p in r.baseline]
    base_e = [getattr(p, r.energy_column) for p in r.baseline]
    axes.scatter(base_p, base_e, s=12, color=_EXPECTED, label="baseline periods")
    axes.scatter([s.production_t for s in r.savings], [s.actual for s in r.savings], s=12,
                 color=_ACTUAL, label="report periods")
    every = base_p + [s.production_t for s in r.savings]
    lo, hi = min(every), max(every)
    start = r.intercept_at_means
    others = r.model.variables[1:]
    axes.plot([lo, hi], [start + r.model.slope * lo, start + r.model.slope * hi],
              color="black", linewidth=1,
              label=f"E = {start:,.0f} + {r.model.slope:,.2f} x P"
                    + (f" ({', '.join(others)} at baseline mean)" if others else "")
                    + f", R\u00b2 {r.model.r_squared:.2f}")
    axes.set_xlabel("production, t")
    axes.set_ylabel(f"energy, {unit}")
    title = "Baseline model: energy against production"
    axes.set_title(title, loc="left")
    _legend(axes)
    return _svg(figure, title)


def _expected_chart(r: LineReport, tz: ZoneInfo) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    x = [_when(s.start_ms, tz) for s in r.savings]
    axes.plot(x, [s.expected for s in r.savings], color=_EXPECTED, marker="o", markersize=3,
              linewidth=1, label="expected by the baseline model")
    axes.plot(x, [s.actual for s in r.savings], color=_ACTUAL, marker="o", markersize=3,
              linewidth=1, label="actual")
    axes.set_ylabel(f"energy, {r.energy_unit}")
    title = "Expected and actual energy"
    axes.set_title(title, loc="left")
    _legend(axes)
    figure.autofmt_xdate()
    return _svg(figure, title)


def _cusum_chart(r: LineReport, tz: ZoneInfo) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    x = [_when(s.start_ms, tz) for s in r.savings]
    y = [s.cusum for s in r.savings]
    colour = _GOOD if y and y[-1] >= 0 else _BAD
    axes.plot(x, y, color=colour, marker="o", markersize=3, linewidth=1.5,
              label="CUSUM of savings (expected - actual)")
    axes.axhline(0.0, color="black", linewidth=0.6)
    axes.set_ylabel(f"cumulative saving, {r.energy_unit}")
    title = "CUSUM of savings"
    axes.set_title(title, loc="left")
    _legend(axes)
    figure.autofmt_xdate()
    return _svg(figure, title)


def line_charts(r: LineReport, timezone: str) -> dict[str, str]:
    """The line's charts as SVG text, keyed by kind (``CHARTS``), in page order."""
    tz = ZoneInfo(timezone)
    with matplotlib.rc_context(_STYLE):
        charts = {
            "days": _intensity_chart(r, r.days, tz, f"Intensity per day, {r.level.unit}",
                                     "day", bars=True),
            "shifts": _intensity_chart(r, r.shifts, tz,
                                       f"Intensity per shift, {r.level.unit}", "shift",
                                       bars=False),
        }
        if r.batches is not None:
            charts["batches"] = _intensity_chart(r, r.batches, tz,
                                                 f"Intensity per batch, {r.level.unit}",
                                                 "batch", bars=False)
        charts["model"] = _model_chart(r)
        charts["expected"] = _expected_chart(r, tz)
        charts["cusum"] = _cusum_chart(r, tz)
    return charts
