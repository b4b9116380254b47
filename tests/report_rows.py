"""Period and batch rows of made-up lines for the energy report's tests, as the store
holds them (``PERIOD_SCHEMA``, ``BATCH_SCHEMA``): energy = base load + energy per tonne
x production, times a saving factor from a given day on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from wattline.contract.reference_data import load_reference
from wattline.contract.schemas import BATCH_SCHEMA
from wattline.ingest.periods_stage import PERIOD_SCHEMA

__all__ = ["KGCE_PER_KWH", "line_rows", "ms", "write_store"]

KGCE_PER_KWH = load_reference().carriers["electricity"].kgce_per_unit


def ms(day: str) -> int:
    """Midnight UTC of ``YYYY-MM-DD`` in epoch ms."""
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def line_rows(site: str, line: str, first_day: str, days: int, *, seed: int = 0,
              base_kgce_per_shift: float = 800.0, kgce_per_t: float = 60.0,
              tonnes_per_shift: tuple[float, float] = (300.0, 700.0),
              saving: float = 0.0, saving_from: str | None = None,
              noise: float = 0.005, batches_per_shift: int = 0) -> tuple[pa.Table, pa.Table]:
    """Final shift (three of 8 h a day, UTC), day and month rows, and batch rows."""
    rng = np.random.default_rng(seed)
    start = datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    cut = ms(saving_from) if saving_from else None
    rows: list[dict[str, object]] = []
    batches: list[dict[str, object]] = []
    months: dict[int, list[float]] = {}

    def row(period: str, t: int, kgce: float, tonnes: float) -> dict[str, object]:
        kwh = kgce / KGCE_PER_KWH
        return {"site": site, "line": line, "period": period, "time_ms": t,
                "energy_kgce": kgce, "electricity_kwh": kwh, "production_t": tonnes,
                "kgce_per_t": kgce / tonnes if tonnes > 0 else None,
                "kwh_per_t": kwh / tonnes if tonnes > 0 else None,
                "final": True, "late_readings": 0, "grade": None, "gap_to_benchmark": None}

    for d in range(days):
        day = start + timedelta(days=d)
        day_ms = int(day.timestamp() * 1000)
        totals = [0.0, 0.0]
        for s in range(3):
            t = day_ms + s * 8 * 3_600_000
            tonnes = float(rng.uniform(*tonnes_per_shift))
            kgce = (base_kgce_per_shift + kgce_per_t * tonnes) * (1 + rng.normal(0, noise))
            if cut is not None and t >= cut:
                kgce *= 1.0 - saving
            rows.append(row("shift", t, kgce, tonnes))
            totals[0] += kgce
            totals[1] += tonnes
            for b in range(batches_per_shift):
                close = t + (b + 1) * 8 * 3_600_000 // batches_per_shift
                share_e, share_t = kgce / batches_per_shift, tonnes / batches_per_shift
                batches.append({"site": site, "line": line, "batch": f"H{close // 1000}",
                                "time_ms": close, "energy_kgce": share_e,
                                "electricity_kwh": share_e / KGCE_PER_KWH,
                                "production_t": share_t, "kgce_per_t": share_e / share_t,
                                "kwh_per_t": share_e / KGCE_PER_KWH / share_t,
                                "duration_s": 8 * 3600 / batches_per_shift})
        rows.append(row("day", day_ms, *totals))
        month = int(day.replace(day=1).timestamp() * 1000)
        held = months.setdefault(month, [0.0, 0.0])
        held[0] += totals[0]
        held[1] += totals[1]
    rows += [row("month", t, kgce, tonnes) for t, (kgce, tonnes) in months.items()]
    return (pa.Table.from_pylist(rows, schema=PERIOD_SCHEMA),
            pa.Table.from_pylist(batches, schema=BATCH_SCHEMA))


def write_store(directory: Path, *lines: tuple[pa.Table, pa.Table]) -> Path:
    """A Parquet store holding these lines' periods and batches, as the daemon writes
    them (``ParquetStore.write_periods`` / ``write_batches``)."""
    from wattline.ingest.sinks.parquet_store import ParquetStore

    store = ParquetStore(directory, housekeeping_every_s=1e9)
    store.open()
    for periods, batches in lines:
        store.write_periods(periods)
        if batches.num_rows:
            store.write_batches(batches)
    store.close()
    return directory
