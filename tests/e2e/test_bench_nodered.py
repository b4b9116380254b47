"""`wattline bench ingest --peer node-red`: what it reports, never how fast (no timings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from wattline.benchmarks.ingest import Run
from wattline.benchmarks.ingest_nodered import LOADS, PEERS, Round, peer_result
from wattline.benchmarks.nodered_peer import DEFAULT_CACHE, PeerMissing, ensure_node_red
from wattline.ingest.app.broker import find_mosquitto
from wattline.ingest.app.cli import main

PARAMS = {"messages": 100, "batch_messages": 10, "publishers": 2, "lines": 10,
          "meters_per_line": 5, "rounds": 2, "qos": 1, "broker": "test", "node_red": "4.x",
          "node_red_skipped": None}


def flood_round(msgs_per_s: float, cpu_s: float, lost: int = 0) -> Round:
    handled = 1000 - lost
    run = Run(expected=1000, handled=handled, readings=handled, seconds=handled / msgs_per_s,
              publish_per_s=1.0)
    return Round(run, cpu_s, peak_rss=100 * 2**20)


def test_ratios_come_from_each_peers_fastest_round_and_judge_issue_19s_targets() -> None:
    results = {("wattline", "single"): [flood_round(8000, 0.04, lost=1),
                                          flood_round(10000, 0.05)],
               ("node-red", "single"): [flood_round(5000, 0.1)],
               ("wattline", "batch100"): [flood_round(1000, 0.1)],
               ("node-red", "batch100"): [flood_round(500, 0.3)]}
    figures = peer_result(results, PARAMS).figures
    assert figures["wattline_over_node_red_single_msgs_per_s"] == pytest.approx(2.0)
    assert figures["wattline_over_node_red_single_cpu_per_message"] == pytest.approx(0.5)
    assert figures["target_single_met"] is True
    assert figures["target_batch100_met"] is False  # 2x, not 3x
    assert figures["wattline_single_lost"] == 1  # over all rounds


def test_without_node_red_only_the_daemon_is_reported_and_the_notes_say_why() -> None:
    results = {("wattline", name): [flood_round(1000, 0.1)] for name, _ in LOADS}
    result = peer_result(results, {**PARAMS, "node_red_skipped": "npm is not installed"})
    assert "wattline_over_node_red_single_msgs_per_s" not in result.figures
    assert any(note == "Node-RED skipped: npm is not installed" for note in result.notes)


def test_cli_bench_ingest_peer_node_red_ends_with_every_figure_for_both_peers() -> None:
    if find_mosquitto() is None:
        pytest.skip("Mosquitto is not installed (make setup)")
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("no Node-RED peer: npm or node is not installed (make setup)")
    ensure_node_red(DEFAULT_CACHE)  # with npm here, a failed install is a failure
    result = CliRunner().invoke(main, ["bench", "ingest", "--peer", "node-red", "--json",
                                       "--messages", "300", "--batch-messages", "30",
                                       "--rounds", "1", "--peer-cache", str(DEFAULT_CACHE)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for load_name, readings in LOADS:
        for peer in PEERS:
            key = f"{peer.replace('-', '_')}_{load_name}"
            assert figures[f"{key}_msgs_per_s"] > 0
            assert figures[f"{key}_readings_per_s"] == pytest.approx(
                readings * figures[f"{key}_msgs_per_s"])
            assert figures[f"{key}_cpu_s_per_message"] >= 0
            assert figures[f"{key}_peak_rss_bytes"] > 0
            assert figures[f"{key}_lost"] == 0
            assert figures[f"{key}_dropped"] == 0  # the loads are in order, none late
        assert figures[f"wattline_over_node_red_{load_name}_msgs_per_s"] > 0
        assert isinstance(figures[f"target_{load_name}_met"], bool)


def test_a_cache_without_npm_or_node_red_gives_a_one_line_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither node nor npm on it
    with pytest.raises(PeerMissing) as err:
        ensure_node_red(tmp_path / "cache")
    assert "\n" not in str(err.value) and "not installed" in str(err.value)
