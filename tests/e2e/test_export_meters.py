"""A converter (BOF) line that sends recovered gas and power out, through a real
Mosquitto, daemon and VictoriaMetrics: its export meters (one described in the config
file, one by its retained meta message) count negatively, so the line's energy and
kgce/t are negative as worked out by hand, and its national levels judge it so: below
the baseline of -10 kgce/t, above the benchmark of -30."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

ARGS = ["--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s",
        "--alert-for", "3"]
LINE = "eaf-1"  # the line wait_until_subscribed publishes to (here a converter's)
STEP_MS = 10_000
STEPS = 30
# Per step: 20 kWh of auxiliaries in, 8 m3 of gas recovered and 5 kWh of power sent
# out, 0.5 t of steel.
POWER_KGCE, GAS_KGCE = 0.1229, 1.2143
STEP_KGCE = 20 * POWER_KGCE - 8 * GAS_KGCE - 5 * POWER_KGCE
STEP_KWH = 20.0 - 5.0
STEP_T = 0.5


def test_the_hand_computed_step_is_negative() -> None:
    assert abs(STEP_KGCE - -7.8709) < 1e-12
    assert abs(STEP_KGCE / STEP_T - -15.7418) < 1e-12


@pytest.mark.e2e
def test_export_meters_make_a_converters_energy_and_kgce_per_t_negative(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(
        f'[lines."{site}/{LINE}"]\nproduct = "bof_steel"\n\n'
        f'[meters."{site}/{LINE}/energy/gas-recovery"]\n'
        'carrier = "natural_gas"\ndirection = "export"\n')
    stack = make_stack([*ARGS, "--config", str(config)])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    base = f"factory/{site}/{LINE}"
    publish_all(client, [(f"{base}/energy/power-out/meta",
                          {"carrier": "electricity", "direction": "export"})], timeout_s=10)
    start_ms = (int(time.time() * 1000) - 20 * 60_000) // STEP_MS * STEP_MS
    messages = []
    for k in range(STEPS + 1):
        ts = start_ms + k * STEP_MS
        messages += [(f"{base}/energy/incomer", {"ts": ts, "v": 1000.0 + 20.0 * k}),
                     (f"{base}/energy/gas-recovery", {"ts": ts, "v": 500.0 + 8.0 * k}),
                     (f"{base}/energy/power-out", {"ts": ts, "v": 70.0 + 5.0 * k}),
                     (f"{base}/production/converter", {"ts": ts, "v": 2.0 + STEP_T * k})]
    # One more reading moves the watermark past the last step's tick.
    messages.append((f"{base}/energy/incomer",
                     {"ts": start_ms + (STEPS + 1) * STEP_MS, "v": 1000.0 + 20.0 * (STEPS + 1)}))
    publish_all(client, messages, timeout_s=30)

    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + STEPS * STEP_MS
    wait_until(lambda: last_tick in victoria.samples(
        f'energy_intensity_kgce_per_t{{{labels},window="2m"}}'), timeout_s=60,
        what="the last step's tick")
    for window, steps in (("1m", 6), ("2m", 12)):
        want = {"energy_kgce": steps * STEP_KGCE, "electricity_kwh": steps * STEP_KWH,
                "production_t": steps * STEP_T, "kgce_per_t": STEP_KGCE / STEP_T,
                "kwh_per_t": STEP_KWH / STEP_T}
        for field, value in want.items():
            points = victoria.samples(f'energy_intensity_{field}{{{labels},window="{window}"}}')
            checked = {t: v for t, v in points.items()
                       if start_ms + steps * STEP_MS <= t <= last_tick}
            assert len(checked) == STEPS - steps + 1, (field, window, sorted(points))
            for t, values in checked.items():
                assert values == [pytest.approx(value, rel=1e-9)] * len(values), (field, t)
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    # -15.7 kgce/t: better than the baseline (-10), short of the benchmark (-30).
    alerts = victoria.export(f'{{__name__="energy_alert_state",{labels}}}')
    rules = {series["metric"]["rule"]: series["values"] for series in alerts}
    assert rules == {"above_benchmark": [1.0]}
