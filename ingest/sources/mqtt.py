"""The MQTT source: one paho-mqtt session that feeds the pipeline.

Lifecycle: ``MqttSource(...)``, then ``start()`` (connects in the background and
keeps reconnecting with capped exponential backoff and jitter, 1 to 30 s), then
``stop()``. Messages reach ``on_message(topic, payload)`` on paho's network
thread, one at a time; that callback may block (the pipeline's queue is
bounded), which holds back reading from the socket and so slows the broker down
rather than dropping. It is a ``wattline.ingest.sources.base.Source``.

``subscription_filters`` says what the collector subscribes to: the readings and meta
of every line, or of the lines ``subscribe_lines`` names, Sparkplug B nodes likewise,
the topics of the ``[[payloads]]`` mappings, all under ``$share/GROUP/`` with a share group.
"""

from __future__ import annotations

import logging
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wattline.contract.topics import META_LEVEL, TopicTemplate
from wattline.ingest.config import MqttUrl
from wattline.ingest.log_limit import Outage
from wattline.ingest.metrics import CollectorMetrics

log = logging.getLogger("wattline.mqtt")

RECONNECT_MIN_S = 1.0


def subscription_filters(
    template: TopicTemplate,
    lines: Sequence[tuple[str, str]] | None = None,
    *,
    sparkplug: bool = False,
    share_group: str | None = None,
    mapped: Sequence[str] = (),
) -> list[str]:
    """The MQTT filters of a collector: readings and meta of each (site, line) in
    ``lines`` (``+`` for any; None: every line), Sparkplug B node and device topics of
    the same (group = site, edge node = line) with ``sparkplug``, the ``[[payloads]]``
    mappings' topic filters (``mapped``, as written), each under
    ``$share/<share_group>/`` when given."""
    pairs = list(lines) if lines is not None else [("+", "+")]
    filters: list[str] = []
    for site, line in pairs:
        readings = template.topic(site, line, "+", "+")
        filters += [readings, f"{readings}/{META_LEVEL}"]
    if sparkplug:
        from wattline.ingest.sources.sparkplug import NAMESPACE

        for site, line in pairs:
            filters += [f"{NAMESPACE}/{site}/{kind}/{line}" for kind in
                        ("NBIRTH", "NDATA", "NDEATH")]
            filters += [f"{NAMESPACE}/{site}/{kind}/{line}/+" for kind in
                        ("DBIRTH", "DDATA", "DDEATH")]
    filters += [f for f in mapped if f not in filters]
    if share_group:
        filters = [f"$share/{share_group}/{f}" for f in filters]
    return filters


class _NotConnectedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Client is not connected" not in record.getMessage()


RECONNECT_MAX_S = 30.0


