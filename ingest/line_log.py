"""``LineLog``: what the log says about the data while it flows.

- one INFO line the first time this process hears from a line, and one the first
  time it hears from a meter (so at most ``--max-lines`` and ``--max-meters`` of
  each);
- every ``--summary-every`` (5 min by default; 0 turns it off) one INFO line per
  line with the readings taken from it since the last summary and its newest kgce/t
  per window, then one line with the readings dropped and messages refused in that
  time, by reason (the daemon counts drops per reason, not per line).

The pipeline thread calls ``after_batch`` once per batch and ``tick`` once per turn
of its loop. Counting is a few array operations per batch; the summary is due on a
clock check, so nothing runs per reading in Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from wattline.ingest.decode.registry import MeterRegistry
from wattline.ingest.metrics import CollectorMetrics
from wattline.kernels import Readings, Ticks

__all__ = ["LineLog"]

log = logging.getLogger("wattline.pipeline")


def _grown(array: np.ndarray, n: int, fill: float | bool | int) -> np.ndarray:
    """``array`` (first axis) at least ``n`` long, new entries ``fill``."""
    if array.shape[0] >= n:
        return array
    more = np.full((max(n, 2 * array.shape[0]) - array.shape[0], *array.shape[1:]), fill,
                   dtype=array.dtype)
    return np.concatenate([array, more])


def _counts(metrics: CollectorMetrics) -> dict[str, float]:
    """The dropped readings and refused messages counted so far, by reason."""
    counts: dict[str, float] = {}
    for counter in (metrics.readings_dropped, metrics.payload_errors):
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0.0) + sample.value
    return counts


class LineLog:
    """First readings and periodic summaries of each line; see the module doc."""

    def __init__(self, registry: MeterRegistry, window_names: Sequence[str],
                 metrics: CollectorMetrics, summary_every_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.window_names = list(window_names)
        self.metrics = metrics
        self.summary_every_s = summary_every_s
        self._clock = clock
        self._meter_seen = np.zeros(0, dtype=np.bool_)
        self._line_seen = np.zeros(0, dtype=np.bool_)
        self._taken = np.zeros(0, dtype=np.int64)  # per line, since the last summary
        self._kgce = np.zeros((0, len(self.window_names)), dtype=np.float64)  # newest, NaN: idle
        self._last_summary = clock()
        self._counted = _counts(metrics)
        self.quiet = False
        """True: count, but log nothing (the throwaway pipeline that warms the kernels up)."""

    def after_batch(self, readings: Readings, ticks: Ticks | None, results: pa.Table) -> None:
        """Count one batch's readings per line, note its newest kgce/t, say what is new."""
        n = len(readings)
        if n:
            table = self.registry.table()
            meters = readings.meter
            self._meter_seen = _grown(self._meter_seen, table.n_meters, False)
            n_lines = table.n_lines
            self._line_seen = _grown(self._line_seen, n_lines, False)
            self._taken = _grown(self._taken, n_lines, 0)
            self._kgce = _grown(self._kgce, n_lines, np.nan)
            lines = table.line[meters]
            self._taken[:n_lines] += np.bincount(lines, minlength=n_lines)
            if not self.quiet:
                self._first_readings(meters, lines)
        if ticks is not None and len(ticks) and results.num_rows:
            self._note_intensity(ticks.line, results)

    def _first_readings(self, meters: np.ndarray, lines: np.ndarray) -> None:
        """A line each for the meters and lines of a batch not heard from before."""
        if not self._meter_seen[meters].all():
            self._first_meters(np.unique(meters[~self._meter_seen[meters]]))
        if not self._line_seen[lines].all():
            for line in np.unique(lines[~self._line_seen[lines]]).tolist():
                self._line_seen[line] = True
                log.info("first reading of line %s/%s", self.registry.line_sites[line],
                         self.registry.line_names[line])

    def tick(self) -> None:
        """Log the summary when it is due (one clock read otherwise)."""
        if self.summary_every_s <= 0:
            return
        now = self._clock()
        if now - self._last_summary >= self.summary_every_s:
            self.summarise(now - self._last_summary)
            self._last_summary = now

    def summarise(self, period_s: float) -> None:
        """One line per line heard so far, then the drops since the last summary."""
        minutes = f"{period_s / 60:.0f} min" if period_s >= 60 else f"{period_s:.0f} s"
        sites, names = self.registry.line_sites, self.registry.line_names
        for line in np.flatnonzero(self._line_seen).tolist():
            levels = " ".join(
                f"{window}={'-' if np.isnan(value) else f'{value:.1f}'}"
                for window, value in zip(self.window_names, self._kgce[line].tolist(),
                                         strict=True))
            log.info("line %s/%s, last %s: %d readings; newest kgce/t %s", sites[line],
                     names[line], minutes, int(self._taken[line]), levels)
        self._taken[:] = 0
        counts = _counts(self.metrics)
        new = {reason: counts[reason] - self._counted.get(reason, 0.0) for reason in counts}
        self._counted = counts
        dropped = ", ".join(f"{reason} {int(count)}" for reason, count in sorted(new.items())
                            if count > 0)
        log.info("last %s: %s", minutes,
                 f"dropped or refused: {dropped}" if dropped else "nothing dropped or refused")

    def _first_meters(self, new: np.ndarray) -> None:
        self._meter_seen[new] = True
        first = int(new[0])
        names = self.registry.meter_names(first)
        for meter in new.tolist():
            site, line, kind, name = names[meter - first]
            log.info("first reading of meter %s/%s/%s/%s", site, line, kind, name)

    def _note_intensity(self, tick_lines: np.ndarray, results: pa.Table) -> None:
        """Each line's newest kgce/t per window: its last tick row of the batch."""
        n_windows = len(self.window_names)
        kgce = results.column("kgce_per_t").to_numpy(zero_copy_only=False).astype(np.float64)
        _, first_from_end = np.unique(tick_lines[::-1], return_index=True)
        last_rows = tick_lines.shape[0] - 1 - first_from_end
        lines = tick_lines[last_rows]
        self._kgce = _grown(self._kgce, int(lines.max()) + 1, np.nan)
        self._kgce[lines] = kgce.reshape(-1, n_windows)[last_rows]
