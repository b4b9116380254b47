"""``wattline report``: reports read from the Parquet store.

``wattline report energy`` reads the store's final periods (and a batch line's batches)
of a report range and a baseline range of plant days, makes the figures of
``wattline.ingest.reports.energy_report`` and writes them as one HTML page or a JSON
document. Every refusal is one line naming what to change.

``wattline report cbam``, the CBAM report, is in ``cbam_cli``.
"""

from __future__ import annotations

import csv
import math
import sys
from datetime import date, timedelta
from pathlib import Path

import click
import orjson
import pyarrow as pa

from wattline.contract.errors import WattlineError
from wattline.contract.reference_data import load_reference
from wattline.ingest.app.cbam_cli import cbam
from wattline.ingest.config import Settings, check_config_file, settings_from_mapping
from wattline.ingest.reports.energy_report import MODEL_PERIODS, build_energy_report, report_json
from wattline.ingest.reports.store_periods import PlantDays, batches, periods

__all__ = ["energy", "report"]

DEFAULT_BASELINE_DAYS = 365
"""Without --baseline-from/--baseline-to, the baseline is the year before --from."""


def _day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}",
                                 param_hint=flag) from None


def _days(first: date, last: date, timezone: str, flags: str) -> PlantDays:
    try:
        return PlantDays(first, last, timezone)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=flags) from None


def _settings(config_file: str | None) -> Settings:
    try:
        return check_config_file(config_file) if config_file else settings_from_mapping({})
    except WattlineError as err:
        raise click.ClickException(str(err)) from None


def _only(table: pa.Table, name: str | None) -> pa.Table:
    if name is None or not table.num_rows:
        return table
    joined = [f"{s}/{ln}" for s, ln in zip(table["site"].to_pylist(),
                                           table["line"].to_pylist(), strict=True)]
    return table.filter(pa.array([j == name for j in joined]))


