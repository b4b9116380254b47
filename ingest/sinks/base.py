"""The one interface every sink implements, and the error it raises.

Lifecycle, driven by the pipeline (``wattline.ingest.pipeline``), which starts
sinks before the MQTT session so downstream is ready before readings flow:

1. ``open()`` once, before the first batch. It may check that the destination
   is there and log what it finds, but a destination that is merely down must
   not make it fail: the pipeline retries writes, so the daemon can start before
   its database. It raises ``SinkError`` only for what no retry can mend (a store
   folder that cannot be created).
2. ``write(table)`` for each results batch, always from the pipeline thread, so
   calls never overlap. It writes the whole batch or raises ``SinkError``;
   ``retryable`` says whether the same batch may succeed later (server down or
   overloaded, disk full) or never will (the server refuses the data). A batch
   may be written twice after a retry or a restart; the contract makes a
   rewritten point carry the same values, so sinks need not guard against it.
   A sink that also stores alerts has ``write_alerts(table)`` with the same
   contract, for ``wattline.contract.schemas.ALERT_SCHEMA`` batches (the InfluxDB
   sink writes them as ``energy_alert`` points; the Parquet store has none).
3. ``close()`` once, after the last batch (and after ``open()`` only); it
   releases connections and files.

Sinks count nothing themselves: points written, errors and retries are counted
once, per sink name, by the pipeline.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa

from wattline.contract.errors import WattlineError


class SinkError(WattlineError):
    """A results batch was not written; the message says why and what to do about it.

    ``retryable``: the same batch may succeed if tried again later (the pipeline
    backs off and retries, holding readings back meanwhile); otherwise the batch is
    dropped for this sink and counted. ``retry_after_s`` is the server's own wish
    (HTTP ``Retry-After``), when it gave one.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


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
