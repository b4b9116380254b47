"""Sinks: where intensity batches go (InfluxDB line protocol, the local Parquet store).

Every sink takes the same Arrow batch (``wattline.contract.schemas.INTENSITY_SCHEMA``)
and follows the lifecycle of ``base.IntensitySink``. The names below are imported on
first use, so importing ``base`` stays cheap and a daemon writing only the local
store never loads the InfluxDB client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattline.ingest.sinks.base import IntensitySink, SinkError
    from wattline.ingest.sinks.influx import InfluxSink
    from wattline.ingest.sinks.line_protocol import encode_alerts, encode_intensity
    from wattline.ingest.sinks.parquet_store import ParquetStore, latest, read_store

_HOMES = {
    "IntensitySink": "base",
    "SinkError": "base",
    "InfluxSink": "influx",
    "encode_alerts": "line_protocol",
    "encode_intensity": "line_protocol",
    "ParquetStore": "parquet_store",
    "latest": "parquet_store",
    "read_store": "parquet_store",
}

__all__ = [
    "InfluxSink",
    "IntensitySink",
    "ParquetStore",
    "SinkError",
    "encode_alerts",
    "encode_intensity",
    "latest",
    "read_store",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
