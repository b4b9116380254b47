"""The Arrow schemas of what wattline writes: intensity results and alert events.

Every sink takes batches of exactly these columns, and the Parquet store keeps them.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ALERT_SCHEMA", "BATCH_SCHEMA", "CARBON_FIELDS", "INTENSITY_SCHEMA", "conform"]

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
        # Tonnes of CO2 in the window: scope 1 (burnt on site) and scope 2 (bought power,
        # steam, heat). Always written; null only in rows of a store written before
        # wattline recorded carbon.
        pa.field("co2_direct_t", pa.float64()),
        pa.field("co2_indirect_t", pa.float64()),
        pa.field("co2_per_t", pa.float64()),  # null where the window is idle
    ]
)
"""Schema of an intensity batch. Sinks may rely on exactly these columns."""

CARBON_FIELDS = ("co2_direct_t", "co2_indirect_t", "co2_per_t")
"""The carbon columns of the intensity, batch and period schemas (contract section 8)."""


def conform(table: pa.Table, schema: pa.Schema = INTENSITY_SCHEMA) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types. A nullable
    column the table lacks (one added to the schema after the table was written, as the
    carbon columns were) is filled with nulls; a missing required one is a ``KeyError``."""
    n = table.num_rows
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        elif f.nullable:
            columns.append(pa.chunked_array([pa.nulls(n, f.type)], f.type))
        else:
            raise KeyError(f"column {f.name!r} is missing")
    return pa.Table.from_arrays(columns, schema=schema)


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
        # Always written by the daemon; nullable as in INTENSITY_SCHEMA, for rows from
        # before wattline recorded carbon.
        pa.field("co2_direct_t", pa.float64()),
        pa.field("co2_indirect_t", pa.float64()),
        pa.field("co2_per_t", pa.float64()),
    ]
)
"""One row per closed batch of a batch line (the ``energy_batch`` measurement). The
intensities are null only where they would not be finite (a vanishing production)."""