def read_variables(path: str) -> dict[str, dict[str, float]]:
    """A CSV of relevant variables: a ``period`` column of period labels (``2026-11-01``
    for a day, ``2026-11-01 08:00`` for a shift, ``2026-11`` for a month), then one
    column of numbers per variable, named in the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read --variables {path}: {err}") from None
    if not rows or not rows[0] or rows[0][0].strip() != "period" or len(rows[0]) < 2:
        raise click.ClickException(f"{path}:1: the header must be period, then the names "
                                   "of the relevant variables (e.g. period,degree_days)")
    names = [n.strip() for n in rows[0][1:]]
    if "" in names or len(set(names)) != len(names) or "production_t" in names:
        raise click.ClickException(f"{path}:1: name each variable once (production_t is "
                                   "already in the model)")
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names) + 1:
            raise click.ClickException(f"{path}:{number}: expected {len(names) + 1} values, "
                                       f"got {len(row)}")
        label = row[0].strip()
        for name, cell in zip(names, row[1:], strict=True):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise click.ClickException(f"{path}:{number}: {name} of {label} is not a "
                                           f"number: {cell!r}")
            out[name][label] = value
    return out


@click.group()
def report() -> None:
    """Reports read from a Parquet store written with `wattline run --store`."""


@report.command()
@click.option("--store", "directory", required=True, envvar="WATTLINE_STORE",
              show_envvar=True, type=click.Path(file_okay=False),
              help="The store's folder, as given to `wattline run --store`.")
@click.option("--from", "date_from", required=True, metavar="YYYY-MM-DD",
              help="First plant day of the report period.")
@click.option("--to", "date_to", required=True, metavar="YYYY-MM-DD",
              help="Last plant day of the report period (included).")
@click.option("--baseline-from", metavar="YYYY-MM-DD",
              help="First plant day of the baseline period the model is fitted on. "
                   f"[default: {DEFAULT_BASELINE_DAYS} days before --from]")
@click.option("--baseline-to", metavar="YYYY-MM-DD",
              help="Last plant day of the baseline period (included). [default: the day "
                   "before --from]")
@click.option("--line", "name", metavar="SITE/LINE",
              help="Report this line only. [default: every line in the store]")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              envvar="WATTLINE_CONFIG", show_envvar=True,
              help="The daemon's TOML config: each line's product ([lines] tables), which "
                   "lines are batch lines, plant_timezone. Without it no line has a product.")
@click.option("--model-period", type=click.Choice(MODEL_PERIODS), default="day",
              show_default=True,
              help="Periods the baseline model is fitted on and the savings are counted "
                   "per.")
@click.option("--variables", "variables_file", type=click.Path(exists=True, dir_okay=False),
              help="CSV of relevant variables for the baseline model besides production "
                   "(degree-days, ...): a period column with each period as the report "
                   "names it (2026-11-01, 2026-11-01 08:00, 2026-11), then a column per "
                   "variable; every baseline and report period needs a value.")
@click.option("--format", "form", type=click.Choice(["html", "json"]), default="html",
              show_default=True, help="A self-contained HTML page, or a JSON document.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="File to write; - writes to standard output.")
def energy(directory: str, date_from: str, date_to: str, baseline_from: str | None,
           baseline_to: str | None, name: str | None, config_file: str | None,
           model_period: str, variables_file: str | None, form: str, out: str) -> None:
    """Energy per tonne of each line against its national levels and its own baseline.

    For each line with periods in the store, over the plant days --from to --to:

    \b
      - kgce/t (kWh/t for aluminium: the unit of the product's national
        level) per day and per shift against the product's national benchmark
        and baseline levels, with the GB grade of each day; per batch for a
        batch line;
      - an ISO 50006 energy baseline: E = a + b x P, energy per period against
        production (plus c x V for each relevant variable of --variables), fitted
        by least squares on the final periods (--model-period) of the baseline
        days; R^2 must be at least 0.75 over at least 12 periods;
      - expected energy (the model, for what the line made) against actual, per
        report period, and the CUSUM of savings (expected - actual, added up): a
        rising CUSUM is energy saved, its slope the saving per period.

    Products, batch lines and the plant time zone come from --config (the
    daemon's file): a line without a product is an error, since it has no levels
    to be compared with (leave it out with --line). Periods still open are shown
    but not counted in the model or the savings. The HTML page has its charts
    drawn into it: it opens without a network.

    \b
    Examples:
      wattline report energy --store /var/lib/wattline/store --config wattline.toml \\
          --from 2026-11-01 --to 2026-11-30 --out november.html
      wattline report energy --store /var/lib/wattline/store --config wattline.toml \\
          --from 2026-11-01 --to 2026-11-30 --baseline-from 2026-01-01 \\
          --baseline-to 2026-06-30 --line plant-a/eaf-1 --format json --out eaf-1.json
    """
    settings = _settings(config_file)
    variables = read_variables(variables_file) if variables_file else {}
    tz = settings.plant_timezone
    first, last = date.fromisoformat("1970-01-01"), date.fromisoformat("1970-01-01")
    first, last = _day(date_from, "--from") or first, _day(date_to, "--to") or last
    span = _days(first, last, tz, "--from/--to")
    if (baseline_from is None) != (baseline_to is None):
        raise click.UsageError("give both --baseline-from and --baseline-to, or neither")
    base_first = _day(baseline_from, "--baseline-from") or first - timedelta(
        days=DEFAULT_BASELINE_DAYS)
    base_last = _day(baseline_to, "--baseline-to") or first - timedelta(days=1)
    base = _days(base_first, base_last, tz, "--baseline-from/--baseline-to")
    if not Path(directory).is_dir():
        raise click.ClickException(f"no store at {directory}; give the folder of "
                                   "`wattline run --store`")
    kinds = {"day", "shift", model_period}
    rows = [_only(periods(directory, kind, span), name) for kind in sorted(kinds)]
    rows.append(_only(periods(directory, model_period, base, final_only=True), name))
    table = pa.concat_tables(rows, promote_options="default")
    if name is not None and not table.num_rows:
        raise click.ClickException(f"the store has no periods of line {name!r} from "
                                   f"{base_first} to {last}; check --line (SITE/LINE) and "
                                   "the dates")
    lines = settings.alerts.lines
    batch_lines = {n for n, own in lines.items() if own.batch}
    heats = _only(batches(directory, span), name) if batch_lines else None
    try:
        result = build_energy_report(
            table, heats, products={n: own.product for n, own in lines.items()},
            batch_lines=batch_lines, levels=load_reference().levels,
            report=(span.start_ms, span.end_ms), baseline=(base.start_ms, base.end_ms),
            labels=(str(first), str(last), str(base_first), str(base_last)), timezone=tz,
            model_period=model_period, variables=variables)
    except WattlineError as err:
        raise click.ClickException(str(err)) from None
    if form == "json":
        text = orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        from wattline.ingest.reports.energy_html import report_html

        text = report_html(result)
    if out == "-":
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"cannot write {out}: {err.strerror}") from None
    click.echo(f"wrote the energy report of {len(result.lines)} line(s), {first} to {last}, "
               f"to {out}", err=True)


report.add_command(cbam)