class MqttSource:
    """Subscribes to the reading and meta topics and passes messages on."""

    def __init__(
        self,
        url: MqttUrl,
        subscriptions: Sequence[str],
        on_message: Callable[..., None],
        *,
        client_id: str = "wattline",
        qos: int = 1,
        protocol: str = "3.1.1",
        persistent_session: bool = False,
        session_expiry_s: int = 3600,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        metrics: CollectorMetrics | None = None,
        client_factory: Callable[..., mqtt.Client] = mqtt.Client,
        manual_ack: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``manual_ack``: QoS 1/2 messages are acknowledged only when ``ack(token)`` is
        called with the token passed to ``on_message(topic, payload, token)`` (without it,
        ``on_message(topic, payload)`` and paho acknowledges on receipt)."""
        self._url = url
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._qos = qos
        self._metrics = metrics
        self._v5 = protocol == "5"
        self._persistent = persistent_session
        self._session_expiry_s = session_expiry_s
        self.connected = threading.Event()
        self.on_connect: list[Callable[[], None]] = []
        self._manual_ack = manual_ack
        self._epoch = 0  # counts connections; an ack token of an older one is void
        """Called on paho's thread after every (re)connect and subscribe."""
        self._stopping = False
        if self._v5:
            self._client = client_factory(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                manual_ack=manual_ack)
        else:
            self._client = client_factory(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                protocol=mqtt.MQTTv311, clean_session=not persistent_session,
                manual_ack=manual_ack)
        # paho's own log carries the one account of errors on an open socket (a TLS alert
        # such as "certificate required"); its repeated "Client is not connected" while
        # reconnecting says nothing new and is filtered out.
        paho_log = logging.getLogger("wattline.mqtt.paho")
        if not any(isinstance(f, _NotConnectedFilter) for f in paho_log.filters):
            paho_log.addFilter(_NotConnectedFilter())
        self._client.enable_logger(paho_log)
        self._last_connect_error: str | None = None
        if url.username:
            self._client.username_pw_set(url.username, password or url.password)
        if url.tls or ca_file or cert_file:
            self._client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file,
                                 cert_reqs=ssl.CERT_REQUIRED)
        self._failed_attempts = 0
        self._outage = Outage(clock=clock)
        self._jitter = random.Random()
        self._set_next_reconnect_delay()
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_connect_fail = self._connect_failed
        self._client.on_message = self._message

    def _set_next_reconnect_delay(self) -> None:
        """Capped exponential backoff with jitter: 1, 2, 4 ... 30 s, each drawn in its upper
        half, so that gateways and collectors that lost the same broker do not all come
        back in the same second. (paho doubles its own delay without jitter; giving it a
        fixed delay per attempt through its public setter puts ours in its place.)"""
        ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(self._failed_attempts, 16))
        delay = ceiling * self._jitter.uniform(0.5, 1.0)
        self.next_reconnect_delay_s = delay
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def _connect_failed(self, client, userdata) -> None:  # type: ignore[no-untyped-def]
        # paho calls this from its ``except OSError``: the error (refused, unreachable, a
        # certificate that does not verify) is the one being handled.
        error = str(sys.exc_info()[1] or "connection failed")
        self._failed_attempts += 1
        self._set_next_reconnect_delay()
        due = self._outage.failed()
        if error != self._last_connect_error or due == "start":  # a new kind of failure
            self._last_connect_error = error
            log.warning("cannot connect to %s:%d: %s; retrying with backoff (next in %.0f s)",
                        self._url.host, self._url.port, error, self.next_reconnect_delay_s)
        elif due == "still":  # once a minute while it lasts
            log.warning("still cannot connect to %s:%d after %.0f s (%d attempts): %s; "
                        "retrying with backoff (next in %.0f s)", self._url.host,
                        self._url.port, self._outage.lasted_s, self._outage.failures, error,
                        self.next_reconnect_delay_s)

    def start(self) -> None:
        log.info("connecting to %s:%d (MQTT %s, %s session)", self._url.host, self._url.port,
                 "5" if self._v5 else "3.1.1", "persistent" if self._persistent else "clean")
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)
            if self._persistent:
                properties.SessionExpiryInterval = self._session_expiry_s
            self._client.connect_async(self._url.host, self._url.port, keepalive=30,
                                       clean_start=not self._persistent, properties=properties)
        else:
            self._client.connect_async(self._url.host, self._url.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        if self._metrics:
            self._metrics.mqtt_connected.set(0)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish on this session (any thread). While disconnected, a QoS 1 message waits
        in paho's queue and goes out after the reconnect."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("cannot publish to %s: %s", topic, mqtt.error_string(info.rc))

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            if self._outage.failed() is not None:  # when it starts, then once a minute
                log.error("broker %s:%d refused the connection: %s (%d attempts in %.0f s)",
                          self._url.host, self._url.port, reason_code, self._outage.failures,
                          self._outage.lasted_s)
            return
        self._epoch += 1
        self._failed_attempts = 0
        self._last_connect_error = None
        ended = self._outage.recovered()
        if ended is not None:
            log.info("broker %s:%d is back after %.0f s without it (%d failed attempts)",
                     self._url.host, self._url.port, ended[0], ended[1])
        self._set_next_reconnect_delay()
        client.subscribe([(t, self._qos) for t in self._subscriptions])
        resumed = bool(getattr(flags, "session_present", False))
        log.info("connected to %s:%d (%s); subscribed to %s at QoS %d", self._url.host,
                 self._url.port, "session resumed" if resumed else "new session",
                 ", ".join(self._subscriptions), self._qos)
        self.connected.set()
        if self._metrics:
            self._metrics.mqtt_connected.set(1)
            self._metrics.mqtt_connects.inc()
        for callback in self.on_connect:
            callback()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if self._stopping:
            log.info("disconnected from %s:%d", self._url.host, self._url.port)
        elif self.connected.is_set():
            log.warning("disconnected from %s:%d (%s); reconnecting with backoff",
                        self._url.host, self._url.port, reason_code)
        if not self._stopping and self._outage.since is None:
            self._outage.failed()  # the outage starts here; the reconnects count on
        self.connected.clear()
        self._failed_attempts += 1
        self._set_next_reconnect_delay()
        if self._metrics:
            self._metrics.mqtt_connected.set(0)

    def _message(self, client, userdata, message: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        if not self._manual_ack:
            self._on_message(message.topic, message.payload)
            return
        token = (self._epoch, message.mid, message.qos) if message.qos else None
        self._on_message(message.topic, message.payload, token)

    def ack(self, token: Any) -> None:
        """Acknowledge a message received with ``manual_ack`` (any thread).

        A token from before the latest reconnect is ignored: its message id may have
        been reused, and the broker sends an unacknowledged message again after a
        reconnect anyway (the kernels then drop the repeat as a duplicate or late).
        """
        if token is None:
            return
        epoch, mid, qos = token
        if epoch == self._epoch:
            self._client.ack(mid, qos)
