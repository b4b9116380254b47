"""`wattline bench kernels` at a tiny size: it runs, reports every figure, and its
vectorised baseline is checked against the kernel (and that check can fail)."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from wattline.ingest.bench.kernels import (
    _agree,
    _batches,
    make_plant,
    numpy_window_sums,
    run_full,
    run_kernel_bench,
)
from wattline.ingest.cli import main

REQUIRED = ("full_readings_per_s", "bare_readings_per_s", "reference_readings_per_s",
            "vectorised_readings_per_s", "first_call_s", "peak_rss_mb")


def test_cli_prints_a_table_and_ends_with_one_json_object() -> None:
    result = CliRunner().invoke(main, ["bench", "kernels", "--json", "--readings", "20000",
                                       "--lines", "10", "--reference-readings", "2000"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for key in REQUIRED:
        assert figures[key] > 0, key
    assert figures["vectorised_agrees"] is True
    assert "full kernel pipeline" in result.output


def test_figures_are_ratios_of_the_measured_rates() -> None:
    figures = run_kernel_bench(readings=20_000, lines=10, meters_per_line=4,
                               reference_readings=2_000, repeats=1).figures
    assert figures["full_over_bare"] == figures["full_readings_per_s"] / figures[
        "bare_readings_per_s"]
    assert figures["readings"] == 20_000


def test_the_agreement_check_catches_a_wrong_baseline() -> None:
    plant = make_plant(20_000, 5, 4)
    _, ticks, _ = run_full(plant, _batches(plant.readings, 5_000))
    sums, first, _ = numpy_window_sums(plant)
    assert _agree(plant, ticks, sums, first)
    wrong = sums.copy()
    wrong[0, wrong.shape[1] // 2, 0, 2] += 1.0  # one production sum off by a tonne
    assert not _agree(plant, ticks, wrong, first)


def test_the_bench_plant_has_counters_that_only_wrap_on_their_rollover() -> None:
    plant = make_plant(50_000, 5, 4)
    r = plant.readings
    for m in range(plant.meters.n_meters):
        mine = r.meter == m
        values = r.value[mine][np.argsort(r.ts_ms[mine], kind="stable")]
        drops = np.flatnonzero(np.diff(values) < 0)
        assert drops.size == 0 or plant.meters.rollover[m] > 0
