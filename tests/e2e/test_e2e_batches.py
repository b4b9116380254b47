"""An EAF configured as a batch line, through a real Mosquitto, daemon and
VictoriaMetrics: every tap closes a heat, and each heat's energy_batch point holds the
energy since the previous tap, worked out by hand, stamped with its tap; the line's
windows are written as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, wait_until

ARGS = ["--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s"]
LINE = "eaf-1"
STEP_MS = 10_000
STEPS = 40
TAPS = {9: 92.5, 21: 101.0, 34: 88.0}  # step: tonnes tapped
KWH_PER_STEP = 450.0
KGCE = 0.1229


def expected() -> dict[int, dict[str, float]]:
    """Per tap step: the heat's fields (the first heat starts at the first reading)."""
    out, previous = {}, 0
    for step, tonnes in sorted(TAPS.items()):
        kwh = KWH_PER_STEP * (step - previous)
        out[step] = {"energy_kgce": kwh * KGCE, "electricity_kwh": kwh, "production_t": tonnes,
                     "kgce_per_t": kwh * KGCE / tonnes, "kwh_per_t": kwh / tonnes,
                     "duration_s": (step - previous) * STEP_MS / 1000}
        previous = step
    return out


def test_the_hand_computed_heats() -> None:
    heats = expected()
    assert heats[9]["electricity_kwh"] == 4050.0 and heats[9]["duration_s"] == 90.0
    assert heats[21]["kwh_per_t"] == 5400.0 / 101.0


@pytest.mark.e2e
def test_every_tap_of_a_batch_line_is_written_as_one_heat(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(f'[lines."{site}/{LINE}"]\nbatch = true\n')
    stack = make_stack([*ARGS, "--config", str(config)])
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    start_ms = (int(time.time() * 1000) - 20 * 60_000) // STEP_MS * STEP_MS
    base = f"factory/{site}/{LINE}"
    messages = []
    for k in range(STEPS + 1):
        ts = start_ms + k * STEP_MS
        tonnes = sum(t for step, t in TAPS.items() if step <= k)
        messages += [(f"{base}/energy/incomer", {"ts": ts, "v": 5e5 + KWH_PER_STEP * k}),
                     (f"{base}/production/ladle", {"ts": ts, "v": 1000.0 + tonnes})]
    publish_all(client, messages, timeout_s=30)

    labels = f'site="{site}",line="{LINE}"'
    last_tap = start_ms + max(TAPS) * STEP_MS
    wait_until(lambda: last_tap in victoria.samples(f"energy_batch_production_t{{{labels}}}"),
               timeout_s=60, what="the last heat's energy_batch point")
    for field in ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t",
                  "duration_s"):
        points = victoria.samples(f"energy_batch_{field}{{{labels}}}")
        want = {start_ms + step * STEP_MS: heat[field] for step, heat in expected().items()}
        assert sorted(points) == sorted(want), field
        for t, value in want.items():
            assert points[t] == [pytest.approx(value, rel=1e-9)] * len(points[t]), (field, t)
    selector = f'energy_intensity_electricity_kwh{{{labels},window="1m"}}'
    wait_until(lambda: start_ms + 30 * STEP_MS in victoria.samples(selector), timeout_s=60,
               what="the intensity point of the 30th step")  # written apart from batches
    kwh = victoria.samples(selector)
    assert kwh[start_ms + 30 * STEP_MS] == [pytest.approx(6 * KWH_PER_STEP, rel=1e-9)]
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
