"""The batch-observed latency histogram against prometheus-client's own Histogram."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from wattline.ingest.metrics import LATENCY_BUCKETS, BatchHistogram


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.005, 0.01, 0.3, 1.0, 60.0, 61.0])
                         | st.floats(0, 100, allow_nan=False), max_size=30), max_size=5))
def test_batch_histogram_exposes_what_observing_one_by_one_would(batches) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_seconds", "help", LATENCY_BUCKETS, ours)
    one = Histogram("x_seconds", "help", buckets=LATENCY_BUCKETS, registry=theirs)
    for values in batches:
        batch.observe_many(np.array(values, dtype=np.float64))
        for v in values:
            one.observe(v)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("le", "")): s.value
                for f in registry.collect() for s in f.samples
                if not s.name.endswith("_created")}

    got, want = samples(ours), samples(theirs)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key] or abs(got[key] - want[key]) < 1e-9, key
    assert b"x_seconds_bucket" in generate_latest(ours)
