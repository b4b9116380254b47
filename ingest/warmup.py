"""``warm_up_kernels``: the kernels loaded (or compiled) before the first real batch.

Numba loads compiled kernels from its cache on first call, or compiles them when the
cache is cold (a fresh install, changed kernels), which takes tens of seconds. Three
ways this module keeps that off the first reading:

- ``wattline warmup`` (at install or image build: ``scripts/setup.sh``, the
  Dockerfile) runs every kernel the daemon may call once, batch lines' included, so
  their machine code is in the cache (``NUMBA_CACHE_DIR``, else beside the package)
  before the daemon ever starts;
- the collector runs ``warm_up_kernels`` on a thread of its own while it connects,
  subscribes and queues the first messages (``wattline.ingest.app.daemon``);
- each kernel compiles one specialisation only (no literal flags at call sites).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from wattline.ingest.config import settings_from_mapping
from wattline.ingest.decode.batch import Message
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline

__all__ = ["warm_up_kernels"]

_BATCH_TAPS = (20, 45)
"""Steps of the made-up batch line at which a heat is tapped (closing a batch)."""


def warm_up_kernels(*, batch_lines: bool = False) -> float:
    """Run the kernels once on a few minutes of a made-up line, in a throwaway pipeline;
    returns the seconds it took. With ``batch_lines``, also a made-up batch line, so the
    batch kernels and the batch alert rule are loaded (or compiled) too.
    """
    started = time.time()
    base_ms = int(started * 1000) // 10_000 * 10_000 - 600_000
    messages = [
        Message(f"warmup/s/l/{kind}/m", orjson.dumps({"ts": base_ms + k * 10_000,
                                                      "v": k * step}), started)
        for k in range(60) for kind, step in (("energy", 5.0), ("production", 0.1))
    ]
    mapping: dict[str, Any] = {"topic_prefix": "warmup"}
    if batch_lines:
        mapping["lines"] = {"s/b": {"batch": True}}
        for k in range(60):
            tonnes = sum(10.0 for tap in _BATCH_TAPS if tap <= k)
            for kind, value in (("energy", 100.0 * k), ("production", 10.0 + tonnes)):
                messages.append(Message(f"warmup/s/b/{kind}/m", orjson.dumps(
                    {"ts": base_ms + k * 10_000, "v": value}), started))
        messages.sort(key=lambda m: orjson.loads(m.payload)["ts"])
    pipeline = Pipeline(settings_from_mapping(mapping), [], CollectorMetrics())
    pipeline.line_log.quiet = True  # its made-up line is no first reading of this daemon
    pipeline.process(messages)
    return time.time() - started
