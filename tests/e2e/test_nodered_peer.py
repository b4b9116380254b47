"""The bench's Node-RED peer computes what wattline computes: a real Node-RED 4 running our
flow on a real Mosquitto, against the plain-Python oracle ``kernels/naive.py``, on a stream
with a reading that overtakes the one before it, a reset, a rollover and a late reading."""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, wait_until
from wattline.benchmarks.nodered_flow import KGCE_PER_KWH, build_flow
from wattline.benchmarks.nodered_peer import DEFAULT_CACHE, NodeRed, ensure_node_red
from wattline.kernels.naive import ReferenceState, reference_advance
from wattline.kernels.state import KernelConfig, MeterTable, Readings

T0_MS = 1_700_000_000_000
"""Plant time of the stream's first reading: long past, so the wall clock caps nothing."""
ROLLOVER = 1000.0
# (line, kind, meter): meter numbers of the oracle's MeterTable, in this order
METERS = [("l1", "production", "out"), ("l1", "energy", "e1"), ("l1", "energy", "e2"),
          ("l2", "production", "out"), ("l2", "energy", "e1")]
RESET_AT = 90  # l1/e1 restarts from 3.0 at this second
SWAPPED = 40  # l2/e1's reading of this second arrives after the next second's
LATE_S = 150  # at this second, l1/e1 also sends its reading of 45 s ago again: late


@pytest.fixture(scope="session")
def node_red_cache() -> Path:
    cache = Path(os.environ.get("WATTLINE_NODE_RED_CACHE", DEFAULT_CACHE))
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("no Node-RED peer: npm or node is not installed (make setup)")
    ensure_node_red(cache)  # with npm here, a failed install is a failure
    return cache


def value(meter: int, second: int) -> float:
    line, kind, name = METERS[meter]
    if (line, name) == ("l1", "e1") and second >= RESET_AT:
        return 3.0 + 0.5 * (second - RESET_AT)
    if (line, name) == ("l1", "e2"):
        return (990.0 + 0.75 * second) % ROLLOVER  # wraps at 1000 after 13 s
    return (0.02 if kind == "production" else 1.25) * second + 100.0 * (meter + 1)


def stream(seconds: int) -> list[tuple[int, int, float]]:
    """(meter, ts, value) in publishing order: every meter each second, with the swap
    and the late repeat."""
    out = [(m, T0_MS + s * 1000, value(m, s)) for s in range(seconds) for m in range(len(METERS))]
    swapped = [i for i, (m, ts, _) in enumerate(out)
               if m == 4 and ts in (T0_MS + SWAPPED * 1000, T0_MS + (SWAPPED + 1) * 1000)]
    a, b = swapped
    out[a], out[b] = out[b], out[a]
    late = next(i for i, (m, ts, _) in enumerate(out) if ts == T0_MS + LATE_S * 1000)
    out.insert(late, (1, T0_MS + (LATE_S - 45) * 1000, value(1, LATE_S - 45)))
    return out


def oracle(readings: list[tuple[int, int, float]], config: KernelConfig) -> list:
    kwh = [0.0 if kind == "production" else 1.0 for _, kind, _ in METERS]
    table = MeterTable(
        line=np.array([0 if line == "l1" else 1 for line, _, _ in METERS]),
        kgce_per_unit=np.array([k * KGCE_PER_KWH for k in kwh]),
        kwh_per_unit=np.array(kwh), t_per_unit=np.array([1.0 - k for k in kwh]),
        delta_mode=np.zeros(len(METERS), dtype=bool),
        rollover=np.array([ROLLOVER if (line, name) == ("l1", "e2") else 0.0
                           for line, _, name in METERS]),
        n_lines=2)
    meter, ts, v = zip(*readings, strict=True)
    return reference_advance(ReferenceState(), config, table, Readings.from_arrays(meter, ts, v))


@pytest.fixture(scope="module")
def node_red_rows(mosquitto: Mosquitto, node_red_cache: Path) -> Iterator[tuple[list, list]]:
    config = KernelConfig()
    readings = stream(300)
    flow = build_flow("127.0.0.1", mosquitto.port, "peer/#", 1, f"peer-{uuid.uuid4().hex[:8]}",
                      config, rollover={"site/l1/energy/e2": ROLLOVER}, keep_rows=True)
    peer = NodeRed(node_red_cache, flow)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        peer.wait_ready()
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        # the mqtt in node subscribes after the HTTP side is up: probe until it counts
        wait_until(lambda: publisher.publish("peer/probe", "{}", qos=1).wait_for_publish(5)
                   or peer.get("counts")["messages"] > 0, timeout_s=30)
        base = peer.get("counts")["messages"]
        infos = [publisher.publish(f"peer/site/{METERS[m][0]}/{METERS[m][1]}/{METERS[m][2]}",
                                   json.dumps({"ts": ts, "v": v}), qos=1)
                 for m, ts, v in readings]
        infos[-1].wait_for_publish(30)
        wait_until(lambda: peer.get("counts")["messages"] - base >= len(readings), timeout_s=30)
        yield peer.get("rows"), oracle(readings, config)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        peer.stop()


def test_node_red_flow_gives_the_oracles_window_sums_with_a_swap_a_reset_and_a_rollover(
        node_red_rows: tuple[list, list]) -> None:
    rows, expected = node_red_rows
    assert len(expected) > 50
    assert [(r["line"], r["tick_ms"]) for r in rows] == \
        [(f"site/l{t.line + 1}", t.tick_ms) for t in expected]
    for row, tick in zip(rows, expected, strict=True):
        for w, window in enumerate(row["windows"]):
            got = (window["energy_kgce"], window["electricity_kwh"], window["production_t"])
            assert got == pytest.approx(tick.sums[w][:3], rel=1e-9, abs=1e-9), (row, w)
            ratio = tick.kgce_per_t[w]
            assert (window["kgce_per_t"] is None) == math.isnan(ratio)
            if not math.isnan(ratio):
                assert window["kgce_per_t"] == pytest.approx(ratio, rel=1e-9)


def test_the_stream_catches_a_flow_that_takes_readings_in_arrival_order(
        node_red_rows: tuple[list, list]) -> None:
    # Deltas from the previous arrival: the overtaken reading looks like a reset of l2/e1.
    rows, expected = node_red_rows
    arrivals = [(ts, v) for m, ts, v in stream(300) if m == 4]
    last = [t for t in expected if t.line == 1][-1]
    naive = sum(v - p if v >= p else v for (_, p), (ts, v) in pairwise(arrivals)
                if ts <= last.tick_ms)
    assert naive != pytest.approx(last.sums[2][1])
    assert rows[-1 if rows[-1]["line"] == "site/l2" else -2]["windows"][2]["electricity_kwh"] \
        == pytest.approx(last.sums[2][1])
