"""Hostile input through a real Mosquitto, daemon and VictoriaMetrics: huge values on one
line, a flood of new lines beyond ``--max-lines``, and a sentinel register read on a
meter with a ``max_rate``. Each time the other readings' points arrive exact, and what
the daemon holds stays bounded. (Repeated keys: tests/e2e/test_bad_input.py.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    ENERGY_METER,
    KERNEL_ARGS,
    LINE,
    STEP_MS,
    assert_every_expected_point,
    electricity_register,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.processes import Stack, Wattline, wait_until
from wattline.ingest.decode.payloads import VALUE_LIMIT
from wattline.ingest.decode.registry import state_nbytes
from wattline.kernels import KernelConfig, new_state

ROGUE_LINE = "rogue-1"
# Registers a broken gateway might send: huge but in range, out of range, both signs.
ROGUE_ENERGY = [1.0, 9.99e14, -9.99e14, 1e300, 1e308, -1.7e308, 999_999_999_999_999.0,
                1e15, 1e16, 0.0, 2.0**53, 4294967295.0, 1.7976931348623157e308, 5e14]
ROGUE_PRODUCTION = [0.0, 9e14, 1e300, -5e14, 1e15, 5e14, 1e-300]


def rogue_messages(site: str, start_ms: int) -> list[tuple[str, Any]]:
    messages: list[tuple[str, Any]] = []
    for kind, meter, values in (("energy", "rogue-meter", ROGUE_ENERGY),
                                ("production", "rogue-scale", ROGUE_PRODUCTION)):
        topic = f"factory/{site}/{ROGUE_LINE}/{kind}/{meter}"
        for k, v in enumerate(values):
            messages.append((topic, {"ts": start_ms + 1_000 + k * STEP_MS, "v": v}))
        # The same values once more as one columnar batch, later in the stream.
        stamps = [start_ms + 100_000 + k * STEP_MS for k in range(len(values))]
        messages.append((topic, {"ts": stamps, "v": values}))
    return messages


def interleave(a: list[Any], b: list[Any]) -> list[Any]:
    out: list[Any] = []
    for k in range(max(len(a), len(b))):
        out += a[k:k + 1] + b[k:k + 1]
    return out


@pytest.mark.e2e
def test_huge_values_on_one_line_leave_every_other_lines_points_exact(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack(list(KERNEL_ARGS))
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    publish_all(client, interleave(readings_messages(site, start_ms),
                                   rogue_messages(site, start_ms)), timeout_s=60)
    out_of_range = 2 * sum(abs(v) >= VALUE_LIMIT for v in [*ROGUE_ENERGY, *ROGUE_PRODUCTION])

    def counted() -> bool:
        assert daemon.running, "huge values must never stop the collector"
        return daemon.metric_sum("wattline_readings_dropped_total",
                                 {"reason": "value_range"}) >= out_of_range

    wait_until(counted, timeout_s=60, what="every out-of-range value counted")
    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + CHECKED_TICKS_MS[-1]
    wait_until(lambda: last_tick in victoria.samples(
        f'energy_intensity_electricity_kwh{{{labels},window="2m"}}'),
        timeout_s=60, what="the good line's last tick")
    assert daemon.metric_sum("wattline_readings_dropped_total",
                             {"reason": "value_range"}) == out_of_range
    assert_every_expected_point(victoria, site, start_ms)
    # The rogue line's own points, whatever they are, are finite numbers.
    rogue = victoria.export(f'{{__name__=~"energy_intensity_.*",site="{site}",'
                            f'line="{ROGUE_LINE}"}}')
    assert rogue, "the rogue line's in-range readings make points too"
    for series in rogue:
        assert all(math.isfinite(v) for v in series["values"]), series["metric"]


# -- a flood of new lines ---------------------------------------------------------------------

CAP = 1000
FLOOD = 3000
FLOOD_ARGS = ("--emit-every", "10s", "--windows", "1m,6h", "--allowed-lateness", "5s",
              "--max-lines", str(CAP), "--checkpoint-every", "1s")
FLOOD_CONFIG = KernelConfig(emit_every_ms=10_000, windows_ms=(60_000, 21_600_000),
                            allowed_lateness_ms=5_000)


def rss_bytes(daemon: Wattline) -> int:
    """The daemon's resident set size, from /proc/<pid>/status."""
    status = Path(f"/proc/{daemon.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) * 1024


def checkpoint_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.iterdir()
               if p.is_file() and p.name != "wal" and not p.name.startswith("."))


def new_lines(site: str, first: int, count: int, ts_ms: int) -> list[tuple[str, Any]]:
    return [(f"factory/{site}/line-{n:05d}/energy/incomer", {"ts": ts_ms, "v": 10.0})
            for n in range(first, first + count)]


def wait_until_checkpointed(state_dir: Path) -> None:
    """Until the newest checkpoint holds every message received: the write-ahead log that
    follows it is empty (the daemon logs each batch before working on it)."""

    def done() -> bool:
        logs = sorted((state_dir / "wal").glob("wal-*.log"))
        if not logs or logs[-1].stat().st_size:
            return False
        generation = json.loads((state_dir / "checkpoint.json").read_text())["generation"]
        return logs[-1].name == f"wal-{generation:012d}.log"

    wait_until(done, timeout_s=60, what="a checkpoint of everything received")


