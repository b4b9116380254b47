"""``wattline report cbam`` on a store written by a simulated month.

January 2026 of a cement kiln (raw coal and electricity) and an EAF steel shop
(electricity and natural gas), as the simulators' gateways publish them (meta, counter
registers that wrap, RFC 3339 local-time stamps), goes through the collector's
pipeline (decoding, the kernels, the periods stage) into a Parquet store, in process
and at full speed: no broker is needed to write a store. The report of the month, run
as the user runs it, must give each line's activity level and emissions as the
simulators' own truth has them (plain Python over what was published, with the
reference factors: ``totals_truth``'s rules, none of the kernels), to 1e-9, every one
of the 31 days counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from wattline.contract.reference_data import load_reference
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.pipeline import Message, Pipeline
from wattline.ingest.sinks.parquet_store import ParquetStore
from wattline.simulators.publisher import published_series, schedule
from wattline.simulators.truth import MeterSeries, meter_deltas

BERLIN = ZoneInfo("Europe/Berlin")
LINES = ("kiln-1", "eaf-1")
PRODUCTS = {"kiln-1": "cement_clinker", "eaf-1": "eaf_steel"}
SITE = "works"
KILN_PROCESS_CO2 = 0.525  # tCO2 per t clinker, configured by mass balance
START_MS = int(datetime(2025, 12, 31, 23, 0, tzinfo=BERLIN).timestamp() * 1000)
END_MS = int(datetime(2026, 2, 1, 3, 0, tzinfo=BERLIN).timestamp() * 1000)  # days closed
RATE_S = 300.0
STREAM = {"lines": LINES, "site": SITE, "start_ms": START_MS,
          "plant_s": (END_MS - START_MS) / 1000, "rate_s": RATE_S, "seed": 7,
          "readings_per_message": 1}  # the ladle weigher sends one message per heat


def _truth_of_january(series: list[MeterSeries]) -> dict[str, dict[str, float]]:
    """Per line: tonnes, direct and indirect tCO2 of the deltas in January's plant days,
    from the reference factors (scope 1: burnt, scope 2: bought; electricity at the
    newest national grid factor), as exact fractions."""
    reference = load_reference()
    grid = Fraction(reference.national_grid_factor.kgco2_per_kwh) / 1000
    start = int(datetime(2026, 1, 1, tzinfo=BERLIN).timestamp() * 1000)
    end = int(datetime(2026, 2, 1, tzinfo=BERLIN).timestamp() * 1000)
    out: dict[str, dict[str, Fraction]] = {
        line: {"production_t": Fraction(0), "direct": Fraction(0), "indirect": Fraction(0)}
        for line in LINES}
    for s in series:
        sums = out[s.line]
        if s.kind == "production":
            key, factor = "production_t", Fraction(1)
        else:
            carrier = reference.carriers[s.carrier or "electricity"]
            key = "direct" if carrier.scope == 1 else "indirect"
            factor = grid if carrier.tco2_per_unit is None else Fraction(carrier.tco2_per_unit)
            if getattr(s, "direction", "import") == "export":
                factor = -factor
        for ts, delta in meter_deltas(s):
            if start <= ts < end:
                sums[key] += Fraction(delta) * factor
    return {line: {k: float(v) for k, v in sums.items()} for line, sums in out.items()}


def _write_month(store: Path) -> None:
    # Batches of 500 messages hold hours of plant time, so the batch's newest receipt
    # would be hours ahead of its first readings: periods close by the watermark alone,
    # as for a simulated plant whose clock runs ahead of the wall clock.
    settings = settings_from_mapping({
        "plant_timezone": "Europe/Berlin", "max_past": "100000d", "emit_every": "1h",
        "watermark_wall_clock": False,
        "windows": "1h,24h", "spike_short_window": "1h", "spike_long_window": "24h",
        "level_window": "24h", "store": str(store)})
    pipeline = Pipeline(settings, [ParquetStore(store)], clock=lambda: END_MS / 1000)
    pipeline.fanout.open()
    batch: list[Message] = []
    for msg in schedule(**STREAM):  # type: ignore[arg-type]
        batch.append(Message(msg.topic, msg.payload, msg.due_ms / 1000))
        if len(batch) == 500:
            pipeline.process(batch)
            batch = []
    pipeline.process(batch)
    pipeline.durability.close()


@pytest.mark.e2e
def test_the_report_of_a_simulated_month_matches_the_simulators_truth(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _write_month(store)
    config = tmp_path / "wattline.toml"
    config.write_text(
        'plant_timezone = "Europe/Berlin"\n\n'
        f'[lines."{SITE}/kiln-1"]\nproduct = "cement_clinker"\n'
        f"process_co2_per_t = {KILN_PROCESS_CO2}\n"
        'process_co2_source = "raw meal carbonate balance (test)"\n\n'
        f'[lines."{SITE}/eaf-1"]\nproduct = "eaf_steel"\n')
    result = subprocess.run(
        [sys.executable, "-m", "wattline.ingest", "report", "cbam", "--store", str(store),
         "--config", str(config), "--from", "2026-01-01", "--to", "2026-01-31",
         "--format", "json"], capture_output=True, text=True, timeout=60, env=dict(os.environ),
        check=False)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    truth = _truth_of_january(published_series(**STREAM))  # type: ignore[arg-type]
    lines = {line["line"]: line for line in document["lines"]}
    assert set(lines) == {f"{SITE}/{line}" for line in LINES}
    for name, want in truth.items():
        got = lines[f"{SITE}/{name}"]
        process = want["production_t"] * KILN_PROCESS_CO2 if name == "kiln-1" else 0.0
        assert want["production_t"] > 0 and want["direct"] > 0 and want["indirect"] > 0
        assert got["production_t"] == pytest.approx(want["production_t"], rel=1e-9)
        assert got["co2_direct_t"] == pytest.approx(want["direct"] + process, rel=1e-9)
        assert got["co2_indirect_t"] == pytest.approx(want["indirect"], rel=1e-9)
        assert got["see_direct"] == pytest.approx(
            (want["direct"] + process) / want["production_t"], rel=1e-9)
        assert got["see_indirect"] == pytest.approx(want["indirect"] / want["production_t"],
                                                    rel=1e-9)
        assert got["cn_code"] == load_reference().levels[PRODUCTS[name]].cbam_cn_code
    for coverage in document["coverage"]:
        assert coverage["counted_days"] == coverage["days"] == 31, coverage
        assert not coverage["missing_days"] and not coverage["open_days"]
    january = [str(date(2026, 1, 1) + timedelta(days=k)) for k in range(31)]
    assert january[-1] == "2026-01-31"
    assert "warning" not in result.stderr
