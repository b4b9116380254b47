"""The EAF, potline and kiln models as batch lines, through a real Mosquitto, daemon and
InfluxDB 1.6.7, against the simulators' own truth per batch and per period.

Thirty hours of plant time across the night Europe/Berlin changes to summer time
(29 March 2026, a 23-hour day whose first shift has 7 hours), published at 3,600x by
gateways with faults (duplicates, out-of-order delivery within the lateness,
dropouts, clock skew, uplink losses flushed as bursts). Every batch the watermark has
passed and every period that has closed is read back with InfluxQL and must equal the
truth (``wattline.simulators.totals_truth``, plain Python over what was published) to
1e-9, energy and carbon (scope 1, scope 2 at the default grid factor, tCO2/t), final
periods with their grades.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.processes import InfluxDB1, Mosquitto, Wattline, wait_until
from wattline.contract.reference_data import load_reference
from wattline.simulators.gateway import Faults
from wattline.simulators.publisher import published_series, readings_per_message, simulate
from wattline.simulators.totals_truth import expected_batches, expected_periods

BERLIN = "Europe/Berlin"
START_MS = int(datetime(2026, 3, 28, 22, 0, tzinfo=ZoneInfo(BERLIN)).timestamp() * 1000)
PLANT_S = 30 * 3600.0
SPEED = 3600.0
RATE_S = 10.0
LATENESS_S = 30
GRACE_MS = 2 * 3_600_000
PRODUCTS = {"eaf-1": "eaf_steel", "potline-1": "aluminium_liquid", "kiln-1": "cement_clinker"}
FAULTS = Faults(duplicate_p=0.02, out_of_order_p=0.05, out_of_order_max_s=20, dropout_p=0.01,
                clock_skew_s=2.0, uplink_loss_p=0.01, uplink_loss_s=60.0)
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t",
          "co2_direct_t", "co2_indirect_t", "co2_per_t")
DB = "wattline"


def _config(path: Path, site: str) -> Path:
    path.write_text("".join(f'[lines."{site}/{line}"]\nbatch = true\nproduct = "{product}"\n'
                            for line, product in PRODUCTS.items()))
    return path


def _expected_grade(intensity: float | None, product: str) -> int | None:
    """By hand from the reference levels: the first GB grade whose limit holds."""
    level = load_reference().levels[product]
    if intensity is None or not level.gb_grades:
        return None
    return next((g for g, limit in enumerate(level.gb_grades, 1) if intensity <= limit), 0)


def _assert_fields(row: dict, want: object, what: object) -> None:
    for field in FIELDS:
        expected = getattr(want, field)
        if expected is None:
            assert row.get(field) is None, (what, field)
        else:
            assert row[field] == pytest.approx(expected, rel=1e-9, abs=1e-9), (what, field)


@pytest.mark.e2e
def test_the_models_batches_and_periods_through_the_daemon_match_their_truth(
    make_mosquitto: Callable[..., Mosquitto],
    make_influxdb1: Callable[..., InfluxDB1],
    wattline_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    broker, influx = make_mosquitto(), make_influxdb1(databases=(DB,))
    daemon = wattline_daemon([
        "--mqtt-url", broker.url, "--influx-api", "v1", "--influx-url", influx.url,
        "--influx-db", DB, "--config", str(_config(tmp_path / "lines.toml", site)),
        "--plant-timezone", BERLIN, "--max-past", "3650d", "--emit-every", "60s",
        "--windows", "10m,1h", "--allowed-lateness", f"{LATENESS_S}s",
        "--client-id", f"wattline-{site}"])
    lines = list(PRODUCTS)
    summary = simulate(broker.url, lines, site=site, rate_s=RATE_S, duration_s=PLANT_S / SPEED,
                       speed=SPEED, seed=5, start_ms=START_MS, faults=FAULTS)
    series = published_series(lines, site=site, start_ms=START_MS, plant_s=PLANT_S,
                              rate_s=RATE_S, seed=5, faults=FAULTS,
                              readings_per_message=readings_per_message(SPEED, RATE_S))
    assert sum(len(s.readings) for s in series) == summary.readings
    newest = {line: max(ts for s in series if s.line == line for ts, _ in s.readings)
              for line in lines}
    batches = [b for b in expected_batches(series)
               if b.close_ms <= newest[b.line] - LATENESS_S * 1000 - 60_000]
    periods = [p for p in expected_periods(series, timezone=BERLIN)
               if p.end_ms + GRACE_MS <= newest[p.line] - LATENESS_S * 1000 - 60_000]
    day_of_change = int(datetime(2026, 3, 29, tzinfo=ZoneInfo(BERLIN)).timestamp() * 1000)
    assert {(p.period, p.end_ms - p.start_ms) for p in periods if p.start_ms == day_of_change
            } == {("day", 23 * 3_600_000), ("shift", 7 * 3_600_000)}
    assert {b.line for b in batches} == set(lines) and len(periods) >= 3 * 5

    def final_periods() -> dict[tuple[str, str, int], dict]:
        assert daemon.running, "the daemon exited"
        rows = influx.query(f"SELECT * FROM energy_period WHERE site = '{site}' "
                            "AND final = 1", DB)
        return {(r["line"], r["period"], r["time"]): r for r in rows}

    wanted = {(p.line, p.period, p.start_ms) for p in periods}
    wait_until(lambda: wanted <= final_periods().keys(), timeout_s=90, interval_s=0.5,
               what="every closed period final in InfluxDB")
    got = final_periods()
    for p in periods:
        row = got[(p.line, p.period, p.start_ms)]
        _assert_fields(row, p, (p.line, p.period, p.start_ms))
        assert row["late_readings"] == 0
        if p.period == "shift":
            assert row.get("grade") is None
        else:
            assert row["grade"] == _expected_grade(
                p.kwh_per_t if p.line == "potline-1" else p.kgce_per_t, PRODUCTS[p.line])
    assert any(r.get("grade") not in (None, 0) for r in got.values())

    rows = influx.query(f"SELECT * FROM energy_batch WHERE site = '{site}'", DB)
    written = {(r["line"], r["time"]): r for r in rows}
    for b in batches:
        row = written[(b.line, b.close_ms)]
        _assert_fields(row, b, (b.line, b.close_ms))
        assert row["duration_s"] == pytest.approx(b.duration_s, rel=1e-12)
        assert row["batch"] == f"{b.line}-{b.close_ms}"
    truth_closes = {(b.line, b.close_ms) for b in expected_batches(series)}
    assert written.keys() <= truth_closes, "a batch the truth does not have"
    assert not daemon.metric("wattline_readings_dropped_total", {"reason": "late"})
    assert daemon.metric("wattline_readings_dropped_total", {"reason": "duplicate"}), (
        "the gateways' duplicates were recognised")
