"""Each process model through the real broker and daemon, checked against the simulator's
own ground truth (computed from its model, independently of the kernels)."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pytest

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.ingest.sinks.parquet_store import read_store
from wattline.simulators.gateway import Faults
from wattline.simulators.publisher import published_series, readings_per_message, simulate
from wattline.simulators.scenario import Scenario, parse_scenario, read_scenario
from wattline.simulators.truth import expected_intensity, meter_deltas

RATE_S = 10.0
SPEED = 120.0
DURATION_S = 10.0  # 20 minutes of plant time
LATENESS_S = 30
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")


def stored_rows(store: Path, site: str, line: str) -> dict:
    """The store's points of one line of one site, by (window, tick)."""
    if not store.exists():
        return {}
    return {(r["window"], r["time_ms"]): r for r in read_store(store, line=line).to_pylist()
            if r["site"] == site}


def assert_rows_match_truth(got: dict, truth: dict, due: list[int]) -> None:
    """Every due tick of both windows as the truth has it (to 1e-9), idle fields absent."""
    for window in ("1m", "10m"):
        for t in due:
            want, row = truth[(window, t)], got[(window, t)]
            for field in FIELDS:
                expected = getattr(want, field)
                if expected is None:
                    assert row[field] is None, (window, t, field)
                else:
                    assert row[field] == pytest.approx(expected, rel=1e-9, abs=1e-9), (
                        window, t, field)


def generic_scenario(folder: Path) -> Scenario:
    """A generic line of one's own: two carriers, output weighed every 5 minutes."""
    path = folder / "generic.toml"
    path.write_text("""
description = "test line"
[plant]
output_t_per_h = 40.0
output_noise = 0.05
batch_min = 5.0
production_meter = "weigher"
[plant.energy.power]
carrier = "electricity"
unit = "kWh"
per_t = 120.0
idle_per_h = 300.0
noise = 0.05
[plant.energy.gas]
carrier = "natural_gas"
unit = "m3"
per_t = 35.0
[meters.power]
decimals = 2
bits = 32
mode = "counter"
[meters.gas]
decimals = 1
mode = "counter"
batch_form = "columnar"
[meters.weigher]
decimals = 3
mode = "delta"
""")
    return read_scenario("generic", path)


@pytest.mark.e2e
@pytest.mark.parametrize("payload_format", ["json", "sparkplug"])
@pytest.mark.parametrize("line", ["eaf-1", "potline-1", "kiln-1", "generic-1"])
def test_a_process_model_through_the_daemon_matches_its_ground_truth(
    mosquitto: Mosquitto,
    connected_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
    line: str,
    payload_format: str,
) -> None:
    """JSON gateways, or Sparkplug B edge nodes (NBIRTH, then NDATA by alias). The generic
    line comes from a scenario written here, weighing its output every 5 minutes."""
    scenarios = {"generic": generic_scenario(tmp_path)}
    store = tmp_path / "store"
    daemon = connected_daemon([
        "--mqtt-url", mosquitto.url, "--store", str(store), "--emit-every", "10s",
        "--windows", "1m,10m", "--allowed-lateness", f"{LATENESS_S}s",
        "--client-id", f"wattline-{site}",
        *(["--sparkplug"] if payload_format == "sparkplug" else []),
    ])
    plant_s = DURATION_S * SPEED
    start_ms = (int(time.time() * 1000) - int(plant_s * 1000)) // 10_000 * 10_000
    summary = simulate(mosquitto.url, [line], site=site, rate_s=RATE_S, duration_s=DURATION_S,
                       speed=SPEED, seed=7, start_ms=start_ms, payload_format=payload_format,
                       scenarios=scenarios)
    series = published_series([line], site=site, start_ms=start_ms, plant_s=plant_s,
                              rate_s=RATE_S, seed=7,
                              readings_per_message=readings_per_message(SPEED, RATE_S),
                              payload_format=payload_format, scenarios=scenarios)
    assert sum(len(s.readings) for s in series) == summary.readings
    truth = {(r.window, r.time_ms): r for r in
             expected_intensity(series, emit_every_s=10, windows=("1m", "10m"))}
    newest = max(ts for s in series for ts, _ in s.readings)
    due = sorted(t for (_, t) in truth if t <= newest - LATENESS_S * 1000)
    assert len(due) > 50

    wait_until(lambda: ("10m", due[-1]) in stored_rows(store, site, line), timeout_s=60,
               what=f"the daemon's tick at {due[-1]}")
    got = stored_rows(store, site, line)
    assert_rows_match_truth(got, truth, due)
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    if payload_format == "sparkplug":
        assert daemon.metric("wattline_sparkplug_events_total", {"event": "birth"}) == 1.0
        assert daemon.metric_sum("wattline_sparkplug_events_total", {"event": "seq_gap"}) == 0


