"""An energy spike injected through the simulator, seen starting and ending in all three
alert outputs of a running daemon: ``energy_alert`` points in the time-series server
(VictoriaMetrics over ``/api/v2/write``), the retained MQTT topic
``{prefix}/{site}/{line}/alerts``, and ``/metrics``. The stale-line alert is checked the
same way once the simulator stops, and ends when a reading comes again.

When the spike alert must start and end comes from the injected event alone
(``simulators.events.expected_spike_alert``), not from the kernels.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, VictoriaMetrics, Wattline, wait_until
from wattline.simulators.events import EfficiencyDrift, EnergySpike, expected_spike_alert
from wattline.simulators.expectations import write_expectations
from wattline.simulators.publisher import readings_per_message, simulate

LINE = "kiln-1"
TICK_S = 10
FOR_TICKS = 3
SHORT_WINDOW_S = 300
SPIKE = EnergySpike(LINE, start_s=30 * 60, duration_s=20 * 60, factor=3.0)
PLANT_S = 80 * 60
SPEED = 480.0  # 80 minutes of plant time in 10 s
STALE_AFTER_S = 4


class AlertTopic:
    """Every message on one line's alerts topic, in arrival order (a real subscriber)."""

    def __init__(self, url: str, topic: str) -> None:
        self.messages: list[dict] = []
        self._subscribed = threading.Event()
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.append(json.loads(m.payload))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self._subscribed.wait(10), "the alerts topic subscription was not acknowledged"

    def rules_over_time(self) -> list[set[str]]:
        return [{a["rule"] for a in m["active"]} for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _transitions(victoria: VictoriaMetrics, site: str, rule: str) -> list[tuple[int, float]]:
    series = victoria.samples(f'energy_alert_state{{site="{site}",line="{LINE}",rule="{rule}"}}')
    return [(t, v) for t, values in series.items() for v in values]


@pytest.mark.e2e
def test_an_injected_spike_starts_and_ends_an_alert_in_every_output(
    mosquitto: Mosquitto,
    victoria: VictoriaMetrics,
    connected_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "wattline.toml"
    config.write_text(f'[lines."{site}/{LINE}"]\nproduct = "cement_clinker"\n')
    daemon = connected_daemon([
        "--config", str(config), "--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}",
        "--influx-url", victoria.url, "--influx-org", "test", "--influx-bucket", "test",
        "--emit-every", f"{TICK_S}s", "--windows", "5m,1h", "--alert-for", str(FOR_TICKS),
        "--stale-after", f"{STALE_AFTER_S}s",
    ])
    topic = AlertTopic(mosquitto.url, f"factory/{site}/{LINE}/alerts")
    try:
        start_ms = (int(time.time() * 1000) - PLANT_S * 1000) // 10_000 * 10_000
        simulate(mosquitto.url, [LINE], site=site, rate_s=TICK_S, duration_s=PLANT_S / SPEED,
                 speed=SPEED, seed=3, start_ms=start_ms, events=[SPIKE])
        expected = expected_spike_alert(SPIKE, short_window_s=SHORT_WINDOW_S, tick_s=TICK_S,
                                        for_ticks=FOR_TICKS)

        # 1. energy_alert points: one start and one end, each inside its expected span.
        def spike_points() -> list[tuple[int, float]]:
            return _transitions(victoria, site, "spike")

        wait_until(lambda: len(spike_points()) >= 2, timeout_s=60, what="spike start and end")
        (t_start, s_start), (t_end, s_end) = spike_points()
        assert (s_start, s_end) == (1.0, 0.0)
        assert start_ms + expected.start_after_s * 1000 < t_start
        assert t_start <= start_ms + expected.start_by_s * 1000
        assert start_ms + expected.end_after_s * 1000 < t_end
        assert t_end <= start_ms + expected.end_by_s * 1000
        values = victoria.samples(f'energy_alert_value{{site="{site}",rule="spike"}}')
        limits = victoria.samples(f'energy_alert_threshold{{site="{site}",rule="spike"}}')
        assert values[t_start][0] > limits[t_start][0] > 0  # kgce/t above 1.5 x the 1h figure
        # The 3x energy step is a power surge too, and the kiln (~110 kgce/t) is above
        # the clinker benchmark of 100 kgce/t (reference data) all along.
        surge = _transitions(victoria, site, "surge")
        assert [s for _, s in surge][:2] == [1.0, 0.0]
        assert start_ms + SPIKE.start_s * 1000 < surge[0][0] <= start_ms + (
            SPIKE.start_s + 60 + (FOR_TICKS + 1) * TICK_S) * 1000
        assert [s for _, s in _transitions(victoria, site, "above_benchmark")][:1] == [1.0]

        # 2. The retained topic said "spike" while it lasted, and no longer after.
        def spike_came_and_went() -> bool:
            seen = topic.rules_over_time()
            starts = [i for i, r in enumerate(seen) if "spike" in r]
            return bool(starts) and any("spike" not in r for r in seen[starts[0]:])

        wait_until(spike_came_and_went, timeout_s=10, what="the retained topic's spike")
        first = next(i for i, r in enumerate(topic.rules_over_time()) if "spike" in r)
        spike_payload = next(a for a in topic.messages[first]["active"] if a["rule"] == "spike")
        assert spike_payload["since_ms"] == t_start and "5m intensity" in spike_payload["message"]

        # 3. /metrics counted one start and one end, and nothing is active now.
        assert daemon.metric("wattline_alerts_total", {"rule": "spike", "state": "start"}) == 1
        assert daemon.metric("wattline_alerts_total", {"rule": "spike", "state": "end"}) == 1
        assert daemon.metric("wattline_alert_active",
                             {"site": site, "line": LINE, "rule": "spike"}) == 0

        # The simulator has stopped: the line goes stale, in all three outputs...
        labels = {"site": site, "line": LINE, "rule": "stale"}
        wait_until(lambda: daemon.metric("wattline_alert_active", labels) == 1.0,
                   timeout_s=STALE_AFTER_S + 10, what="the stale alert")
        wait_until(lambda: any("stale" in r for r in topic.rules_over_time()), timeout_s=10)
        # ...and a reading ends it.
        simulate(mosquitto.url, [LINE], site=site, rate_s=TICK_S, duration_s=1, speed=10,
                 seed=3, start_ms=start_ms + PLANT_S * 1000)
        wait_until(lambda: daemon.metric("wattline_alert_active", labels) == 0.0,
                   timeout_s=20, what="the end of the stale alert")
        wait_until(lambda: "stale" not in topic.rules_over_time()[-1], timeout_s=10)
        # The gauge turns as the alert is recorded, just before the sinks write it.
        wait_until(lambda: [s for _, s in _transitions(victoria, site, "stale")] == [1.0, 0.0],
                   timeout_s=10, what="the stale alert's start and end in the database")
    finally:
        topic.close()

    # A subscriber arriving later gets the line's current state, retained.
    late = AlertTopic(mosquitto.url, f"factory/{site}/{LINE}/alerts")
    try:
        wait_until(lambda: late.messages, timeout_s=10, what="the retained alert state")
        assert "spike" not in {a["rule"] for a in late.messages[-1]["active"]}
        assert late.messages[-1]["line"] == LINE
    finally:
        late.close()
    assert daemon.metric_sum("wattline_sink_write_errors_total") == 0


@pytest.mark.e2e
def test_a_drift_above_the_national_baseline_is_alerted_when_the_truth_says(
    mosquitto: Mosquitto,
    victoria: VictoriaMetrics,
    connected_daemon: Callable[..., Wattline],
    site: str,
    tmp_path: Path,
) -> None:
    """A kiln whose energy per tonne drifts up by 20 % crosses the clinker baseline
    (117 kgce/t) and stays above the benchmark (100): the daemon's above_baseline and
    above_benchmark alerts start at the very ticks the simulator's own truth gives, and
    no other level alert is raised."""
    drift = EfficiencyDrift(LINE, start_s=10 * 60, duration_s=30 * 60, factor=1.2)
    config = tmp_path / "wattline.toml"
    config.write_text(f'[lines."{site}/{LINE}"]\nproduct = "cement_clinker"\n')
    connected_daemon([
        "--config", str(config), "--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}",
        "--influx-url", victoria.url, "--influx-org", "test", "--influx-bucket", "test",
        "--emit-every", f"{TICK_S}s", "--windows", "5m,1h", "--alert-for", str(FOR_TICKS),
    ])
    plant_s = 70 * 60
    start_ms = (int(time.time() * 1000) - plant_s * 1000) // 10_000 * 10_000
    speed = 420.0
    simulate(mosquitto.url, [LINE], site=site, rate_s=TICK_S, duration_s=plant_s / speed,
             speed=speed, seed=5, start_ms=start_ms, events=[drift])
    truth = tmp_path / "truth.jsonl"
    write_expectations(truth, [LINE], site=site, start_ms=start_ms, plant_s=plant_s,
                       rate_s=TICK_S, seed=5, events=[drift], windows=("5m", "1h"),
                       readings_per_message=readings_per_message(speed, TICK_S),
                       emit_every_s=TICK_S, alert_for=FOR_TICKS)
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    newest_tick = max(r["time_ms"] for r in rows if r["kind"] == "intensity") - 30_000
    expected = {(r["rule"], r["start_ms"]) for r in rows if r["kind"] == "expected_alert"
                and r["start_ms"] <= newest_tick}
    assert {rule for rule, _ in expected} == {"above_baseline", "above_benchmark"}

    def started() -> set[tuple[str, int]]:
        return {(rule, t) for rule in ("above_baseline", "above_benchmark")
                for t, state in _transitions(victoria, site, rule) if state == 1.0}

    wait_until(lambda: started() >= expected, timeout_s=60, what=f"the alerts {expected}")
    assert started() == expected
