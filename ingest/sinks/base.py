"""The one interface every sink implements, and the error it raises.

Lifecycle, driven by the pipeline (``wattline.ingest.pipeline``):

1. ``open()`` once, before the first batch. It may check that the destination
   is reachable and log what it finds, but a destination that is down must not
   make it fail: the pipeline retries writes, so the daemon can start first.
2. ``write(table)`` for each results batch, from the pipeline thread only. It
   writes the whole batch or raises ``SinkError``; ``retryable`` says whether
   the same batch may succeed later (server down, overloaded) or never will
   (the server refuses the data).
3. ``close()`` once, after the last batch; it releases connections and files.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa


class SinkError(Exception):
    """A batch was not written. ``retryable``: the same batch may succeed if tried later.

    ``retry_after_s`` is the server's own wish (HTTP ``Retry-After``), when it gave one.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@runtime_checkable
class IntensitySink(Protocol):
    """Takes results batches with ``INTENSITY_SCHEMA`` columns."""

    name: str
    """Short, fixed name for logs and the ``sink`` label of metrics (``influxdb``, ``parquet``)."""

    def open(self) -> None: ...

    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...
