"""Wiring: one running collector made of sinks, pipeline, metrics endpoint and MQTT source.

Start order is downstream first (sinks, pipeline, metrics, then the MQTT
session), so nothing arrives before it can be written; stop order is the
reverse, so the pipeline drains what the session delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa

from wattline.contract.topics import subscriptions
from wattline.ingest.config import Settings, parse_mqtt_url
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline
from wattline.ingest.sinks.base import IntensitySink
from wattline.ingest.sources.mqtt import MqttSource

log = logging.getLogger("wattline.collector")


def build_sinks(settings: Settings, metrics: CollectorMetrics) -> list[IntensitySink]:
    """The sinks the settings ask for: InfluxDB (behind the spool when there is a spool
    folder) and/or the local Parquet store."""
    sinks: list[IntensitySink] = []
    if settings.influx_url:
        from wattline.ingest.sinks.influx import InfluxSink

        influx: IntensitySink = InfluxSink(
            settings.influx_url,
            settings.influx_org or "",
            settings.influx_bucket or "",
            settings.resolved_influx_token() or "",
        )
        spool_dir = settings.resolved_spool_dir
        if spool_dir:
            from wattline.ingest.durable.spool import Spool
            from wattline.ingest.sinks.spooled import SpooledSink

            influx = SpooledSink(influx, Spool(spool_dir, settings.spool_max_bytes), metrics,
                                 dead_letter_dir=settings.resolved_dead_letter_dir)
        sinks.append(influx)
    if settings.store:
        from wattline.ingest.sinks.parquet_store import ParquetStore

        sinks.append(ParquetStore(settings.store, retention_days=settings.store_retention_days))
    return sinks


class Collector:
    """A running collector; ``stop()`` drains and closes it."""

    def __init__(
        self,
        settings: Settings,
        sinks: list[IntensitySink] | None = None,
        metrics: CollectorMetrics | None = None,
        on_results: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or CollectorMetrics()
        self.sinks = build_sinks(settings, self.metrics) if sinks is None else sinks
        if not self.sinks:
            log.warning("no sink configured (give --influx-url or --store): results are only "
                        "visible as gauges on /metrics")
        self.pipeline = Pipeline(settings, self.sinks, self.metrics, on_results=on_results)
        # With a state directory, a QoS 1/2 message is acknowledged to the broker only once
        # it is in the write-ahead log, so a crash cannot lose what the broker let go of.
        self.durable_acks = bool(settings.state_dir) and settings.qos > 0
        topics = subscriptions(self.pipeline.topics)
        if settings.sparkplug:
            from wattline.ingest.sources.sparkplug import SUBSCRIPTIONS

            topics = topics + SUBSCRIPTIONS
        if settings.mqtt_share_group:
            topics = [f"$share/{settings.mqtt_share_group}/{t}" for t in topics]
        self.source = MqttSource(
            parse_mqtt_url(settings.mqtt_url),
            topics,
            self.pipeline.submit,
            client_id=settings.client_id,
            qos=settings.qos,
            protocol=settings.mqtt_protocol,
            persistent_session=settings.persistent_session,
            session_expiry_s=settings.session_expiry_ms // 1000,
            password=settings.resolved_mqtt_password(),
            ca_file=settings.mqtt_ca_file,
            cert_file=settings.mqtt_cert_file,
            key_file=settings.mqtt_key_file,
            metrics=self.metrics,
            manual_ack=self.durable_acks,
        )
        if self.durable_acks:
            self.pipeline.ack = self.source.ack
        self.pipeline.publish_alert_state = self._publish_retained
        self.pipeline.decoder.publish_command = self._publish_command
        # After a reconnect, say again what is active (the broker may have restarted empty).
        self.source.on_connect.append(self.pipeline.republish_alerts)
        self._server: object | None = None

    def _publish_command(self, topic: str, payload: bytes) -> None:
        self.source.publish(topic, payload, qos=0, retain=False)

    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self.source.publish(topic, payload, qos=1, retain=True)

    def start(self) -> None:
        from wattline.ingest.pipeline import warm_up_kernels

        log.info("kernels ready in %.1f s", warm_up_kernels())
        self.pipeline.start()
        if self.settings.metrics_port is not None:
            self._server, _ = self.metrics.serve(self.settings.metrics_port,
                                                 self.settings.metrics_host)
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host,
                     self.settings.metrics_port)
        self.source.start()

    def stop(self) -> None:
        self.source.stop()
        self.pipeline.stop()
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None
