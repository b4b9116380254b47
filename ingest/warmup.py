"""``warm_up_kernels``: the kernels loaded (or compiled) before the first real batch."""

from __future__ import annotations

import time

import orjson

from wattline.ingest.config import settings_from_mapping
from wattline.ingest.decode.batch import Message
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline

__all__ = ["warm_up_kernels"]


def warm_up_kernels() -> float:
    """Run the kernels once on a few minutes of a made-up line, in a throwaway pipeline;
    returns the seconds it took.

    Numba loads compiled kernels from its cache on first call, or compiles them when
    the cache is cold (a fresh install, changed kernels), which takes seconds. The
    collector does this before it subscribes, so the first real batch does not wait.
    """
    started = time.time()
    base_ms = int(started * 1000) // 10_000 * 10_000 - 600_000
    messages = [
        Message(f"warmup/s/l/{kind}/m", orjson.dumps({"ts": base_ms + k * 10_000,
                                                      "v": k * step}), started)
        for k in range(60) for kind, step in (("energy", 5.0), ("production", 0.1))
    ]
    pipeline = Pipeline(settings_from_mapping({"topic_prefix": "warmup"}), [],
                        CollectorMetrics())
    pipeline.line_log.quiet = True  # its made-up line is no first reading of this daemon
    pipeline.process(messages)
    return time.time() - started