@pytest.mark.e2e
def test_gateway_faults_through_the_daemon_still_match_the_ground_truth(
    mosquitto: Mosquitto,
    connected_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    """Duplicates, out-of-order delivery within the lateness, dropouts, register
    resets, clock skew and an uplink loss flushed as a burst: what the gateway
    published still gives the truth's intensities, and only duplicates are dropped."""
    faults = Faults(duplicate_p=0.02, out_of_order_p=0.05, out_of_order_max_s=20,
                    dropout_p=0.01, reset_p=0.002, clock_skew_s=2.0, uplink_loss_p=0.01,
                    uplink_loss_s=60.0)
    store = tmp_path / "store"
    line = "kiln-1"
    daemon = connected_daemon([
        "--mqtt-url", mosquitto.url, "--store", str(store), "--emit-every", "10s",
        "--windows", "1m,10m", "--allowed-lateness", f"{LATENESS_S}s",
        "--client-id", f"wattline-{site}",
    ])
    plant_s = DURATION_S * SPEED
    start_ms = (int(time.time() * 1000) - int(plant_s * 1000)) // 10_000 * 10_000
    simulate(mosquitto.url, [line], site=site, rate_s=RATE_S, duration_s=DURATION_S,
             speed=SPEED, seed=11, start_ms=start_ms, faults=faults)
    series = published_series([line], site=site, start_ms=start_ms, plant_s=plant_s,
                              rate_s=RATE_S, seed=11, faults=faults,
                              readings_per_message=readings_per_message(SPEED, RATE_S))
    truth = {(r.window, r.time_ms): r for r in
             expected_intensity(series, emit_every_s=10, windows=("1m", "10m"))}
    newest = max(ts for s in series for ts, _ in s.readings)
    due = sorted(t for (_, t) in truth if t <= newest - LATENESS_S * 1000)

    wait_until(lambda: ("10m", due[-1]) in stored_rows(store, site, line), timeout_s=60,
               what=f"the daemon's tick at {due[-1]}")
    got = stored_rows(store, site, line)
    assert_rows_match_truth(got, truth, due)
    dropped = {k: daemon.metric("wattline_readings_dropped_total", {"reason": k})
               for k in ("late", "duplicate")}
    assert not dropped["late"], "nothing the gateway sent was beyond the lateness"
    assert dropped["duplicate"], "the gateway's duplicates were recognised"


CARBON_FIELDS = ("co2_direct_t", "co2_indirect_t", "co2_per_t")


def exporting_scenarios() -> dict[str, Scenario]:
    """The packaged kiln and EAF with their export meters on: the kiln sends 60 MJ of waste
    heat out per tonne of clinker, the EAF's off-gas boiler 0.05 kg of steam per kWh."""
    out = {}
    for model, param, value, meter in (("kiln", "waste_heat_mj_per_t", 60.0, "heat-out"),
                                       ("eaf", "steam_kg_per_kwh", 0.05, "steam-out")):
        text = (files("wattline.simulators") / "scenarios" / f"{model}.toml").read_text("utf-8")
        doc = tomllib.loads(text)
        doc["plant"][param] = value
        doc["meters"][meter] = {"decimals": 1, "mode": "counter", "batch_form": "list"}
        out[model] = parse_scenario(model, doc, source=f"{model} with its export")
    return out


@pytest.mark.e2e
def test_live_carbon_of_the_kiln_and_the_eaf_with_exports_and_faults_matches_the_truth(
    mosquitto: Mosquitto,
    connected_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    """The kiln (coal burnt: scope 1; electricity: scope 2; waste heat sent out: scope 2,
    negative) and the EAF (electricity; natural gas burnt; steam sent out), their gateways
    faulty, through Mosquitto and the daemon at a grid factor of its config: every due
    window's co2_direct_t, co2_indirect_t and co2_per_t in the store equal the truth's,
    computed from the models and the reference factors, to 1e-9."""
    faults = Faults(duplicate_p=0.02, out_of_order_p=0.05, out_of_order_max_s=20,
                    dropout_p=0.01, reset_p=0.002, clock_skew_s=2.0, uplink_loss_p=0.01,
                    uplink_loss_s=60.0)
    scenarios = exporting_scenarios()
    assert [m.direction for m in scenarios["kiln"].meters][-1] == "export"
    grid = 0.5703  # the carbon market's factor, not the default
    config = tmp_path / "carbon.toml"
    config.write_text(f"grid_factor = {grid}\n")
    store = tmp_path / "store"
    lines = ["kiln-1", "eaf-1"]
    connected_daemon([
        "--mqtt-url", mosquitto.url, "--store", str(store), "--emit-every", "10s",
        "--windows", "1m,10m", "--allowed-lateness", f"{LATENESS_S}s",
        "--client-id", f"wattline-{site}", "--config", str(config),
    ])
    speed = 480.0  # 80 minutes of plant time: the EAF taps at least once
    plant_s = DURATION_S * speed
    start_ms = (int(time.time() * 1000) - int(plant_s * 1000)) // 10_000 * 10_000
    simulate(mosquitto.url, lines, site=site, rate_s=RATE_S, duration_s=DURATION_S,
             speed=speed, seed=13, start_ms=start_ms, faults=faults, scenarios=scenarios)
    series = published_series(lines, site=site, start_ms=start_ms, plant_s=plant_s,
                              rate_s=RATE_S, seed=13, faults=faults, scenarios=scenarios,
                              readings_per_message=readings_per_message(speed, RATE_S))
    exported = {s.line: sum(d for _, d in meter_deltas(s)) for s in series
                if s.direction == "export"}
    assert set(exported) == set(lines) and min(exported.values()) > 0, exported
    for line in lines:
        mine = [s for s in series if s.line == line]
        truth = {(r.window, r.time_ms): r for r in expected_intensity(
            mine, emit_every_s=10, windows=("1m", "10m"), grid_kgco2_per_kwh=grid)}
        newest = max(ts for s in mine for ts, _ in s.readings)
        due = sorted(t for (_, t) in truth if t <= newest - LATENESS_S * 1000)
        wait_until(lambda line=line, due=due: ("10m", due[-1]) in stored_rows(store, site, line),
                   timeout_s=60, what=f"{line}'s tick at {due[-1]}")
        got = stored_rows(store, site, line)
        assert_rows_match_truth(got, truth, due)
        for window in ("1m", "10m"):
            for t in due:
                want, row = truth[(window, t)], got[(window, t)]
                for field in CARBON_FIELDS:
                    expected = getattr(want, field)
                    if expected is None:
                        assert row[field] is None, (line, window, t, field)
                    else:
                        assert row[field] == pytest.approx(expected, rel=1e-9, abs=1e-12), (
                            line, window, t, field)
        # Both scopes were in play, and some windows produced (have a co2_per_t).
        windows = [truth[(w, t)] for w in ("1m", "10m") for t in due]
        assert any(r.co2_direct_t > 0 for r in windows), line
        assert any(r.co2_indirect_t > 0 for r in windows), line
        assert any(r.co2_per_t is not None for r in windows), line
