"""`wattline bench startup` against its own Mosquitto, every start warm (--no-cold: the cache is
filled first, untimed, so the test does not compile): each start reaches MQTT and a first
accepted reading, in that order, and the figures and rows say so (never timed)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import missing_component
from tests.processes import ComponentMissing
from wattline.benchmarks.report import BenchResult
from wattline.benchmarks.startup import run_startup_bench
from wattline.ingest.app.broker import find_mosquitto
from wattline.ingest.app.cli import main


@pytest.fixture(scope="module")
def warm() -> BenchResult:
    if find_mosquitto() is None:
        missing_component(ComponentMissing("mosquitto"))
    return run_startup_bench(warm_starts=1, cold=False, timeout_s=120)


def test_every_start_reaches_mqtt_then_a_first_accepted_reading(warm: BenchResult) -> None:
    (start,) = warm.figures["starts"]
    assert start["cache"] == "warm" and start["variant"] == "this"
    assert 0 < start["metrics_s"] <= start["connected_s"] <= start["accepted_s"]
    assert start["warm_up_s"] is not None and start["warm_up_s"] >= 0


def test_the_figures_are_the_fastest_start_of_each_cache(warm: BenchResult) -> None:
    f = warm.figures
    assert f["this_warm_accepted_s"] == f["starts"][0]["accepted_s"]
    assert "this_cold_accepted_s" not in f and f["cold_target_met"] is None
    rows = {row.what for row in warm.rows}
    assert "this, warm cache: first reading accepted" in rows


def test_cli_rejects_a_run_with_no_start() -> None:
    result = CliRunner().invoke(main, ["bench", "startup", "--no-cold", "--warm-starts", "0"])
    assert result.exit_code != 0
    assert "at least one start" in result.output


def test_the_json_line_holds_every_start() -> None:
    if find_mosquitto() is None:
        missing_component(ComponentMissing("mosquitto"))
    result = CliRunner().invoke(main, ["bench", "startup", "--json", "--no-cold",
                                       "--warm-starts", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert len(figures["starts"]) == 1 and figures["this_warm_accepted_s"] > 0
