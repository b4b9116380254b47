"""``wattline report cbam``: the CBAM report of a range of plant days, from the store.

Reads the ``day`` periods of the range from the Parquet store
(``wattline.ingest.reports.store_periods``), each line's product, process CO2 and
meters from the daemon's config, the factors from the config and the reference data,
makes the figures of ``wattline.ingest.reports.cbam_report`` and writes them as JSON,
CSV or one HTML page. Gaps and lines left out are also said on standard error, one
line each; a refusal is one line naming what to change, with exit status 1 (2 for a
wrong flag).
"""

from __future__ import annotations

import sys
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import orjson

from wattline.contract.errors import WattlineError
from wattline.contract.reference_data import load_reference
from wattline.ingest.config import Settings, check_config_file, settings_from_mapping
from wattline.ingest.reports.cbam_factors import grid_factor, line_factors
from wattline.ingest.reports.cbam_report import CbamReport, build_cbam_report, cbam_csv, cbam_json
from wattline.ingest.reports.store_periods import PlantDays, periods
from wattline.ingest.sinks.store_tables import PERIODS

__all__ = ["cbam"]


def _day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}",
                                 param_hint=flag) from None


def _settings(config_file: str | None) -> Settings:
    try:
        return check_config_file(config_file) if config_file else settings_from_mapping({})
    except WattlineError as err:
        raise click.ClickException(str(err)) from None


def _store(directory: str | None, settings: Settings) -> Path:
    chosen = directory or settings.store
    if not chosen:
        raise click.UsageError("give the store's folder with --store (or a config whose "
                               "store key names it)")
    path = Path(chosen)
    if not path.is_dir():
        raise click.ClickException(f"no store at {path}; give the folder of "
                                   "`wattline run --store`")
    if not PERIODS.days(path):
        raise click.ClickException(
            f"the store at {path} holds no period rows: only a daemon of this version "
            "keeps shift, day and month rows in its store; run it with --store and report "
            "on the days it has written")
    return path


def _version() -> str:
    try:
        return version("wattline")
    except PackageNotFoundError:
        return ""


def _warn(report: CbamReport) -> None:
    for line in report.lines:
        if line.gaps:
            click.echo(f"warning: {line.line}: {len(line.counted_days)} of {report.n_days} "
                       f"days counted; not counted: {' '.join(str(d) for d in line.gaps)}",
                       err=True)
    for name, why in report.left_out:
        click.echo(f"warning: {name} left out: {why}", err=True)


@click.command()
@click.option("--store", "directory", envvar="WATTLINE_STORE", show_envvar=True,
              type=click.Path(file_okay=False),
              help="The store's folder, as given to `wattline run --store`. [default: the "
                   "config's store]")
@click.option("--from", "date_from", required=True, metavar="YYYY-MM-DD",
              help="First plant day of the reporting period (a quarter: 2026-01-01).")
@click.option("--to", "date_to", required=True, metavar="YYYY-MM-DD",
              help="Last plant day of the reporting period, included (2026-03-31).")
@click.option("--line", "name", metavar="SITE/LINE",
              help="Report this line only. [default: every line with a product]")
@click.option("--format", "form", type=click.Choice(["json", "csv", "html"]), default="html",
              show_default=True, help="A JSON document, a CSV table (one row per line) or a "
                                      "self-contained HTML page.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              envvar="WATTLINE_CONFIG", show_envvar=True,
              help="The daemon's TOML config: each line's product ([lines] tables), its "
                   "process CO2 (process_co2_*), meters ([meters]), plant_timezone and "
                   "grid_factor. Without it no line has a product, so none can be reported.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="File to write; - writes to standard output.")
def cbam(directory: str | None, date_from: str, date_to: str, name: str | None, form: str,
         config_file: str | None, out: str) -> None:
    """Embedded emissions per line and CN code for the EU CBAM, from the store.

    For each line whose product (config: [lines."SITE/LINE"] product) has a CN
    code, over the plant days --from to --to (whole days in plant_timezone,
    both included; a quarter or a year):

    \b
      - activity level: tonnes produced (production_t);
      - direct emissions, tCO2e: carriers burnt in the line (scope 1), plus
        process CO2 where the config gives it by mass balance;
      - indirect emissions, tCO2e: bought electricity at the grid factor, and
        bought steam and heat (scope 2);
      - specific embedded emissions, direct and indirect, tCO2e per tonne;
      - every factor used, with its source.

    The figures are the sums of the final day periods the daemon wrote to the
    store. A day with no final row (not written, still open, or written before
    wattline recorded carbon) is not counted and not estimated: it is listed as
    a gap, in the report and on standard error. The report states what it does
    not cover: precursors, process emissions unless configured, gases other
    than CO2; and that for iron, steel and aluminium the EU charges direct
    emissions only.

    \b
    Examples:
      wattline report cbam --store /var/lib/wattline/store --config wattline.toml \\
          --from 2026-01-01 --to 2026-03-31 --out q1-cbam.html
      wattline report cbam --config wattline.toml --from 2026-01-01 \\
          --to 2026-12-31 --line plant-a/eaf-1 --format json

    Exit status: 0 when written (gaps are warnings), 1 when the report cannot be
    made (the message says what to change), 2 for a wrong option.
    """
    settings = _settings(config_file)
    first, last = _day(date_from, "--from"), _day(date_to, "--to")
    try:
        days = PlantDays(first, last, settings.plant_timezone)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--from/--to") from None
    store = _store(directory, settings)
    site = line = None
    if name is not None:
        if "/" not in name.strip("/"):
            raise click.BadParameter(f"expected SITE/LINE, got {name!r}", param_hint="--line")
        site, line = name.split("/", 1)
    rows = periods(store, "day", days, site=site, line=line)
    if name is not None and not rows.num_rows and name not in settings.alerts.lines:
        everyone = periods(store, "day", days)
        held = sorted({f"{r['site']}/{r['line']}" for r in everyone.select(
            ["site", "line"]).to_pylist()})
        raise click.ClickException(
            f"the store has no day periods of line {name!r} from {first} to {last}, and the "
            f"config names no such line; lines with days then: {', '.join(held) or 'none'}")
    reference = load_reference()
    lines = settings.alerts.lines
    cn_codes = {p: getattr(level, "cbam_cn_code", None) for p, level in reference.levels.items()}
    grid = grid_factor(getattr(settings, "grid_factor", None), reference)
    known = sorted({f"{r['site']}/{r['line']}" for r in rows.select(["site", "line"]).to_pylist()}
                   | set(lines))
    try:
        report = build_cbam_report(
            rows, days, products={n: own.product for n, own in lines.items()},
            cn_codes=cn_codes,
            factors={n: line_factors(n, settings.meters, grid, reference) for n in known},
            process={n: own.process_co2 for n, own in lines.items()}, only=name)
    except WattlineError as err:
        raise click.ClickException(str(err)) from None
    if form == "json":
        text = orjson.dumps(cbam_json(report), option=orjson.OPT_INDENT_2).decode() + "\n"
    elif form == "csv":
        text = cbam_csv(report)
    else:
        from wattline.ingest.reports.cbam_html import cbam_html

        text = cbam_html(report, _version())
    _warn(report)
    if out == "-":
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"cannot write {out}: {err.strerror}; give a writable "
                                   "file with --out") from None
    click.echo(f"wrote the CBAM report of {len(report.lines)} line(s), {first} to {last}, "
               f"to {out}", err=True)
