"""`wattline bench sink` at a tiny size against its own VictoriaMetrics: every figure is there
and positive, the ratios are the rates divided, and every point written is stored."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import missing_component
from tests.processes import ComponentMissing
from wattline.benchmarks.report import BenchResult
from wattline.benchmarks.sink import (
    find_victoria_metrics,
    run_sink_bench,
    split_batches,
    synthetic_intensity,
)
from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.app.cli import main

RATES = ("influx_batched_points_per_s", "influx_single_points_per_s", "raw_post_points_per_s",
         "raw_precompressed_points_per_s", "spool_write_mb_per_s",
         "raw_write_mb_per_s", "spool_drain_mb_per_s", "raw_read_mb_per_s")
RATIOS = {
    "influx_batched_over_single": ("influx_batched_points_per_s", "influx_single_points_per_s"),
    "influx_batched_over_raw": ("influx_batched_points_per_s", "raw_post_points_per_s"),
    "influx_batched_over_raw_precompressed": ("influx_batched_points_per_s",
                                              "raw_precompressed_points_per_s"),
    "spool_write_over_raw": ("spool_write_mb_per_s", "raw_write_mb_per_s"),
    "spool_drain_over_raw": ("spool_drain_mb_per_s", "raw_read_mb_per_s"),
}
TINY = {"points": 2_000, "batch_points": 500, "single_points": 200, "spool_mb": 2.0}


def _needs_victoria_metrics() -> None:
    """Skip without victoria-metrics (fail in CI, which installs it)."""
    if find_victoria_metrics() is None:
        missing_component(ComponentMissing("victoria-metrics"))


@pytest.fixture(scope="module")
def tiny() -> BenchResult:
    _needs_victoria_metrics()
    return run_sink_bench(**TINY)


def test_every_figure_is_there_and_positive(tiny: BenchResult) -> None:
    for key in (*RATES, *RATIOS):
        assert isinstance(tiny.figures[key], float), key
        assert tiny.figures[key] > 0, key


def test_ratios_are_the_rates_divided(tiny: BenchResult) -> None:
    for ratio, (subject, baseline) in RATIOS.items():
        assert tiny.figures[ratio] == pytest.approx(
            tiny.figures[subject] / tiny.figures[baseline], rel=1e-12)


def test_every_point_written_is_stored(tiny: BenchResult) -> None:
    figures = tiny.figures
    assert figures["points_stored_ok"] is True
    assert figures["points_stored"] == figures["points_written"] == 3 * TINY["points"]
    assert figures["field_values_stored"] == figures["field_values_written"]
    assert figures["spool_rows_read_ok"] is True
    assert figures["raw_points_stored_ok"] is True
    assert any(row.what == "influx stored = written" and row.agree == "yes"
               for row in tiny.rows)


def test_notes_name_each_baseline_and_the_batch_size(tiny: BenchResult) -> None:
    notes = "\n".join(tiny.notes)
    assert "batches of 500 rows" in notes
    assert "one per request" in notes
    assert "encoded before the timing" in notes and "gzipped at level 1" in notes
    assert "written to plain files and fsynced" in notes
    assert "read whole and unlinked" in notes


def test_the_raw_baseline_posts_what_the_writer_would(tiny: BenchResult) -> None:
    rows = {row.what: row for row in tiny.rows}
    raw = rows["raw pre-joined gzip POST"]
    assert raw.agree == "baseline"
    assert raw.ratio == f"{tiny.figures['influx_batched_over_raw']:.2f}"
    assert len(tiny.figures["raw_post_rounds_points_per_s"]) == tiny.figures["rounds"]


def test_synthetic_results_are_realistic_batches() -> None:
    table = synthetic_intensity(1_000, first_tick_ms=1_700_000_000_000, site_prefix="b-")
    assert table.schema == INTENSITY_SCHEMA
    assert table.num_rows == 1_000
    times = table.column("time_ms").to_numpy()
    assert (times[1:] >= times[:-1]).all() and times[-1] > times[0]
    assert len(set(table.column("site").to_pylist())) == 3
    assert len(set(table.column("window").to_pylist())) == 3
    assert 0 < table.column("kgce_per_t").null_count < table.num_rows // 2
    batches = split_batches(table, 300)
    assert [b.num_rows for b in batches] == [300, 300, 300, 100]


def test_cli_ends_with_one_json_line() -> None:
    _needs_victoria_metrics()
    result = CliRunner().invoke(main, [
        "bench", "sink", "--json", "--points", "1000", "--batch-points", "250",
        "--single-points", "100", "--spool-mb", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for key in (*RATES, *RATIOS):
        assert figures[key] > 0, key
    assert figures["points_stored_ok"] is True
