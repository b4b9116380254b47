"""`wattline store tail`: the newest points of a line, read from a store the real sink wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from wattline.ingest.app.cli import main
from wattline.ingest.app.store_cli import newest_points
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.pipeline import Message, Pipeline
from wattline.ingest.sinks.parquet_store import ParquetStore, read_store

T0 = 1_732_406_400_000


def _write_store(directory: Path, sites_lines: list[tuple[str, str]], ticks: int) -> None:
    store = ParquetStore(directory)
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "windows": "1m,24h"}),
                        [store], clock=lambda: T0 / 1000 + 86_400)
    store.open()
    for start in range(0, ticks, 7):  # several batches, so several files
        msgs = []
        for k in range(start, min(start + 7, ticks)):
            ts = T0 + 10_000 * k
            for site, line in sites_lines:
                for kind, meter, value in (("energy", "incomer", 100.0 * k),
                                           ("production", "scale", 0.25 * k)):
                    topic = "/".join(["factory", site, line, kind, meter])
                    msgs.append(Message(topic, json.dumps({"ts": ts, "v": value}).encode(),
                                        ts / 1000))
        pipeline.process(msgs)


def _tail(*args: str) -> str:
    result = CliRunner().invoke(main, ["store", "tail", *args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_tail_prints_the_newest_ticks_of_one_line_with_units_in_the_header(
    tmp_path: Path,
) -> None:
    _write_store(tmp_path, [("plant", "eaf-1"), ("plant", "kiln-1")], ticks=40)
    everything = read_store(tmp_path, site="plant", line="eaf-1")
    newest_ms = sorted(set(everything["time_ms"].to_pylist()))[-3:]
    text = _tail("--store", str(tmp_path), "--line", "plant/eaf-1", "-n", "3")
    assert "plant/eaf-1: newest 3 tick(s)" in text
    for header in ("tick (UTC)", "window", "kgce", "kWh", "kgce/t", "kWh/t"):
        assert header in text
    body = [line.split() for line in text.splitlines() if line.startswith("  2024-")]
    assert len(body) == 6  # 3 ticks x 2 windows, oldest first
    assert [row[2] for row in body] == ["1m", "24h"] * 3
    shown = [datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
             for ms in newest_ms]
    assert [f"{row[0]} {row[1]}" for row in body] == [t for t in shown for _ in "ab"]
    last = everything.to_pylist()[-1]  # the 24h window of the newest tick
    assert body[-1][3:] == [f"{last[k]:,.1f}" for k in (
        "energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")]
    assert max(len(line) for line in text.splitlines()) <= 80


def test_newest_points_match_what_the_store_holds(tmp_path: Path) -> None:
    _write_store(tmp_path, [("Plant A", "EAF 1")], ticks=30)
    everything = read_store(tmp_path, site="Plant A", line="EAF 1")
    newest = newest_points(tmp_path, "Plant A", "EAF 1", 4)
    assert newest.num_rows == 8
    fourth_newest = sorted(set(everything["time_ms"].to_pylist()))[-4]
    wanted = everything.filter(pc.greater_equal(everything["time_ms"], fourth_newest))
    key = ("time_ms", "window")
    assert sorted(newest.to_pylist(), key=lambda r: [r[k] for k in key]) == sorted(
        wanted.to_pylist(), key=lambda r: [r[k] for k in key])


def test_a_line_the_store_does_not_have_is_one_line_naming_the_lines_it_has(
    tmp_path: Path,
) -> None:
    _write_store(tmp_path, [("plant", "eaf-1")], ticks=8)
    result = CliRunner().invoke(main, ["store", "tail", "--store", str(tmp_path),
                                       "--line", "plant/eaf-9"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "plant/eaf-1" in result.output


@pytest.mark.parametrize("name", ["eaf-1", "plant/"])
def test_a_line_not_written_site_slash_line_is_refused(tmp_path: Path, name: str) -> None:
    _write_store(tmp_path, [("plant", "eaf-1")], ticks=8)
    result = CliRunner().invoke(main, ["store", "tail", "--store", str(tmp_path),
                                       "--line", name])
    assert result.exit_code == 1 and "expected SITE/LINE" in result.output


def test_the_pyarrow_example_of_the_store_docs_reads_a_line_exactly(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    example = docs.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) == 3
    _write_store(tmp_path, [("demo", "eaf-1"), ("demo", "Öfen=3")], ticks=20)
    scope: dict[str, object] = {}
    exec(example.replace("/var/lib/wattline/store", str(tmp_path)), scope)
    points = scope["points"]
    wanted = read_store(tmp_path, site="demo", line="eaf-1")
    assert points.drop_columns(["date"]).sort_by(  # type: ignore[attr-defined]
        [("window", "ascending"), ("time_ms", "ascending")]).to_pylist() == wanted.sort_by(
        [("window", "ascending"), ("time_ms", "ascending")]).to_pylist()
