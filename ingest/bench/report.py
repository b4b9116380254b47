"""How a benchmark shows its result: a table for people, one JSON line for machines."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class BenchResult:
    """Rows for the table (what, figure, compared with) and the flat figures for JSON."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, what: str, figure: str, compared: str = "") -> None:
        self.rows.append((what, figure, compared))


def rate(per_s: float) -> str:
    """``12.3 M/s`` style."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:,.1f} {suffix}/s"
    return f"{per_s:,.0f} /s"


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}


def print_report(title: str, result: BenchResult, *, as_json: bool = False,
                 console: Console | None = None) -> None:
    """The table, its notes, and with ``as_json`` a last line holding one JSON object."""
    console = console or Console()
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column("compared with", style="dim")
    for what, figure, compared in result.rows:
        table.add_row(what, figure, compared)
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}", highlight=False)
    if as_json:
        # Plain print: the last line must be exactly the JSON object, unwrapped.
        print(json.dumps(result.figures, sort_keys=True))
