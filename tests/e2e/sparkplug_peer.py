"""An edge node that is not wattline's: pysparkplug's own ``EdgeNode`` and ``Device``,
with its own MQTT client (paho-mqtt 1.x), in a virtual environment of its own.

Run by tests/e2e/test_sparkplug_interop.py with that environment's Python
(``.venv/peers/pysparkplug``, made by scripts/setup.sh); it imports nothing of
wattline. Arguments: a JSON object with ``host``, ``port``, ``group``, ``node``,
``device``, ``start_ms``, ``steps`` and ``step_ms``.

It connects (NBIRTH, with its bdSeq and an NDEATH will), registers a device (DBIRTH),
then sends ``steps`` readings of a node electricity counter and a node production
counter (NDATA) and of a device electricity counter of auxiliary drives (DDATA, 1 kWh
a step), each stamped ``start_ms + k * step_ms``, one more electricity reading 20 s
later to move the daemon's watermark past the last tick, and disconnects (NDEATH).
It prints ``done`` at the end.
"""

from __future__ import annotations

import json
import sys
import time

import pysparkplug as spb

DOUBLE = spb.DataType.DOUBLE


def counter(name: str, ts: int, value: float) -> spb.Metric:
    return spb.Metric(timestamp=ts, name=name, datatype=DOUBLE, value=value)


def main() -> None:
    spec = json.loads(sys.argv[1])
    start, step = spec["start_ms"], spec["step_ms"]

    def electricity(k: int) -> spb.Metric:
        return counter("energy/Öfen-3", start + k * step, 1000.0 + 4.0 * k)

    def production(k: int) -> spb.Metric:
        return counter("production/Pfanne 1", start + k * step, 50.0 + 0.25 * k)

    def drives(k: int) -> spb.Metric:
        return counter("energy/Hilfsantriebe", start + k * step, 10.0 + 1.0 * k)

    node = spb.EdgeNode(spec["group"], spec["node"], [electricity(0), production(0)])
    node.connect(spec["host"], port=spec["port"], blocking=False)
    deadline = time.monotonic() + 20
    while not node._connected:  # pysparkplug has no public "connected"
        if time.monotonic() > deadline:
            raise SystemExit("peer: could not connect")
        time.sleep(0.05)
    node.register(spb.Device(spec["device"], [drives(0)]))
    for k in range(1, spec["steps"] + 1):
        node.update([electricity(k), production(k)])
        node.update_device(spec["device"], [drives(k)])
        time.sleep(0.01)  # QoS 0, as Sparkplug says: keep the broker's queue short
    last = spb.Metric(timestamp=start + spec["steps"] * step + 20_000, name="energy/Öfen-3",
                      datatype=DOUBLE, value=1000.0 + 4.0 * spec["steps"])
    node.update([last])
    time.sleep(0.5)
    node.disconnect()
    print("done", flush=True)


if __name__ == "__main__":
    main()
