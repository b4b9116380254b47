"""``MqttAlertSink``: each line's active alerts, published retained on the MQTT session.

For every batch of alert starts and ends, the lines it touches get their whole
current set of active alerts published, retained, at QoS 1, to
``{prefix}/{site}/{line}/alerts`` (the payload is described in
``wattline.ingest.alerting``), so a client that subscribes later sees what is active
now. ``republish()`` publishes every line with alerts so far; the collector calls it
after each (re)connect, since the broker may have restarted empty.

The set of active alerts is not in the batch: it is the pipeline's (``retained``
gives the payloads of the lines in a batch, or of all lines for ``None``). A
publish never raises: while the session is down, paho queues it and sends it after
the reconnect. So this sink is ``counted = False`` and is not retried; it keeps no
results (``write`` does nothing). ``enabled`` (the reloadable ``alert_topic``
setting) turns the publishing off and on.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from wattline.contract.topics import TopicTemplate
from wattline.ingest.sinks.base import SinkHealth

__all__ = ["MqttAlertSink"]

Publish = Callable[[str, bytes], None]
"""Publishes one retained payload (topic, payload)."""
Retained = Callable[[pa.Table | None], list[tuple[str, str, bytes]]]
"""(site, line, payload) of the lines in an alert batch, or of every line for ``None``."""


class MqttAlertSink:
    """The retained alert topic as a sink; see the module doc."""

    name = "mqtt_alerts"
    counted = False

    def __init__(self, publish: Publish, topics: TopicTemplate, retained: Retained, *,
                 enabled: bool = True) -> None:
        self.publish = publish
        self.topics = topics
        self.retained = retained
        self.enabled = enabled

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        """Results are not published here."""

    def write_alerts(self, table: pa.Table) -> None:
        """Publish the active set of every line ``table`` touches."""
        self._publish(table)

    def republish(self) -> None:
        """Publish the active set of every line with alerts so far (after a reconnect)."""
        self._publish(None)

    def close(self) -> None:
        pass

    def health(self) -> SinkHealth:
        """Always healthy: publishes wait in the session's queue while it is down."""
        return SinkHealth(healthy=True)

    def _publish(self, only: pa.Table | None) -> None:
        if not self.enabled:
            return
        for site, line, payload in self.retained(only):
            self.publish(self.topics.alerts_topic(site, line), payload)
