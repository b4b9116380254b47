"""``wattline store``: look into a Parquet store (docs/store.md) from the shell.

``wattline store tail --store DIR --line SITE/LINE [-n N]`` prints the newest N ticks of
one line, one row per tick and window, with the units in the header. It reads the
newest days' folders of that line only, so it costs the same on a store of years.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq

from wattline.contract.durations import parse_duration_ms
from wattline.contract.errors import ConfigError
from wattline.contract.schemas import INTENSITY_SCHEMA, conform
from wattline.ingest.sinks.parquet_store import ParquetStore

__all__ = ["newest_points", "store"]

_COLUMNS = (("energy_kgce", "energy\nkgce"), ("electricity_kwh", "elec.\nkWh"),
            ("production_t", "prod.\nt"), ("kgce_per_t", "\nkgce/t"),
            ("kwh_per_t", "\nkWh/t"))


def _days(directory: Path) -> list[str]:
    """The store's UTC days, newest first."""
    return sorted((p.name.removeprefix("date=") for p in directory.glob("date=*")
                   if p.is_dir()), reverse=True)


def _which_line(store: ParquetStore, days: list[str], name: str) -> tuple[str, str]:
    """``SITE/LINE`` as (site, line); a name holding ``/`` itself is split where the
    store has such a line."""
    splits = [(name[:i], name[i + 1:]) for i, c in enumerate(name) if c == "/"]
    splits = [(site, line) for site, line in splits if site and line]
    if not splits:
        raise ConfigError("line", f"expected SITE/LINE, got {name!r}")
    found = [(site, line) for site, line in splits
             if any(store.partition_dir(day, site, line).is_dir() for day in days)]
    if len(found) > 1:
        raise ConfigError("line", f"{name!r} names several lines of the store: "
                          + ", ".join(f"site {site!r} line {line!r}" for site, line in found))
    if not found:
        known = sorted({(p.parent.name, p.name) for day in days[:1]
                        for p in (store.directory / f"date={day}").glob("site=*/line=*")})
        shown = ", ".join(f"{site.removeprefix('site=')}/{line.removeprefix('line=')}"
                          for site, line in known[:10]) or "none"
        raise ConfigError("line", f"the store {store.directory} has no line {name!r}",
                          suggestion=f"lines on its newest day: {shown}")
    return found[0]


def newest_points(directory: str | os.PathLike[str], site: str, line: str,
                  ticks: int) -> pa.Table:
    """The newest ``ticks`` ticks of one line (every window of each), oldest first,
    one row per point."""
    store = ParquetStore(directory)
    parts: list[pa.Table] = []
    seen: set[int] = set()
    for day in _days(store.directory):
        folder = store.partition_dir(day, site, line)
        for path in sorted(folder.glob("part-*.parquet")):
            table = conform(pq.read_table(path))
            # The exact names are the columns; a digested folder holds only its own name.
            parts.append(table)
            seen.update(table["time_ms"].to_pylist())
        if len(seen) >= ticks:
            break
    if not parts:
        return INTENSITY_SCHEMA.empty_table()
    table = pa.concat_tables(parts)
    newest = sorted(seen)[-ticks:] if ticks > 0 else []
    table = table.filter(pa.compute.is_in(table["time_ms"], pa.array(newest, pa.int64())))
    order = sorted(range(table.num_rows), key=lambda i: (
        table["time_ms"][i].as_py(), parse_duration_ms(table["window"][i].as_py())))
    rows = table.take(pa.array(order, pa.int64()))
    keep = [i for i in range(rows.num_rows) if i + 1 == rows.num_rows
            or (rows["time_ms"][i].as_py(), rows["window"][i].as_py())
            != (rows["time_ms"][i + 1].as_py(), rows["window"][i + 1].as_py())]
    return rows.take(pa.array(keep, pa.int64()))  # a point written twice shows once


def _number(value: float | None) -> str:
    return "idle" if value is None else f"{value:,.1f}"


@click.group()
def store() -> None:
    """Look into a Parquet store written with --store (see docs/store.md)."""


@store.command()
@click.option("--store", "directory", required=True, envvar="WATTLINE_STORE",
              show_envvar=True, type=click.Path(file_okay=False),
              help="The store's folder, as given to `wattline run --store`.")
@click.option("--line", "name", required=True, metavar="SITE/LINE",
              help="The line, as SITE/LINE (e.g. demo/eaf-1).")
@click.option("-n", "ticks", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many of the newest ticks to show.")
def tail(directory: str, name: str, ticks: int) -> None:
    """Print a line's newest points: one row per tick and window, oldest first.

    \b
    wattline store tail --store /var/lib/wattline/store --line demo/eaf-1 -n 20
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    path = Path(directory)
    if not path.is_dir():
        raise click.ClickException(f"no store at {directory}; give the folder of --store")
    try:
        site, line = _which_line(ParquetStore(path), _days(path), name)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    points = newest_points(path, site, line, ticks)
    view = Table(title=f"{site}/{line}: newest {len(set(points['time_ms'].to_pylist()))} "
                 "tick(s)", title_justify="left", box=box.SIMPLE_HEAD,
                 caption="sums over each window: energy, electricity (elec.), production "
                 "(prod.); idle: no production", caption_justify="left")
    view.add_column("\ntick (UTC)", no_wrap=True)
    view.add_column("\nwindow", no_wrap=True)
    for _, header in _COLUMNS:
        view.add_column(header, justify="right")
    for row in points.to_pylist():
        when = datetime.fromtimestamp(row["time_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        view.add_row(when, row["window"], *(_number(row[key]) for key, _ in _COLUMNS))
    Console().print(view)
