"""The periods stage: each batch's readings -> shift, day and month totals -> a periods table.

The pipeline calls ``PeriodStage.run`` with every decoded batch (after the intensity
kernel, with the same readings and wall clock), and ``PeriodStage.idle`` on quiet
turns of its loop, so that a line gone silent still gets its final periods
``period_grace`` of wall clock later. Each returns the ``energy_period`` rows
(``PERIOD_SCHEMA``) to write: provisional rows (``final`` false) while a period is
open, one final row when it closes. The stage's ``state`` is saved with every
checkpoint (``arrays``/``restore``), so a restart neither loses nor repeats a final
period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from wattline.contract.reference_data import load_reference
from wattline.ingest.calendar import Calendar
from wattline.ingest.config import Settings
from wattline.ingest.grading import PeriodGrading
from wattline.ingest.metrics import CollectorMetrics
from wattline.kernels import MeterTable, Readings
from wattline.kernels.periods import (
    PERIOD_DROP_REASONS,
    PERIOD_KINDS,
    PeriodConfig,
    Periods,
    advance_periods,
    grow_period_state,
    new_period_state,
    period_state_arrays,
    period_state_from_arrays,
)

__all__ = ["PERIOD_SCHEMA", "PeriodStage", "period_table"]

log = logging.getLogger("wattline.periods")

PERIOD_SCHEMA = pa.schema([
    pa.field("site", pa.string(), nullable=False),
    pa.field("line", pa.string(), nullable=False),
    pa.field("period", pa.string(), nullable=False),
    pa.field("time_ms", pa.int64(), nullable=False),  # the period's start
    pa.field("energy_kgce", pa.float64(), nullable=False),
    pa.field("electricity_kwh", pa.float64(), nullable=False),
    pa.field("production_t", pa.float64(), nullable=False),
    pa.field("kgce_per_t", pa.float64()),
    pa.field("kwh_per_t", pa.float64()),
    # Always written; nullable for rows from before wattline recorded carbon.
    pa.field("co2_direct_t", pa.float64()),
    pa.field("co2_indirect_t", pa.float64()),
    pa.field("co2_per_t", pa.float64()),
    pa.field("final", pa.bool_(), nullable=False),
    pa.field("late_readings", pa.int64(), nullable=False),
    pa.field("grade", pa.int64()),  # day and month of a line with a product (grading.py)
    pa.field("gap_to_benchmark", pa.float64()),
])
"""Schema of a periods batch (the ``energy_period`` measurement of docs/formats.md)."""

IDLE_EVERY_S = 1.0
"""How often a quiet pipeline asks the stage for silent lines' final periods."""


def period_table(periods: Periods, line_sites: Sequence[str],
                 line_names: Sequence[str], grading: PeriodGrading | None = None) -> pa.Table:
    """Kernel rows as a periods batch; ratios null where the period is idle, grades where
    ``grading`` gives them (none without)."""
    if not len(periods):
        return PERIOD_SCHEMA.empty_table()
    idx = pa.array(periods.line)
    kinds = pa.array(list(PERIOD_KINDS), pa.string())
    kgce_t, kwh_t = periods.kgce_per_t, periods.kwh_per_t
    table = pa.Table.from_arrays([
        pa.array(list(line_sites), pa.string()).take(idx),
        pa.array(list(line_names), pa.string()).take(idx),
        kinds.take(pa.array(periods.kind.astype(np.int32))),
        pa.array(periods.start_ms),
        pa.array(periods.energy_kgce),
        pa.array(periods.electricity_kwh),
        pa.array(periods.production_t),
        pa.array(kgce_t, mask=np.isnan(kgce_t)),
        pa.array(kwh_t, mask=np.isnan(kwh_t)),
        pa.array(periods.co2_direct_t),
        pa.array(periods.co2_indirect_t),
        pa.array(periods.co2_per_t, mask=np.isnan(periods.co2_per_t)),
        pa.array(periods.final),
        pa.array(periods.late_readings),
        pa.nulls(len(periods), pa.int64()),
        pa.nulls(len(periods), pa.float64()),
    ], schema=PERIOD_SCHEMA)
    if grading is None:
        return table
    grade, gap = grading.columns(table)
    return (table.set_column(table.schema.get_field_index("grade"), PERIOD_SCHEMA.field("grade"),
                             grade)
            .set_column(table.schema.get_field_index("gap_to_benchmark"),
                        PERIOD_SCHEMA.field("gap_to_benchmark"), gap))


class PeriodStage:
    """The periods kernel, its calendar and state, for one pipeline."""

    def __init__(self, settings: Settings, metrics: CollectorMetrics,
                 clock: Callable[[], float]) -> None:
        self.calendar = Calendar(settings.plant_timezone, settings.shift_starts)
        self.config = PeriodConfig(grace_ms=settings.period_grace_ms,
                                   allowed_lateness_ms=settings.allowed_lateness_ms,
                                   min_production_t=settings.min_production_t)
        self.wall_clock = settings.watermark_wall_clock
        self.grading = PeriodGrading({name: own.product for name, own
                                      in settings.alerts.lines.items() if own.product},
                                     load_reference())
        self.metrics = metrics
        self._clock = clock
        self._last_idle = 0.0
        self.state = new_period_state(0, 0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The state's arrays, for a checkpoint."""
        return period_state_arrays(self.state)

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.state = period_state_from_arrays(arrays)

    def run(self, table: MeterTable, readings: Readings, now_ms: int,
            line_sites: Sequence[str], line_names: Sequence[str]) -> pa.Table:
        """One batch through the periods kernel: the rows to write."""
        if table.n_meters > self.state.n_meters or table.n_lines > self.state.n_lines:
            grow_period_state(self.state, n_lines=max(table.n_lines, 2 * self.state.n_lines),
                              n_meters=max(table.n_meters, 2 * self.state.n_meters))
        periods = advance_periods(self.state, self.config, table, readings, self.calendar,
                                  now_ms=now_ms if self.wall_clock else None)
        closed = int(periods.drops[PERIOD_DROP_REASONS.index("period_closed")])
        if closed:
            self.metrics.readings_dropped.labels("period_closed").inc(closed)
        finals = int(periods.final.sum())
        if finals:
            log.info("%d final period(s) closed", finals)
        return period_table(periods, line_sites, line_names, self.grading)

    def idle(self, table: MeterTable, line_sites: Sequence[str],
             line_names: Sequence[str]) -> pa.Table:
        """A quiet turn: at most once a second, silent lines' periods that are due."""
        now = self._clock()
        if not self.wall_clock or now - self._last_idle < IDLE_EVERY_S or not table.n_lines:
            return PERIOD_SCHEMA.empty_table()
        self._last_idle = now
        empty = Readings.from_arrays([], [], [])
        return self.run(table, empty, int(now * 1000), line_sites, line_names)
