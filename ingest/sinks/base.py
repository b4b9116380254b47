"""The interface every sink implements, the error it raises, and its health report.

Lifecycle, driven by the pipeline (``wattline.ingest.pipeline``) through the
fan-out (``wattline.ingest.sinks.fanout``), which opens sinks before the MQTT
session starts so downstream is ready before readings flow:

1. ``open()`` once, before the first batch. It may check that the destination
   is there and log what it finds, but a destination that is merely down must
   not make it fail: writes are retried, so the daemon can start before its
   database. It raises ``SinkError`` only for what no retry can mend (a store
   folder that cannot be created).
2. ``write(table)`` for each results batch
   (``wattline.contract.schemas.INTENSITY_SCHEMA``) and ``write_alerts(table)``
   for each batch of alert starts and ends (``ALERT_SCHEMA``), always from the
   pipeline thread, so calls never overlap. Each writes the whole batch or
   raises ``SinkError``; ``retryable`` says whether the same batch may succeed
   later (server down or overloaded, disk full) or never will (the server
   refuses the data). A batch may be written twice after a retry or a restart;
   the contract makes a rewritten point carry the same values, so sinks need
   not guard against it. A sink that keeps no alerts (the Parquet store) has no
   ``write_alerts`` and is an ``IntensitySink`` only; the InfluxDB sink writes
   them as ``energy_alert`` points, the MQTT alert sink publishes each line's
   active set. Likewise ``write_batches(table)`` (``BATCH_SCHEMA``, the closed
   batches of batch lines), which the InfluxDB sink has, as ``energy_batch``, and
   ``write_periods(table)`` (``PERIOD_SCHEMA``, shift, day and month rows), as
   ``energy_period``; the Parquet store keeps both.
3. ``close()`` once, after the last batch (and after ``open()`` only); it
   releases connections and files.

Sinks count nothing themselves: points written, errors and retries are counted
once, per sink name, by the fan-out. An output whose deliveries are not stored
points (the retained alert topic) sets ``counted = False``: the fan-out then
calls it without counting or retrying, so it must not raise ``SinkError``.

Health: building a sink (``wattline.ingest.sinks.build``) returns it with a
``HealthCheck``, a callable any thread may call at any time that returns a
``SinkHealth`` without writing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pyarrow as pa

from wattline.contract.errors import WattlineError

__all__ = ["WRITES", "HealthCheck", "IntensitySink", "Sink", "SinkError", "SinkHealth"]

WRITES = {"intensity": "write", "alerts": "write_alerts", "batches": "write_batches",
          "periods": "write_periods"}
"""The sink method that writes each kind of table (the spool's and queues' kinds)."""


class SinkError(WattlineError):
    """A results batch was not written; the message says why and what to do about it.

    ``retryable``: the same batch may succeed if tried again later (the pipeline
    backs off and retries, holding readings back meanwhile); otherwise the batch is
    dropped for this sink and counted. ``retry_after_s`` is the server's own wish
    (HTTP ``Retry-After``), when it gave one. ``rejected``, for a refusal of some rows
    only (InfluxDB 1.x writes the rest of a partial write), maps each refused row's
    index in the batch to the server's reason; ``None`` means every row.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None,
        rejected: Mapping[int, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.rejected = rejected

    def refused_rows(self, table: pa.Table) -> tuple[pa.Table, str]:
        """The rows of ``table`` this refusal covers, and why (one line per row when the
        server named rows, else the message)."""
        if self.rejected is None:
            return table, str(self)
        rows = sorted(self.rejected)
        return table.take(rows), "\n".join(self.rejected[i] for i in rows)


@runtime_checkable
class IntensitySink(Protocol):
    """Where results batches (``wattline.contract.schemas.INTENSITY_SCHEMA`` columns) go."""

    name: str
    """Short, fixed name for logs and the ``sink`` label of metrics (``influxdb``, ``parquet``)."""

    def open(self) -> None:
        """Get ready for the first batch; a destination that is down is not an error."""
        ...

    def write(self, table: pa.Table) -> None:
        """Write every row of one batch, or raise ``SinkError``."""
        ...

    def close(self) -> None:
        """Release connections and files; no ``write`` follows."""
        ...


@runtime_checkable
class Sink(IntensitySink, Protocol):
    """A sink that takes alert batches as well as results batches."""

    def write_alerts(self, table: pa.Table) -> None:
        """Write every alert start and end of one batch (``ALERT_SCHEMA``), or raise
        ``SinkError``; same contract as ``write``."""
        ...


@dataclass(frozen=True)
class SinkHealth:
    """What a sink's health check found.

    ``healthy``: the destination took (or answered) the latest attempt. ``backlog``:
    batches held for it and not yet delivered (the spool's, 0 for a sink without one).
    ``last_error``: the latest failure, while it has not been followed by a success.
    """

    healthy: bool
    backlog: int = 0
    last_error: str | None = None


HealthCheck = Callable[[], SinkHealth]
"""A sink's health check; see ``SinkHealth``."""
