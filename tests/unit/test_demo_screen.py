"""The demo's screen: its live table in 80 columns, log lines above it, not through it."""

from __future__ import annotations

import io
import logging
import re

from rich.console import Console
from rich.live import Live

from wattline.ingest.app.demo import ConsoleLogHandler, LatestIntensity, LatestRow, render_table

WINDOWS = ["15m", "1h", "24h"]


def _latest() -> LatestIntensity:
    latest = LatestIntensity()
    # Wide figures: the potline's kWh/t run to six characters, its level too.
    for line, kgce, kwh in (("eaf-1", 412.3, 1450.0), ("potline-1", 1938.4, 15765.2),
                            ("kiln-1", 110.2, 55.1)):
        for window in WINDOWS:
            latest.rows[(line, window)] = LatestRow(1_732_406_400_000, kgce, kwh, 10.0)
    latest.rows[("eaf-1", "15m")] = LatestRow(1_732_406_400_000, None, None, 0.0)
    return latest


def _screen(width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render_table(_latest(), WINDOWS, 1234.0, 456_789.0, "amqtt (in-process)"))
    return console.export_text()


def test_the_table_fits_80_columns_with_every_figure_whole() -> None:
    text = _screen(80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.startswith(("eaf-1", "potline-1", "kiln-1"))}
    assert rows["potline-1"][2:] == ["1,938", "1,938", "1,938", "15,765", "15,765", "15,765",
                                     "13,000"]
    assert rows["eaf-1"][2:] == ["-", "412", "412", "61", "-", "1,450", "1,450"]
    assert rows["kiln-1"][2:] == ["110", "110", "110", "100", "55", "55", "55"]


def test_the_units_are_in_the_header_once_each_not_in_the_cells() -> None:
    text = _screen(80)
    header, body = text.split("─" * 10, 1)
    assert header.count("kgce/t") == 1 and header.count("kWh/t") == 1
    assert "kgce/t" not in body and "kWh/t" not in body


def test_a_log_line_prints_above_the_live_table_whole() -> None:
    out = io.StringIO()
    console = Console(width=80, file=out, force_terminal=True, color_system=None)
    log = logging.getLogger("wattline.test.demo-screen")
    log.propagate = False
    log.addHandler(ConsoleLogHandler(console))
    message = "sink parquet failed (disk full); retrying with backoff " + "x" * 30
    try:
        with Live(render_table(_latest(), WINDOWS, 1.0, 10.0, "mosquitto"), console=console,
                  auto_refresh=False) as live:
            live.refresh()
            log.warning(message)
            live.refresh()
    finally:
        log.handlers.clear()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    # Each frame Live draws ends with a carriage return; the record comes out at the top
    # of a frame (the table erased above it), and the table is drawn again below it.
    frames = [frame.strip("\n") for frame in plain.split("\r") if frame.strip()]
    table = frames[0]
    with_record = [frame for frame in frames if "sink parquet failed" in frame]
    assert len(with_record) == 1
    record, redrawn = with_record[0].split("\n", 1)[0], with_record[0]
    assert "WARNING wattline.test.demo-screen: sink parquet failed" in record
    assert message in redrawn.replace("\n", "")
    assert redrawn.endswith("\n" + table)  # below the record, the table whole, as before
    assert all(frame == table for frame in frames if frame not in with_record)
