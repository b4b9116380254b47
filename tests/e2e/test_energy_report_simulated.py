"""An energy report over six simulated weeks of a kiln that saves 5 % from its fourth week
on (``wattline simulate --improve kiln-1@21dx0.95``): the CUSUM slope is the saving the
simulator's truth states.

The store holds the periods the simulator's truth computes from what the gateway
published (``totals_truth.expected_periods``, plain Python over the readings, none of
the collector's code); stoppages (``--idle``) on some days in both halves make the
daily production vary, so that a baseline model can tell base load from energy per
tonne."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

from wattline.ingest.app.cli import main
from wattline.ingest.periods_stage import PERIOD_SCHEMA
from wattline.ingest.sinks.parquet_store import ParquetStore
from wattline.simulators.events import parse_idle, parse_improve
from wattline.simulators.expectations import saving_rows
from wattline.simulators.publisher import published_series
from wattline.simulators.totals_truth import expected_periods

pytestmark = pytest.mark.e2e

START_MS = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1000)
DAYS = 42
STOPPAGES = [(1, 4), (3, 10), (5, 7), (8, 14), (11, 3), (14, 9), (17, 6), (19, 12),
             (22, 5), (25, 11), (29, 8), (32, 3), (35, 13), (39, 6)]  # (day, hours)


def _store(tmp_path: Path, events: list) -> Path:
    series = published_series(["kiln-1"], site="demo", start_ms=START_MS,
                              plant_s=DAYS * 86_400, rate_s=300.0, seed=3, events=events)
    end_ms = START_MS + DAYS * 86_400_000
    rows = [{"site": p.site, "line": p.line, "period": p.period, "time_ms": p.start_ms,
             "energy_kgce": p.energy_kgce, "electricity_kwh": p.electricity_kwh,
             "production_t": p.production_t, "kgce_per_t": p.kgce_per_t,
             "kwh_per_t": p.kwh_per_t, "final": True, "late_readings": 0}
            for p in expected_periods(series) if p.end_ms <= end_ms]
    store = ParquetStore(tmp_path / "store", housekeeping_every_s=1e9)
    store.open()
    store.write_periods(pa.Table.from_pylist(rows, schema=PERIOD_SCHEMA))
    store.close()
    return tmp_path / "store"


@pytest.mark.parametrize("model_period", ["day", "shift"])
def test_the_cusum_slope_is_the_simulated_saving(tmp_path: Path, model_period: str) -> None:
    events = [parse_improve("kiln-1@21dx0.95"),
              *(parse_idle(f"kiln-1@{day * 24 + 6}h+{hours}h") for day, hours in STOPPAGES)]
    truth = saving_rows(events, site="demo", start_ms=START_MS)
    assert len(truth) == 1 and truth[0]["line"] == "kiln-1"
    assert truth[0]["from_ms"] == int(datetime(2026, 10, 22, tzinfo=UTC).timestamp() * 1000)
    config = tmp_path / "wattline.toml"
    config.write_text('[lines."demo/kiln-1"]\nproduct = "cement_clinker"\n')

    result = CliRunner().invoke(main, [
        "report", "energy", "--store", str(_store(tmp_path, events)), "--config", str(config),
        "--from", "2026-10-22", "--to", "2026-11-11", "--baseline-from", "2026-10-01",
        "--baseline-to", "2026-10-21", "--model-period", model_period, "--format", "json"])

    assert result.exit_code == 0, result.output
    line = orjson.loads(result.output)["lines"][0]
    assert line["model"]["r_squared"] > 0.95
    assert line["model"]["periods"] == 21 * (3 if model_period == "shift" else 1)
    saving = truth[0]["saving_share"]
    assert saving == pytest.approx(0.05)
    assert line["cusum_slope_share"] == pytest.approx(saving, abs=0.002)
    assert line["total_saving_share"] == pytest.approx(saving, abs=0.002)
