"""The Arrow schemas of what wattline writes: intensity results and alert events.

Every sink takes batches of exactly these columns, and the Parquet store keeps them.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ALERT_SCHEMA", "BATCH_SCHEMA", "INTENSITY_SCHEMA"]

INTENSITY_SCHEMA = pa.schema(
    [
        pa.field("site", pa.string(), nullable=False),
        pa.field("line", pa.string(), nullable=False),
        pa.field("window", pa.string(), nullable=False),
        pa.field("time_ms", pa.int64(), nullable=False),
        pa.field("energy_kgce", pa.float64(), nullable=False),
        pa.field("electricity_kwh", pa.float64(), nullable=False),
        pa.field("production_t", pa.float64(), nullable=False),
        pa.field("kgce_per_t", pa.float64()),
        pa.field("kwh_per_t", pa.float64()),
    ]
)
"""Schema of an intensity batch. Sinks may rely on exactly these columns."""


ALERT_SCHEMA = pa.schema(
    [
        pa.field("site", pa.string(), nullable=False),
        pa.field("line", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("time_ms", pa.int64(), nullable=False),
        pa.field("state", pa.int8(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("message", pa.string(), nullable=False),
    ]
)
"""One row per alert start (state 1) or end (state 0). value and threshold are null
where there is none (an idle window, no long-window intensity)."""


BATCH_SCHEMA = pa.schema(
    [
        pa.field("site", pa.string(), nullable=False),
        pa.field("line", pa.string(), nullable=False),
        pa.field("batch", pa.string(), nullable=False),
        pa.field("time_ms", pa.int64(), nullable=False),  # the batch's close
        pa.field("energy_kgce", pa.float64(), nullable=False),
        pa.field("electricity_kwh", pa.float64(), nullable=False),
        pa.field("production_t", pa.float64(), nullable=False),
        pa.field("kgce_per_t", pa.float64()),
        pa.field("kwh_per_t", pa.float64()),
        pa.field("duration_s", pa.float64(), nullable=False),
    ]
)
"""One row per closed batch of a batch line (the ``energy_batch`` measurement). The
intensities are null only where they would not be finite (a vanishing production)."""
