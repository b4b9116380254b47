"""Sparkplug B decoding: wattline's own schema against the pysparkplug path it replaced.

    python -m wattline.benchmarks.sparkplug_decode [--messages 20000] [--rounds 7] [--json]

Both decoders get the same payloads, made by the simulator's encoder: an NBIRTH naming
``metrics`` DOUBLE meters with aliases, then NDATA messages by alias only (as edge
nodes send them), each metric with its own timestamp. Timed: ``decode(topic,
payload)`` of every NDATA message, topic to readings (session and sequence checks
included), in ``rounds`` alternating rounds; the median per message is reported, and
``speedup`` = pysparkplug's median / wattline's.

- **wattline**: ``wattline.ingest.sources.sparkplug.SparkplugDecoder``;
- **pysparkplug**: the decoder wattline used before (pysparkplug 0.6.1's
  ``NData.decode(payload, birth=...)`` and the same reading extraction), kept here
  to be measured against. Needs pysparkplug (test-only; ``make setup`` puts it in
  .venv).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import numpy as np

from wattline.contract import sparkplug_b as spb
from wattline.ingest.sources.sparkplug import SparkplugDecoder

T0 = 1_732_406_400_000
TOPIC_BIRTH = "spBv1.0/Sparkplug B Devices/NBIRTH/EAF 1"
TOPIC_DATA = "spBv1.0/Sparkplug B Devices/NDATA/EAF 1"
MAX = 1 << 20


def payloads(messages: int, metrics: int) -> tuple[bytes, list[bytes]]:
    """An NBIRTH, and ``messages`` NDATA payloads of ``metrics`` readings each."""
    birth = spb.encode([spb.Metric(name=f"energy/meter-{i}", alias=i, timestamp=T0,
                                   datatype=spb.DataType.DOUBLE, value=float(i))
                        for i in range(metrics)], timestamp=T0, seq=0)
    data = []
    for k in range(1, messages + 1):
        ts = T0 + 1000 * k
        data.append(spb.encode([spb.Metric(alias=i, timestamp=ts, value=1000.0 + k + i)
                                for i in range(metrics)], timestamp=ts, seq=k % 256))
    return birth, data


class PysparkplugDecoder:
    """The DATA path of the decoder wattline had before its own schema (pysparkplug)."""

    def __init__(self) -> None:
        import pysparkplug

        self._spb = pysparkplug
        self._births: dict[tuple[str, str], Any] = {}
        self._seq: dict[tuple[str, str], int] = {}

    def decode(self, topic: str, payload: bytes) -> list[tuple[str, str, Any, Any]]:
        spb_ = self._spb
        levels = topic.split("/")
        _, group, kind, node_id = levels[:4]
        key = (group, node_id)
        if kind == "NBIRTH":
            birth = spb_.NBirth.decode(payload)
            self._births[key] = birth
            self._seq[key] = birth.seq
            return self._readings(birth.metrics, birth.timestamp)
        data = spb_.NData.decode(payload, birth=self._births[key])
        expected = (self._seq[key] + 1) % 256
        self._seq[key] = data.seq
        if data.seq != expected:
            raise AssertionError("the benchmark's stream has no gaps")
        return self._readings(data.metrics, data.timestamp)

    @staticmethod
    def _readings(metrics: Any, default_ts: int | None) -> list[tuple[str, str, Any, Any]]:
        by_meter: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for metric in metrics:
            name = metric.name
            if not name or "/" not in name:
                continue
            kind, meter = name.split("/", 1)
            ts = metric.timestamp if metric.timestamp is not None else default_ts
            if metric.is_null or metric.value is None or ts is None:
                continue
            value = float(metric.value)
            if math.isfinite(value):
                by_meter.setdefault((kind, meter), []).append((int(ts), value))
        return [(kind, meter, np.array([t for t, _ in pairs], dtype=np.int64),
                 np.array([v for _, v in pairs], dtype=np.float64))
                for (kind, meter), pairs in by_meter.items()]


def _ours(birth: bytes, data: list[bytes]) -> float:
    decoder = SparkplugDecoder()
    decoder.decode(TOPIC_BIRTH, birth, max_bytes=MAX)
    start = time.perf_counter()
    for payload in data:
        decoder.decode(TOPIC_DATA, payload, max_bytes=MAX)
    return (time.perf_counter() - start) / len(data)


def _theirs(birth: bytes, data: list[bytes]) -> float:
    decoder = PysparkplugDecoder()
    decoder.decode(TOPIC_BIRTH, birth)
    start = time.perf_counter()
    for payload in data:
        decoder.decode(TOPIC_DATA, payload)
    return (time.perf_counter() - start) / len(data)


def _same_readings(birth: bytes, data: list[bytes]) -> None:
    """Both decoders read the same numbers (checked before anything is timed)."""
    ours, theirs = SparkplugDecoder(), PysparkplugDecoder()
    for topic, payload in [(TOPIC_BIRTH, birth), *((TOPIC_DATA, p) for p in data[:50])]:
        a = [(r.kind, r.meter, r.ts_ms.tolist(), r.value.tolist())
             for r in ours.decode(topic, payload, max_bytes=MAX).readings]
        b = [(k, m, t.tolist(), v.tolist()) for k, m, t, v in theirs.decode(topic, payload)]
        assert a == b, (topic, a[:2], b[:2])


def run(messages: int = 20_000, rounds: int = 7,
        metrics_per_message: tuple[int, ...] = (1, 20)) -> list[dict[str, Any]]:
    results = []
    for metrics in metrics_per_message:
        birth, data = payloads(messages, metrics)
        _same_readings(birth, data)
        ours, theirs = [], []
        for r in range(rounds):
            for which in ((_ours, ours), (_theirs, theirs))[:: 1 if r % 2 == 0 else -1]:
                which[1].append(which[0](birth, data))
        us_ours = statistics.median(ours) * 1e6
        us_theirs = statistics.median(theirs) * 1e6
        results.append({
            "metrics_per_message": metrics, "messages": messages, "rounds": rounds,
            "wattline_us_per_message": round(us_ours, 2),
            "pysparkplug_us_per_message": round(us_theirs, 2),
            "wattline_readings_per_s": round(metrics / us_ours * 1e6),
            "pysparkplug_readings_per_s": round(metrics / us_theirs * 1e6),
            "speedup": round(us_theirs / us_ours, 2),
        })
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.messages, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'metrics/msg':>11} {'wattline us/msg':>16} {'pysparkplug us/msg':>19} "
          f"{'speedup':>8}")
    for r in results:
        print(f"{r['metrics_per_message']:>11} {r['wattline_us_per_message']:>16.2f} "
              f"{r['pysparkplug_us_per_message']:>19.2f} {r['speedup']:>7.2f}x")


if __name__ == "__main__":
    main()
