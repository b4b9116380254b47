"""The columnar results batch that every sink takes: one row per line, tick and window.

This is the ``energy_intensity`` measurement of docs/formats.md as an Arrow table.
``kgce_per_t``, ``kwh_per_t`` and ``co2_per_t`` are null where the window is idle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.kernels import Ticks


def intensity_table(
    ticks: Ticks,
    line_sites: Sequence[str],
    line_names: Sequence[str],
    window_names: Sequence[str],
) -> pa.Table:
    """Turn kernel ticks into the results batch.

    ``line_sites[i]`` and ``line_names[i]`` name kernel line ``i``; ``window_names[w]``
    is window ``w`` as configured (``15m``, ``1h``...); the kernel's windows after
    those (one kept only for the alert rules) are left out. Rows are ordered by tick
    row, then window.
    """
    n = len(ticks)
    W = len(window_names)
    if n == 0:
        return INTENSITY_SCHEMA.empty_table()
    lines = np.repeat(ticks.line, W)
    sites_arr = pa.array(list(line_sites), pa.string())
    names_arr = pa.array(list(line_names), pa.string())
    idx = pa.array(lines)
    windows = pa.array(list(window_names), pa.string())
    window_idx = pa.array(np.tile(np.arange(W, dtype=np.int32), n))
    kgce_t = np.ascontiguousarray(ticks.kgce_per_t[:, :W]).reshape(-1)
    kwh_t = np.ascontiguousarray(ticks.kwh_per_t[:, :W]).reshape(-1)
    co2_t = np.ascontiguousarray(ticks.co2_per_t[:, :W]).reshape(-1)
    return pa.Table.from_arrays(
        [
            sites_arr.take(idx),
            names_arr.take(idx),
            windows.take(window_idx),
            pa.array(np.repeat(ticks.tick_ms, W)),
            pa.array(np.ascontiguousarray(ticks.energy_kgce[:, :W]).reshape(-1)),
            pa.array(np.ascontiguousarray(ticks.electricity_kwh[:, :W]).reshape(-1)),
            pa.array(np.ascontiguousarray(ticks.production_t[:, :W]).reshape(-1)),
            pa.array(kgce_t, mask=np.isnan(kgce_t)),
            pa.array(kwh_t, mask=np.isnan(kwh_t)),
            pa.array(np.ascontiguousarray(ticks.co2_direct_t[:, :W]).reshape(-1)),
            pa.array(np.ascontiguousarray(ticks.co2_indirect_t[:, :W]).reshape(-1)),
            pa.array(co2_t, mask=np.isnan(co2_t)),
        ],
        schema=INTENSITY_SCHEMA,
    )
