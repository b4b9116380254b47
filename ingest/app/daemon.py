"""Wiring: one running collector made of sinks, pipeline, metrics endpoint and source (the
MQTT session, or the NATS JetStream partitions this daemon holds leases on).

Start order is downstream first (sinks, pipeline, metrics, then the MQTT
session or NATS source), so nothing arrives before it can be written; stop order is the
reverse, so the pipeline drains what the session delivered. The kernels are
loaded (or compiled) on a thread of their own meanwhile, and the pipeline takes
its first batch once they are ready.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import pyarrow as pa

from wattline.contract.topics import TopicTemplate
from wattline.ingest.config import Settings, parse_mqtt_url
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.pipeline import Pipeline
from wattline.ingest.sinks.base import HealthCheck, IntensitySink, SinkHealth
from wattline.ingest.sinks.build import build_sinks
from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink
from wattline.ingest.sources.mqtt import MqttSource, subscription_filters
from wattline.ingest.sources.nats import NatsSource
from wattline.ingest.warmup import warm_up_kernels

__all__ = ["Collector", "build_sinks"]

log = logging.getLogger("wattline.collector")


class Collector:
    """A running collector; ``stop()`` drains and closes it.

    ``sinks``: where results go; built from ``settings`` (with their health checks)
    when not given. The retained MQTT alert topic is added after them in any case.
    """

    def __init__(
        self,
        settings: Settings,
        sinks: list[IntensitySink] | None = None,
        metrics: CollectorMetrics | None = None,
        on_results: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or CollectorMetrics()
        self.health_checks: dict[str, HealthCheck] = {}
        """Each built sink's health check, by sink name (none for sinks passed in)."""
        if sinks is None:
            built = build_sinks(settings, self.metrics)
            self.sinks = [b.sink for b in built]
            self.health_checks = {b.sink.name: b.health for b in built}
        else:
            self.sinks = sinks
        if not self.sinks:
            log.warning("no sink configured (give --influx-url or --store): results are only "
                        "visible as gauges on /metrics")
        self.alert_topic = MqttAlertSink(
            self._publish_retained,
            TopicTemplate(settings.topic_template, prefix=settings.topic_prefix),
            self._retained_alerts, enabled=settings.alert_topic)
        self.pipeline = Pipeline(settings, [*self.sinks, self.alert_topic], self.metrics,
                                 on_results=on_results)
        self.source: MqttSource | NatsSource = (
            self._nats_source() if settings.nats.nats_url else self._mqtt_source())
        if self.durable_acks:
            self.pipeline.durability.ack = self.source.ack
        self.pipeline.decoder.publish_command = self._publish_command
        # After a reconnect, say again what is active (the broker may have restarted empty).
        self.source.on_connect.append(self.alert_topic.republish)
        self._server: object | None = None

    def _mqtt_source(self) -> MqttSource:
        settings = self.settings
        # With a state directory, a QoS 1/2 message is acknowledged to the broker only once
        # it is in the write-ahead log, so a crash cannot lose what the broker let go of.
        self.durable_acks = bool(settings.state_dir) and settings.qos > 0
        if not (self.durable_acks and settings.persistent_session):
            log.info("readings published while this daemon is stopped or restarting are "
                     "lost: that takes qos 1 or 2, a state_dir and persistent_session with a "
                     "client_id of its own (docs/operations.md)")
        topics = subscription_filters(self.pipeline.topics, settings.subscribed_lines,
                                      sparkplug=settings.sparkplug,
                                      share_group=settings.mqtt_share_group,
                                      mapped=[m.topic for m in settings.payloads])
        return MqttSource(
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

    def _nats_source(self) -> NatsSource:
        """The NATS JetStream source: with a state directory, a message is acknowledged
        to the stream only once it is in the write-ahead log."""
        settings = self.settings
        url = settings.nats.nats_url
        assert url is not None
        self.durable_acks = bool(settings.state_dir)
        if settings.sparkplug or settings.payloads:
            log.warning("the NATS source reads the plain reading and meta topics only: "
                        "Sparkplug B and [[payloads]] topics are not partitioned "
                        "(docs/scale-out.md)")
        if not self.durable_acks:
            log.info("readings acknowledged to the stream on receipt: a crash loses what the "
                     "pipeline held; give a state_dir (docs/scale-out.md)")
        return NatsSource(url, self.pipeline.submit, stream=settings.nats_stream,
                          partitions=settings.partitions,
                          member=f"{settings.client_id}-{os.getpid()}",
                          lease_ttl_s=settings.lease_ttl_ms / 1000, metrics=self.metrics,
                          manual_ack=self.durable_acks)

    def sink_health(self) -> dict[str, SinkHealth]:
        """What each built sink's health check says now, by sink name (any thread; the
        InfluxDB check without a spool makes one request)."""
        return {name: check() for name, check in self.health_checks.items()}

    def _retained_alerts(self, only: pa.Table | None) -> list[tuple[str, str, bytes]]:
        return self.pipeline.alerts.retained_payloads(only)

    def _publish_command(self, topic: str, payload: bytes) -> None:
        self.source.publish(topic, payload, qos=0, retain=False)

    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self.source.publish(topic, payload, qos=1, retain=True)

    def start(self) -> None:
        # The kernels load (or, with a cold cache, compile) on a thread of their own while
        # the session connects and subscribes and the first messages queue; the pipeline
        # takes its first batch once they are ready (``Pipeline.kernels_ready``).
        self.pipeline.kernels_ready.clear()
        threading.Thread(target=self._warm_up, name="wattline-warmup", daemon=True).start()
        self.pipeline.start()
        if self.settings.metrics_port is not None:
            self._server, _ = self.metrics.serve(self.settings.metrics_port,
                                                 self.settings.metrics_host)
            # With port 0 the system picks one: say the one it picked.
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host,
                     self.metrics_port)
        self.source.start()

    def _warm_up(self) -> None:
        batch_lines = any(own.batch for own in self.settings.alerts.lines.values())
        try:
            log.info("kernels ready in %.1f s", warm_up_kernels(batch_lines=batch_lines))
        except Exception as exc:  # noqa: BLE001 - the first batch then compiles what it needs
            log.error("warming up the kernels failed (%s: %s); the first batch loads them",
                      type(exc).__name__, exc)
        finally:
            self.pipeline.kernels_ready.set()

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics listens on (the one picked for --metrics-port 0), or None."""
        if self._server is None:
            return None
        return int(self._server.server_port)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.source.stop()
        self.pipeline.stop()
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None
