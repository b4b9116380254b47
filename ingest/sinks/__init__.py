"""Sinks: where results and alert batches go (InfluxDB line protocol, the local Parquet
store, the retained MQTT alert topic), and the fan-out that writes to all of them.

Every sink takes the same Arrow batches (``wattline.contract.schemas``) and follows
the lifecycle of ``base.Sink`` (``base.IntensitySink`` for one that keeps no alerts);
``build.build_sinks`` makes them from the settings, each with its health check. The
names below are imported on first use, so importing ``base`` stays cheap and a daemon
writing only the local store never loads the InfluxDB client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattline.ingest.sinks.base import HealthCheck, IntensitySink, Sink, SinkError, SinkHealth
    from wattline.ingest.sinks.build import BuiltSink, build_sinks
    from wattline.ingest.sinks.fanout import FanOut
    from wattline.ingest.sinks.influx import InfluxSink
    from wattline.ingest.sinks.influx_v1 import InfluxV1Sink
    from wattline.ingest.sinks.line_protocol import encode_alerts, encode_intensity
    from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink
    from wattline.ingest.sinks.parquet_store import ParquetStore, latest, read_store

_HOMES = {
    "HealthCheck": "base",
    "IntensitySink": "base",
    "Sink": "base",
    "SinkError": "base",
    "SinkHealth": "base",
    "BuiltSink": "build",
    "build_sinks": "build",
    "FanOut": "fanout",
    "MqttAlertSink": "mqtt_alerts",
    "InfluxSink": "influx",
    "InfluxV1Sink": "influx_v1",
    "encode_alerts": "line_protocol",
    "encode_intensity": "line_protocol",
    "ParquetStore": "parquet_store",
    "latest": "parquet_store",
    "read_store": "parquet_store",
}

__all__ = [
    "BuiltSink",
    "FanOut",
    "HealthCheck",
    "InfluxSink",
    "InfluxV1Sink",
    "IntensitySink",
    "MqttAlertSink",
    "ParquetStore",
    "Sink",
    "SinkError",
    "SinkHealth",
    "build_sinks",
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
