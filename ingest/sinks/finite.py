"""Rows no sink can store: a NaN or an infinity in a float field.

Line protocol has no way to write them, and the Parquet store must not keep them (a
NaN compares unequal to itself, and would poison every sum a reader makes). The
kernels never make them from valid readings, but a sum can overflow to infinity,
and one such row must not cost the rest of its batch. ``split_non_finite`` parts a
batch into the rows every sink takes and the rows to dead-letter, with the reason
for each; the fan-out calls it once per batch, before any sink.

A null is not a non-finite value: an idle window's intensity is null, and written
as such (left out of its point).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["split_non_finite"]


def split_non_finite(table: pa.Table) -> tuple[pa.Table, pa.Table, list[str]]:
    """(rows with only finite or null floats, the other rows, one reason per other row).

    The common case, a batch without any, costs one ``isfinite`` per float column and
    returns ``table`` itself.
    """
    bad: np.ndarray | None = None
    columns: list[tuple[str, np.ndarray]] = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_floating(column.type):
            continue
        array = column.combine_chunks()
        values = array.fill_null(0.0).to_numpy(zero_copy_only=False)
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            columns.append((name, values))
            bad = not_finite if bad is None else bad | not_finite
    if bad is None:
        return table, table.slice(0, 0), []
    rows = np.flatnonzero(bad)
    reasons = []
    for row in rows.tolist():
        fields = [f"{name}={float(values[row])!r}" for name, values in columns
                  if not np.isfinite(values[row])]
        reasons.append(f"row {row}: not finite: {', '.join(fields)}")
    keep = pa.array(~bad)
    return table.filter(keep), table.take(pa.array(rows)), reasons
