"""The known stream of line ``eaf-1`` and the energy_intensity points it must give.

One line, ``eaf-1``, with an electricity counter (``incomer``) and a production
counter (``ladle-scale``), each read every 2 s for 4 minutes of event time,
starting 20 minutes ago on a multiple of the 10 s tick. The furnace produces
0.25 t per reading for the first 2 minutes and then stands idle while still
drawing power, so both windows (1m, 2m) end in idle ticks. The electricity
register resets once. Two blocks of readings go as a batch and as a columnar
batch, one reading has an RFC 3339 time, the rest go one reading per message.

The expectation is the contract's definition written out plainly (sums of
deltas over ``(T - W, T]``); ``tests/e2e/test_e2e_pipeline.py`` pins it to sums
worked out on paper. A daemon fed this stream runs with ``KERNEL_ARGS``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.processes import VictoriaMetrics

TICK_MS = 10_000
STEP_MS = 2_000
LAST_STEP = 120  # readings k = 0..120: 4 minutes of event time
RESET_STEP = 40  # the electricity register restarts from 0 just before this reading
LAST_PRODUCING_STEP = 60  # production deltas at k = 1..60, then the line is idle
BATCH_STEPS = (20, 21, 22)  # sent as [{"ts", "v"}, ...]
COLUMNAR_STEPS = (50, 51, 52)  # sent as {"ts": [...], "v": [...]}
RFC3339_STEP = 30  # the production reading of this step carries an RFC 3339 time
FINAL_OFFSET_MS = LAST_STEP * STEP_MS + 20_000  # moves the watermark past the last checked tick
CHECKED_TICKS_MS = range(TICK_MS, LAST_STEP * STEP_MS + 1, TICK_MS)  # offsets from the start
WINDOWS_MS = {"1m": 60_000, "2m": 120_000}
ELECTRICITY_KGCE_PER_KWH = 0.1229  # contract/data/energy.yaml, GB/T 2589 equivalent value
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")
# The daemon settings the expectation assumes.
KERNEL_ARGS = ("--emit-every", "10s", "--windows", "1m,2m", "--allowed-lateness", "5s")

LINE = "eaf-1"
ENERGY_METER = "incomer"
PRODUCTION_METER = "ladle-scale"


def electricity_delta(k: int) -> float:
    """kWh drawn between readings k-1 and k: 4, 5 or 6, except the reset reading's 3."""
    return 3.0 if k == RESET_STEP else 4.0 + k % 3


def production_delta(k: int) -> float:
    """Tonnes between readings k-1 and k (exact in binary, so sums are exact)."""
    return 0.25 if k <= LAST_PRODUCING_STEP else 0.0


def electricity_register(k: int) -> float:
    """The counter's reading k: it starts at 1000 kWh and reads 3 kWh right after the reset."""
    if k == 0:
        return 1000.0
    if k == RESET_STEP:
        return electricity_delta(k)  # a decrease without rollover: the delta is the reading
    return electricity_register(k - 1) + electricity_delta(k)


def production_register(k: int) -> float:
    return 250.0 + sum(production_delta(i) for i in range(1, k + 1))


def expected_point(tick_offset_ms: int, window_ms: int) -> dict[str, float]:
    """The contract's energy_intensity fields at one tick (offset from the start) and window."""
    steps = [
        k
        for k in range(1, LAST_STEP + 1)
        if tick_offset_ms - window_ms < k * STEP_MS <= tick_offset_ms
    ]
    kwh = sum(electricity_delta(k) for k in steps)
    tonnes = sum(production_delta(k) for k in steps)
    point = {
        "energy_kgce": kwh * ELECTRICITY_KGCE_PER_KWH,
        "electricity_kwh": kwh,
        "production_t": tonnes,
    }
    if tonnes > 0:
        point["kgce_per_t"] = kwh * ELECTRICITY_KGCE_PER_KWH / tonnes
        point["kwh_per_t"] = kwh / tonnes
    return point


def recent_start_ms() -> int:
    """Where a test stream starts: twenty minutes ago, on a tick (well inside the daemon's
    accepted time range, and long enough ago that its last ticks are due)."""
    return (int(time.time() * 1000) - 20 * 60_000) // TICK_MS * TICK_MS


def readings_messages(site: str, start_ms: int) -> list[tuple[str, Any]]:
    """The (topic, JSON payload) messages of the stream, in publishing order."""
    energy = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    production = f"factory/{site}/{LINE}/production/{PRODUCTION_METER}"
    meters = ((energy, electricity_register), (production, production_register))

    def ts(k: int) -> int:
        return start_ms + k * STEP_MS

    messages: list[tuple[str, Any]] = []
    for k in range(LAST_STEP + 1):
        if k in BATCH_STEPS[1:] or k in COLUMNAR_STEPS[1:]:
            continue  # sent with the block's first step
        for topic, register in meters:
            if k == BATCH_STEPS[0]:
                payload: Any = [{"ts": ts(i), "v": register(i)} for i in BATCH_STEPS]
            elif k == COLUMNAR_STEPS[0]:
                payload = {"ts": [ts(i) for i in COLUMNAR_STEPS],
                           "v": [register(i) for i in COLUMNAR_STEPS]}
            elif k == RFC3339_STEP and topic == production:
                when = datetime.fromtimestamp(ts(k) / 1000, tz=UTC).isoformat()
                payload = {"ts": when, "v": register(k)}
            else:
                payload = {"ts": ts(k), "v": register(k)}
            messages.append((topic, payload))
    final = {"ts": start_ms + FINAL_OFFSET_MS, "v": electricity_register(LAST_STEP) + 4.0}
    messages.append((energy, final))
    return messages


def count_readings(messages: list[tuple[str, Any]]) -> int:
    """How many readings these messages carry, whatever their payload form."""
    total = 0
    for _, payload in messages:
        if isinstance(payload, list):
            total += len(payload)
        elif isinstance(payload["ts"], list):
            total += len(payload["ts"])
        else:
            total += 1
    return total


def assert_every_expected_point(victoria: VictoriaMetrics, site: str, start_ms: int) -> None:
    """Every checked tick of the stream is in VictoriaMetrics with the expected values
    (a point written twice must carry the same values both times)."""
    labels = f'site="{site}",line="{LINE}"'
    for window, window_ms in WINDOWS_MS.items():
        for field in FIELDS:
            written = {ts - start_ms: values for ts, values in victoria.samples(
                f'energy_intensity_{field}{{{labels},window="{window}"}}').items()
                if CHECKED_TICKS_MS[0] <= ts - start_ms <= CHECKED_TICKS_MS[-1]}
            expected = {t: expected_point(t, window_ms)[field] for t in CHECKED_TICKS_MS
                        if field in expected_point(t, window_ms)}
            assert sorted(written) == sorted(expected), f"{field} {window}: ticks missing"
            for t, value in expected.items():
                assert written[t] == pytest.approx([value] * len(written[t]), rel=1e-9)
