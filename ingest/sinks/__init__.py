"""Sinks: where intensity batches go (InfluxDB line protocol, the local Parquet store).

Every sink takes the same Arrow batch (``wattline.ingest.results.INTENSITY_SCHEMA``)
and follows the lifecycle of ``base.IntensitySink``.
"""
