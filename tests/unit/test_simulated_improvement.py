"""``--improve``: a line's energy at a factor of its modelled rate from a time on, and the
saving the truth file states for it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from wattline.simulators.events import EfficiencyDrift, parse_improve
from wattline.simulators.expectations import saving_rows, write_expectations
from wattline.simulators.plant import line_totals
from wattline.simulators.scenario import load_scenario


def test_improve_is_line_at_start_times_factor_with_durations_in_days() -> None:
    improvement = parse_improve("kiln-1@21dx0.95")
    assert (improvement.line, improvement.start_s, improvement.factor) == (
        "kiln-1", 21 * 86_400, 0.95)
    assert improvement.saving_share == pytest.approx(0.05)
    with pytest.raises(ValueError, match="LINE@STARTxFACTOR"):
        parse_improve("kiln-1@21d+1dx0.95")


def test_energy_after_the_start_is_the_factor_of_the_unchanged_line() -> None:
    params = load_scenario("kiln").params
    times = [0.0, 3600.0, 7200.0, 10_800.0]
    plain = list(line_totals("kiln-1", params, times, seed=4))
    improved = list(line_totals("kiln-1", params, times, seed=4,
                                events=[parse_improve("kiln-1@1hx0.9")]))
    assert improved[1] == pytest.approx(plain[1])  # before the start: the same
    for before, after in zip(plain[1:], improved[1:], strict=True):
        for meter in (0, 1):  # power and coal: 0.9 times from 1 h on
            assert after[meter] - improved[1][meter] == pytest.approx(
                0.9 * (before[meter] - plain[1][meter]))
        assert after[2] == pytest.approx(before[2])  # clinker as modelled


def test_the_truth_file_states_each_saving_and_from_when(tmp_path: Path) -> None:
    events = [parse_improve("kiln-1@5mx0.95"),
              EfficiencyDrift("eaf-1", start_s=60.0, duration_s=120.0, factor=1.2)]
    assert saving_rows(events, site="demo", start_ms=1_000) == [
        {"kind": "expected_saving", "cause": "improve", "site": "demo", "line": "kiln-1",
         "from_ms": 301_000, "saving_share": pytest.approx(0.05)},
        {"kind": "expected_saving", "cause": "drift", "site": "demo", "line": "eaf-1",
         "from_ms": 181_000, "saving_share": pytest.approx(-0.2)}]
    path = tmp_path / "truth.jsonl"
    write_expectations(path, ["kiln-1"], site="demo", start_ms=1_000, plant_s=600.0,
                       rate_s=10.0, seed=0, events=events[:1], windows=["15m"])
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [r for r in rows if r["kind"] == "expected_saving"] == saving_rows(
        events[:1], site="demo", start_ms=1_000)