@pytest.mark.e2e
def test_a_flood_of_new_lines_beyond_max_lines_is_refused_and_memory_stays_bounded(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    stack = make_stack([*FLOOD_ARGS, "--state-dir", str(state_dir)])
    daemon = stack.daemon
    client = make_publisher(stack.broker)
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    ts = recent_start_ms()
    # The meta above registered no meter: the cap's lines come from readings.
    publish_all(client, new_lines(site, 0, CAP, ts), timeout_s=120)
    publish_all(client, new_lines(site, 0, CAP, ts + 1_000), timeout_s=120)  # warm, as after
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= 2 * CAP,
               timeout_s=120, what="the cap's lines")
    wait_until_checkpointed(state_dir)
    at_cap_rss = rss_bytes(daemon)
    at_cap_checkpoint = checkpoint_bytes(state_dir)
    at_cap_gauge = daemon.metric("wattline_state_bytes")

    # Three times as many new lines again, each with two readings.
    publish_all(client, new_lines(site, CAP, FLOOD, ts), timeout_s=240)
    publish_all(client, new_lines(site, CAP, FLOOD, ts + 1_000), timeout_s=240)

    def refused() -> bool:
        assert daemon.running, "a flood of new lines must never stop the collector"
        return daemon.metric_sum("wattline_readings_dropped_total",
                                 {"reason": "meter_limit"}) >= 2 * FLOOD

    wait_until(refused, timeout_s=240, what="every reading of the flood refused")
    wait_until_checkpointed(state_dir)
    after_rss = rss_bytes(daemon)
    after_checkpoint = checkpoint_bytes(state_dir)

    assert daemon.metric_sum("wattline_readings_dropped_total",
                             {"reason": "meter_limit"}) == 2 * FLOOD
    assert daemon.metric("wattline_meters_refused_total", {"limit": "max_lines"}) == FLOOD
    lines = {s for s in daemon.scrape().splitlines()
             if s.startswith("wattline_line_last_reading_timestamp_seconds{")}
    assert len(lines) == CAP  # no series for a refused line

    # What the daemon holds for the cap's lines shows in its memory: the kernel state is
    # written, not merely reserved.
    at_cap_state = state_nbytes(new_state(FLOOD_CONFIG, CAP, CAP))
    assert at_cap_rss > at_cap_state
    # Had the flood's lines been taken, the state alone would have grown by this much.
    unbounded = state_nbytes(new_state(FLOOD_CONFIG, FLOOD, FLOOD))
    assert after_rss - at_cap_rss < unbounded / 10, (at_cap_rss, after_rss, unbounded)
    # The checkpoint is the state and the meter list: it grew no more than they did.
    assert at_cap_checkpoint >= at_cap_state
    assert after_checkpoint - at_cap_checkpoint <= 0.01 * at_cap_checkpoint
    # The state-size gauge: the state at the cap, and hardly more after the flood (the
    # refused names the registry remembers, to report each once).
    at_cap_gauge = at_cap_gauge or 0.0
    assert at_cap_gauge >= at_cap_state
    assert (daemon.metric("wattline_state_bytes") or 0.0) - at_cap_gauge < unbounded / 10


# -- a sentinel register read on a meter with a max_rate ---------------------------------------

SENTINEL_STEP = 45  # the bad read comes half-way between readings 45 and 46
MAX_RATE = 20_000.0  # kWh per hour; the furnace draws at most 6 kWh per 2 s = 10,800 kWh/h


@pytest.mark.e2e
def test_a_sentinel_read_on_a_meter_with_max_rate_is_dropped_as_implausible(
    make_stack: Callable[..., Stack],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    stack = make_stack(list(KERNEL_ARGS))
    victoria, daemon = stack.victoria, stack.daemon
    client = make_publisher(stack.broker)
    start_ms = recent_start_ms()
    wait_until_subscribed(daemon, client, site, timeout_s=30)
    energy = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    meta = {"carrier": "electricity", "unit": "kWh", "mode": "counter", "max_rate": MAX_RATE}
    messages = readings_messages(site, start_ms)
    at = next(i for i, (topic, payload) in enumerate(messages)
              if topic == energy and payload == {"ts": start_ms + SENTINEL_STEP * STEP_MS,
                                                  "v": electricity_register(SENTINEL_STEP)})
    sentinel = (energy, {"ts": start_ms + SENTINEL_STEP * STEP_MS + STEP_MS // 2,
                         "v": float(0xFFFFFFFF)})
    publish_all(client, [(f"{energy}/meta", meta), *messages[:at + 1], sentinel,
                         *messages[at + 1:]], timeout_s=60)
    wait_until(lambda: daemon.metric_sum("wattline_readings_dropped_total",
                                         {"reason": "implausible"}) >= 1,
               timeout_s=60, what="the sentinel dropped as implausible")
    labels = f'site="{site}",line="{LINE}"'
    last_tick = start_ms + CHECKED_TICKS_MS[-1]
    wait_until(lambda: last_tick in victoria.samples(
        f'energy_intensity_electricity_kwh{{{labels},window="2m"}}'),
        timeout_s=60, what="the last tick")
    assert daemon.metric_sum("wattline_readings_dropped_total", {"reason": "implausible"}) == 1
    assert_every_expected_point(victoria, site, start_ms)  # the windows never saw it
