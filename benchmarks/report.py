"""How a benchmark shows its result: a table and notes for people, one JSON line for machines."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One measure: its figure, how the subject compares with it, whether it agrees."""

    what: str
    figure: str
    ratio: str = ""  # the subject's rate over this one's, e.g. "0.25" or "170x"
    agree: str = ""  # "yes", "NO", or empty where nothing is compared


@dataclass
class BenchResult:
    """Rows for the table, notes printed under it, and the flat figures for JSON."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def row(self, what: str, figure: str, ratio: str = "", agree: str = "") -> None:
        self.rows.append(Row(what, figure, ratio, agree))


def rate(per_s: float) -> str:
    """``12.3 M/s`` style."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:,.1f} {suffix}/s"
    return f"{per_s:,.0f} /s"


def sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant figures, for JSON a person reads too."""
    return float(f"{x:.{digits}g}")


def machine() -> dict[str, Any]:
    """Where a figure was measured: Python, NumPy and Numba versions, CPU and its count."""
    import numba
    import numpy

    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "numba": numba.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count()}


def print_report(title: str, result: BenchResult, *, as_json: bool = False,
                 console: Console | None = None, subject: str = "full") -> None:
    """The table, its notes, and with ``as_json`` a last line holding one JSON object.

    ``subject`` names what every row's ratio column compares (``subject / row``).
    Notes are printed unwrapped, so each stays one line a script can find.
    """
    console = console or Console()
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column(f"{subject} / this", justify="right")
    table.add_column("agree")
    for r in result.rows:
        table.add_row(r.what, r.figure, r.ratio, r.agree)
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}", highlight=False, soft_wrap=True, markup=False)
    if as_json:
        # Plain print: the last line must be exactly the JSON object, unwrapped.
        print(json.dumps(result.figures, sort_keys=True), flush=True)
