"""wattline ingest: MQTT source, decoding, pipeline, sinks, metrics, config and CLI."""
