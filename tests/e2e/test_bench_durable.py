"""`wattline bench ingest --durable` at a tiny size against its own Mosquitto and
VictoriaMetrics: both collectors get every message, the durable one logs every batch,
checkpoints and writes points, and the ratios are the rates divided (never timed)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import missing_component
from tests.processes import ComponentMissing
from wattline.benchmarks.ingest_durable import DURABLE_LOADS, run_durable_bench
from wattline.benchmarks.report import BenchResult
from wattline.benchmarks.sink import find_victoria_metrics
from wattline.ingest.app.broker import find_mosquitto
from wattline.ingest.app.cli import main

ROUNDS = 2


def _needs_components() -> None:
    if find_mosquitto() is None:
        missing_component(ComponentMissing("mosquitto"))
    if find_victoria_metrics() is None:
        missing_component(ComponentMissing("victoria-metrics"))


@pytest.fixture(scope="module")
def tiny() -> BenchResult:
    _needs_components()
    return run_durable_bench(messages=600, batch_messages=60, publishers=2,
                             lines_per_publisher=2, meters_per_line=3, rounds=ROUNDS)


def test_both_collectors_get_every_message_of_every_round(tiny: BenchResult) -> None:
    f = tiny.figures
    assert f["lost_qos1"] == 0
    for load in DURABLE_LOADS:
        for variant in ("plain", "durable"):
            assert f[f"{variant}_qos1_{load}_lost"] == 0, (variant, load)
            rounds = f[f"{variant}_qos1_{load}_rounds_msgs_per_s"]
            assert len(rounds) == ROUNDS and min(rounds) > 0, (variant, load)
        assert f[f"collector_qos1_{load}_dropped"] == 0


def test_the_ratio_is_the_fastest_rounds_divided(tiny: BenchResult) -> None:
    f = tiny.figures
    for load in DURABLE_LOADS:
        durable = max(f[f"durable_qos1_{load}_rounds_msgs_per_s"])
        plain = max(f[f"plain_qos1_{load}_rounds_msgs_per_s"])
        assert f[f"durable_over_plain_qos1_{load}"] == pytest.approx(durable / plain, rel=1e-12)
        assert f[f"durable_over_plain_qos1_{load}_median"] > 0
    met = all(f[f"durable_over_plain_qos1_{load}"] >= 0.8 for load in DURABLE_LOADS)
    assert f["durable_target_met"] is met


def test_the_durable_collector_logs_checkpoints_and_writes(tiny: BenchResult) -> None:
    f = tiny.figures
    for load in DURABLE_LOADS:
        assert f[f"durable_qos1_{load}_wal_fsyncs"] > 0
        assert f[f"durable_qos1_{load}_messages_per_fsync"] >= 1
        assert f[f"durable_qos1_{load}_checkpoints"] >= ROUNDS  # at least one at each stop
        assert f[f"durable_qos1_{load}_points_written"] > 0
        assert f[f"durable_qos1_{load}_sink_errors"] == 0


def test_the_table_shows_each_load_against_its_baseline(tiny: BenchResult) -> None:
    rows = {row.what: row for row in tiny.rows}
    for load in DURABLE_LOADS:
        baseline = rows[f"{load} QoS 1 plain, no sink"]
        assert baseline.agree == "baseline"
        assert baseline.ratio == f"{tiny.figures[f'durable_over_plain_qos1_{load}']:.2f}"
        assert rows[f"{load} QoS 1 lost plain/durable"].agree == "yes"
    assert any("write-ahead log fsynced per batch" in note for note in tiny.notes)


def test_cli_durable_ends_with_the_json_object() -> None:
    _needs_components()
    result = CliRunner().invoke(main, ["bench", "ingest", "--durable", "--json", "--messages",
                                       "200", "--batch-messages", "20", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["lost_qos1"] == 0
    assert figures["durable_over_plain_qos1_single"] > 0
