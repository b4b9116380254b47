"""``StaleLineCheck``: the stale-line rule, run on the clock rather than on ticks.

A line that sends nothing moves no watermark and so makes no tick; its silence is
noticed here instead. The pipeline calls the check on every turn of its loop (at
least every 0.2 s); it asks ``LineAlerts.check_stale`` at most once a second of the
injected clock, which starts a stale alert on each line quiet for ``stale_after``.
A reading ends it (``LineAlerts.heard``, in the pipeline's batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa

from wattline.ingest.alerting import LineAlerts
from wattline.ingest.decode.registry import MeterRegistry

__all__ = ["StaleLineCheck"]


class StaleLineCheck:
    """Once per ``every_s`` of ``clock``: the stale alerts that start; see the module doc."""

    def __init__(self, clock: Callable[[], float] = time.time, every_s: float = 1.0) -> None:
        self._clock = clock
        self._every_s = every_s
        self._last_s = 0.0

    def __call__(self, alerts: LineAlerts, registry: MeterRegistry) -> pa.Table | None:
        """The alert rows of lines that went stale since the last check; ``None`` when the
        check is not due or none did."""
        now = self._clock()
        if now - self._last_s < self._every_s:
            return None
        self._last_s = now
        started = alerts.check_stale(now, registry.line_sites, registry.line_names)
        return started if started.num_rows else None
