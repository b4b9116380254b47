"""`wattline bench ingest` at a tiny size against its own Mosquitto: every consumer gets every
message of every load, the figures are all there, and the gateways' loads are ones the
collector accepts whole (so the collector's rate is not flattered by drops)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from wattline.benchmarks.ingest import (
    CASES,
    VARIANTS,
    Run,
    _best,
    histogram_quantile,
    message_latencies,
    plant_loads,
    run_ingest_bench,
)
from wattline.benchmarks.ingest_publisher import build_messages, message_slots
from wattline.benchmarks.report import BenchResult
from wattline.contract.topics import TopicTemplate
from wattline.ingest.app.broker import find_mosquitto
from wattline.ingest.app.cli import main
from wattline.ingest.decode.payloads import decode_readings

NOW_MS = 1_732_406_400_000
CASE_KEYS = ("payload", "qos", "bare_readings_per_s", "collector_readings_per_s",
             "naive_readings_per_s", "lost", "latency_p50_s", "latency_p99_s")

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None,
                                     reason="Mosquitto is not installed (make setup)")


@pytest.fixture(scope="module")
def tiny() -> BenchResult:
    if find_mosquitto() is None:
        pytest.skip("Mosquitto is not installed (make setup)")
    return run_ingest_bench(messages=1_000, batch_messages=100, publishers=2,
                            lines_per_publisher=2, meters_per_line=3, latency_seconds=0.5,
                            rounds=2)


# -- the loads the gateways publish --------------------------------------------------------------


@pytest.mark.parametrize("load_name", ["single", "batch100"])
def test_every_message_is_a_contract_topic_and_payload(load_name: str) -> None:
    loads = plant_loads(load_name, 60, 2, 2, 3, "factory", "p", NOW_MS)
    template = TopicTemplate(prefix="factory")
    for load in loads:
        for topic, payload in build_messages(load):
            meter = template.parse(topic)
            assert not meter.is_meta and meter.kind in ("energy", "production")
            decoded = decode_readings(payload, now_ms=NOW_MS, max_future_ms=300_000,
                                      max_past_ms=30 * 86_400_000, max_bytes=1 << 20)
            assert len(decoded.ts_ms) == load.readings_per_message
            assert not any(decoded.dropped.values())


@pytest.mark.parametrize("load_name", ["single", "batch100"])
def test_each_line_only_moves_forward_and_ends_a_minute_ago(load_name: str) -> None:
    (load,) = plant_loads(load_name, 90, 1, 2, 3, "factory", "p", NOW_MS)
    newest: dict[int, int] = {}
    last_of_meter: dict[tuple[int, int], int] = {}
    for (_step, line, meter), (_, payload) in zip(message_slots(load), build_messages(load),
                                                 strict=True):
        ts = json.loads(payload)["ts"]
        ts = ts if isinstance(ts, list) else [ts]
        assert ts == sorted(ts)
        assert ts[0] > last_of_meter.get((line, meter), -1)
        # within the allowed lateness (30 s) of everything the line has seen
        assert ts[0] > newest.get(line, 0) - 30_000
        last_of_meter[(line, meter)] = ts[-1]
        newest[line] = max(newest.get(line, 0), ts[-1])
    assert max(newest.values()) <= NOW_MS - 60_000


def test_messages_are_shared_out_between_gateways_on_lines_of_their_own() -> None:
    loads = plant_loads("single", 101, 3, 2, 3, "factory", "p", NOW_MS)
    assert [x.messages for x in loads] == [34, 34, 33]
    lines = [{t.split("/")[2] for t, _ in build_messages(x)} for x in loads]
    assert all(not (a & b) for i, a in enumerate(lines) for b in lines[i + 1:])


# -- the figures' arithmetic ---------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.5, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.38)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_a_message_is_output_by_the_first_batch_that_counts_it() -> None:
    published = np.array([10.0, 10.1, 10.2, 10.3])
    # before the run the collector had handled 5 messages (the probe)
    handled_at = [(9.0, 5), (10.5, 7), (11.0, 9)]
    latencies = message_latencies(published, handled_at, base=5)
    assert latencies == pytest.approx([0.5, 0.4, 0.8, 0.7])
    assert len(message_latencies(published, [(10.5, 7)], base=5)) == 2


# -- the benchmark, end to end -------------------------------------------------------------------


@needs_mosquitto
def test_tiny_run_reports_every_figure_with_positive_rates(tiny: BenchResult) -> None:
    figures = tiny.figures
    for load_name, qos in CASES:
        key = f"qos{qos}_{load_name}"
        for variant in VARIANTS:
            assert figures[f"{variant}_{key}_msgs_per_s"] > 0, (variant, key)
            assert figures[f"{variant}_{key}_readings_per_s"] > 0, (variant, key)
        assert figures[f"collector_over_bare_{key}"] > 0
        assert figures[f"collector_over_naive_{key}"] > 0
        assert 0 < figures[f"latency_{key}_p50_s"] <= figures[f"latency_{key}_p99_s"] < 30
    assert figures["latency_p50_s"] > 0 and figures["latency_p99_s"] > 0
    assert (figures["messages"], figures["batch_messages"]) == (1_000, 100)


@needs_mosquitto
def test_tiny_run_loses_nothing_at_qos_1(tiny: BenchResult) -> None:
    assert tiny.figures["lost_qos1"] == 0
    for load_name, _ in CASES:
        for variant in VARIANTS:
            assert tiny.figures[f"{variant}_qos1_{load_name}_lost"] == 0, (variant, load_name)
        assert tiny.figures[f"latency_qos1_{load_name}_lost"] == 0


@needs_mosquitto
def test_batches_carry_a_hundred_readings_per_message(tiny: BenchResult) -> None:
    f = tiny.figures
    for variant in VARIANTS:
        batch = f"{variant}_qos1_batch100"
        assert f[f"{batch}_readings_per_s"] / f[f"{batch}_msgs_per_s"] == pytest.approx(100.0)
        assert f[f"{variant}_qos1_single_readings_per_s"] == f[f"{variant}_qos1_single_msgs_per_s"]


@needs_mosquitto
def test_the_collector_drops_no_reading_of_the_loads(tiny: BenchResult) -> None:
    for load_name, qos in CASES:
        assert tiny.figures[f"collector_qos{qos}_{load_name}_dropped"] == 0


@needs_mosquitto
def test_json_cases_hold_all_four_payload_and_qos_combinations(tiny: BenchResult) -> None:
    cases = tiny.figures["cases"]
    assert sorted((c["payload"], c["qos"]) for c in cases) == sorted(CASES)
    for case in cases:
        assert all(key in case for key in CASE_KEYS)
    json.dumps(tiny.figures)  # one JSON object, as --json prints it


@needs_mosquitto
def test_cli_bench_ingest_ends_with_the_json_object() -> None:
    bench = main.commands["bench"]
    if "ingest" not in bench.commands:  # type: ignore[attr-defined]
        pytest.skip("`wattline bench ingest` is not registered in ingest/app/cli.py yet")
    result = CliRunner().invoke(main, ["bench", "ingest", "--json", "--messages", "400",
                                       "--batch-messages", "40", "--latency-seconds", "0.3"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert sorted((c["payload"], c["qos"]) for c in figures["cases"]) == sorted(CASES)
    assert figures["lost_qos1"] == 0


@needs_mosquitto
def test_shared_subscription_collectors_get_every_message_and_are_reported() -> None:
    result = run_ingest_bench(messages=400, batch_messages=40, publishers=2,
                              latency_seconds=0.3, shared_collectors=2, rounds=1)
    for case in result.figures["cases"]:
        assert case["shared_readings_per_s"] > 0
        assert case["shared_over_bare"] > 0
        if case["qos"] == 1:
            assert case["shared_lost"] == 0
    assert any("collectors, shared sub." in row.what for row in result.rows)


def test_a_consumer_reports_its_fastest_round_and_the_losses_of_all_its_rounds() -> None:
    slow = Run(expected=100, handled=100, readings=100, seconds=2.0, publish_per_s=1.0)
    fast_lossy = Run(expected=100, handled=97, readings=97, seconds=0.5, publish_per_s=1.0)
    lossy = Run(expected=100, handled=99, readings=99, seconds=1.0, publish_per_s=1.0)
    best = _best([slow, fast_lossy, lossy])
    assert best.msgs_per_s == fast_lossy.msgs_per_s
    assert best.lost == 4


def test_the_figures_say_how_many_rounds_were_run(tiny: BenchResult) -> None:
    assert tiny.figures["rounds"] == 2
    assert any("fastest of 2" in note for note in tiny.notes)
