"""Simulated gateways on MQTT: plant models -> gateways -> topics, paced by a plant clock.

``generate`` yields the messages the gateways would publish, as
``(topic, payload, retain)``, without a broker or a clock: the retained meta
message of every meter first, then readings in the order they fall due. The
same arguments and seed give the same bytes. ``simulate`` publishes the same
stream to a broker (paho-mqtt, QoS 1), releasing each message when a plant
clock running at ``speed`` plant seconds per wall second reaches it, and
returns a ``Summary``. ``published_series`` gives what was published per meter,
the input of ``truth.expected_intensity``.

Lifecycle of ``simulate``: it connects, publishes until ``duration_s`` of wall
time has passed or ``stop`` is set, waits for the broker to acknowledge what
it sent, disconnects and returns. Run it in its own thread to stop it from
another (the demo does).

Batching: every gateway polls its line's meters each ``rate_s`` of plant
time. When many plant seconds pass per wall second, several polls go in one
message (the contract's batch forms), about one message per meter per half
wall second. A message spans at most ``max_batch_span_s`` (20 s) of plant
time: the collector judges all of a message's readings against its line's
watermark (newest reading minus 30 s by default), so a longer span would make
its oldest readings late.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from wattline.contract.topics import TopicTemplate
from wattline.simulators.events import Event
from wattline.simulators.gateway import Faults, LineGateway, OutgoingMessage, meta_payload
from wattline.simulators.plant import line_model, line_totals
from wattline.simulators.scenario import Scenario, load_scenario
from wattline.simulators.sparkplug_gateway import SparkplugEdgeNode
from wattline.simulators.truth import MeterSeries

__all__ = [
    "DEFAULT_LINES",
    "Summary",
    "connected_client",
    "generate",
    "published_series",
    "readings_per_message",
    "schedule",
    "simulate",
]

log = logging.getLogger("wattline.simulators")

DEFAULT_LINES = ("eaf-1", "potline-1", "kiln-1")
MESSAGE_INTERVAL_S = 0.5  # wall seconds a message's readings should cover at most
MAX_BATCH_SPAN_S = 20.0
_MAX_UNACKED = 1000  # QoS 1 messages handed to paho and not yet acknowledged
ACK_TIMEOUT_S = 30.0  # how long to wait for the broker to acknowledge what was sent
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Summary:
    """What a ``simulate`` run published."""

    messages: int  # reading messages (duplicates included)
    meta_messages: int  # retained meter descriptions
    readings: int  # readings in the reading messages
    first_reading_ms: int | None  # plant time of the oldest reading published
    last_reading_ms: int | None  # and of the newest
    wall_s: float
    speed: float  # the plant clock asked for, plant seconds per wall second
    stopped: bool = False  # ended by ``stop`` rather than by ``duration_s``

    @property
    def plant_span_s(self) -> float:
        if self.first_reading_ms is None or self.last_reading_ms is None:
            return 0.0
        return (self.last_reading_ms - self.first_reading_ms) / 1000.0

    @property
    def achieved_speed(self) -> float:
        """Plant seconds covered per wall second."""
        return self.plant_span_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return (self.messages + self.meta_messages) / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        if self.first_reading_ms is None or self.last_reading_ms is None:
            span = "no readings"
        else:
            span = (
                f"plant time {_utc(self.first_reading_ms)} .. {_utc(self.last_reading_ms)} UTC "
                f"({_duration(self.plant_span_s)})"
            )
        return (
            f"published {self.messages:,} messages with {self.readings:,} readings and "
            f"{self.meta_messages} retained meta messages in {self.wall_s:.1f} s"
            f"{' (stopped)' if self.stopped else ''}; {span}; "
            f"x{self.achieved_speed:.1f} plant seconds per second (asked x{self.speed:g}), "
            f"{self.messages_per_s:,.0f} messages/s"
        )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def readings_per_message(
    speed: float, rate_s: float, *, max_batch_span_s: float = MAX_BATCH_SPAN_S
) -> int:
    """Polls per message at a plant clock of ``speed``: about one message per half second."""
    wanted = math.floor(speed * MESSAGE_INTERVAL_S / rate_s)
    cap = 1 + math.floor(max_batch_span_s / rate_s)
    return max(1, min(wanted, cap))


def first_poll_ms(start_ms: int, rate_s: float) -> int:
    """Gateways poll on the plant clock's multiples of ``rate_s``: the first at or before start."""
    rate_ms = round(rate_s * 1000)
    return start_ms - start_ms % rate_ms


def _check(lines: Sequence[str], site: str, rate_s: float) -> None:
    if not lines:
        raise ValueError("no lines to simulate")
    if len(set(lines)) != len(lines):
        raise ValueError(f"a line is named twice in {list(lines)}")
    for line in lines:
        line_model(line)
    if _NAME.fullmatch(site) is None:
        raise ValueError(f"site {site!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    if not round(rate_s * 1000) >= 1:
        raise ValueError(f"rate_s must be at least 0.001, got {rate_s}")


def schedule(
    lines: Sequence[str] = DEFAULT_LINES,
    *,
    site: str = "demo",
    start_ms: int,
    plant_s: float | None,
    rate_s: float = 10.0,
    seed: int = 0,
    topic_prefix: str = "factory",
    readings_per_message: int = 1,
    faults: Faults | None = None,
    scenarios: Mapping[str, Scenario] | None = None,
    events: Sequence[Event] = (),
    payload_format: str = "json",
) -> Iterator[OutgoingMessage]:
    """Every message the gateways send, meta first, readings ordered by due time.

    Args:
        lines: line names ``<model>-<n>``.
        site: the site level of the topics.
        start_ms: plant time (epoch ms) the run starts at; the first poll is at
            or just before it, on a multiple of ``rate_s``.
        plant_s: plant seconds to cover; ``None``: without end.
        rate_s: plant seconds between two polls of a line's meters.
        seed: the random seed of plants, registers and faults.
        topic_prefix: the topics' first level(s).
        readings_per_message: polls batched per message.
        faults: gateway faults, none by default.
        scenarios: scenario per model name; by default the packaged ones.
        events: energy spikes and idle periods injected into lines
            (``wattline.simulators.events``).
        payload_format: ``json`` (the contract's JSON forms) or ``sparkplug`` (each line
            a Sparkplug B edge node of group ``site``; see ``sparkplug_gateway``).
    """
    _check(lines, site, rate_s)
    if payload_format not in PAYLOAD_FORMATS:
        raise ValueError(f"payload_format must be one of {', '.join(PAYLOAD_FORMATS)}, "
                         f"got {payload_format!r}")
    if payload_format == "sparkplug" and faults is not None and faults.any:
        raise ValueError("gateway faults are simulated for JSON payloads only")
    unknown = sorted({e.line for e in events} - set(lines))
    if unknown:
        raise ValueError(f"events name line(s) not simulated: {', '.join(unknown)}")
    template = TopicTemplate(prefix=topic_prefix)
    rate_ms = round(rate_s * 1000)
    first_ms = first_poll_ms(start_ms, rate_s)
    end_ms = None if plant_s is None else start_ms + round(plant_s * 1000)
    streams: list[Iterator[OutgoingMessage]] = []
    metas: list[OutgoingMessage] = []
    for line in lines:
        model = line_model(line)
        scenario = (scenarios or {}).get(model.name) or load_scenario(model.name)
        specs = scenario.gateway_specs()
        meters = scenario.meters
        topics = [template.topic(site, line, m.kind, m.meter) for m in meters]
        for meter, spec in zip(meters, specs, strict=True):
            topic = template.topic(site, line, meter.kind, meter.meter, meta=True)
            metas.append(OutgoingMessage(first_ms, topic, meta_payload(meter, spec), retain=True))
        gateway: LineGateway | SparkplugEdgeNode
        if payload_format == "sparkplug":
            gateway = SparkplugEdgeNode(
                site, line, meters, specs, topics,
                readings_per_message=readings_per_message,
                seed_key=f"{seed}/{site}/{line}/gateway",
            )
        else:
            gateway = LineGateway(
                topics, specs, readings_per_message=readings_per_message,
                seed_key=f"{seed}/{site}/{line}/gateway", faults=faults,
            )
        poll_ms = _polls(first_ms, rate_ms, end_ms)
        times_s = ((ts - first_ms) / 1000.0 for ts in _polls(first_ms, rate_ms, end_ms))
        totals = line_totals(line, scenario.params, times_s, seed=seed, events=events)
        streams.append(gateway.messages(zip(poll_ms, totals, strict=True)))
    yield from metas
    yield from heapq.merge(*streams, key=lambda m: m.due_ms)


PAYLOAD_FORMATS = ("json", "sparkplug")


def _polls(first_ms: int, rate_ms: int, end_ms: int | None) -> Iterator[int]:
    ts = first_ms
    while end_ms is None or ts <= end_ms:
        yield ts
        ts += rate_ms


def generate(
    lines: Sequence[str] = DEFAULT_LINES,
    *,
    site: str = "demo",
    start_ms: int,
    plant_s: float | None,
    rate_s: float = 10.0,
    seed: int = 0,
    topic_prefix: str = "factory",
    readings_per_message: int = 1,
    faults: Faults | None = None,
    scenarios: Mapping[str, Scenario] | None = None,
    events: Sequence[Event] = (),
    payload_format: str = "json",
) -> Iterator[tuple[str, bytes, bool]]:
    """The gateways' messages as ``(topic, payload, retain)``; arguments as for ``schedule``."""
    for msg in schedule(
        lines, site=site, start_ms=start_ms, plant_s=plant_s, rate_s=rate_s, seed=seed,
        topic_prefix=topic_prefix, readings_per_message=readings_per_message, faults=faults,
        scenarios=scenarios, events=events, payload_format=payload_format,
    ):
        yield msg.topic, msg.payload, msg.retain


def published_series(
    lines: Sequence[str] = DEFAULT_LINES,
    *,
    site: str = "demo",
    start_ms: int,
    plant_s: float,
    rate_s: float = 10.0,
    seed: int = 0,
    topic_prefix: str = "factory",
    readings_per_message: int = 1,
    faults: Faults | None = None,
    scenarios: Mapping[str, Scenario] | None = None,
    events: Sequence[Event] = (),
    payload_format: str = "json",
) -> list[MeterSeries]:
    """What each meter published over ``plant_s``, for ``truth.expected_intensity``."""
    published: dict[str, list[tuple[int, float]]] = {}
    for msg in schedule(
        lines, site=site, start_ms=start_ms, plant_s=plant_s, rate_s=rate_s, seed=seed,
        topic_prefix=topic_prefix, readings_per_message=readings_per_message, faults=faults,
        scenarios=scenarios, events=events, payload_format=payload_format,
    ):
        if msg.retain:
            continue
        for topic, readings in msg.by_topic or ((msg.topic, msg.readings),):
            published.setdefault(topic, []).extend(readings)
    template = TopicTemplate(prefix=topic_prefix)
    series: list[MeterSeries] = []
    for line in lines:
        model = line_model(line)
        scenario = (scenarios or {}).get(model.name) or load_scenario(model.name)
        for meter, spec in zip(scenario.meters, scenario.gateway_specs(), strict=True):
            topic = template.topic(site, line, meter.kind, meter.meter)
            series.append(
                MeterSeries(
                    site, line, meter.kind, meter.meter, meter.carrier, meter.unit,
                    spec.mode, spec.rollover, tuple(published.get(topic, ())),
                    meter.direction,
                )
            )
    return series


def _client(mqtt_url: str) -> tuple[mqtt.Client, str, int]:
    parts = urlsplit(mqtt_url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {mqtt_url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"wattline-sim-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    if tls:
        client.tls_set()
    return client, parts.hostname, parts.port or (8883 if tls else 1883)


def simulate(
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    lines: Sequence[str] = DEFAULT_LINES,
    *,
    site: str = "demo",
    rate_s: float = 10.0,
    duration_s: float | None = 60.0,
    speed: float = 1.0,
    seed: int = 0,
    topic_prefix: str = "factory",
    start_ms: int | None = None,
    stop: threading.Event | None = None,
    faults: Faults | None = None,
    max_batch_span_s: float = MAX_BATCH_SPAN_S,
    connect_timeout_s: float = 10.0,
    events: Sequence[Event] = (),
    payload_format: str = "json",
    scenarios: Mapping[str, Scenario] | None = None,
) -> Summary:
    """Publish simulated gateways to a broker; returns what was published.

    Args:
        mqtt_url: ``mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS).
        lines: line names ``<model>-<n>``, model ``eaf``, ``potline`` or ``kiln``.
        site: the site level of the topics.
        rate_s: plant seconds between two polls of a line's meters.
        duration_s: wall seconds to publish for; ``None``: until ``stop`` is set.
        speed: plant seconds per wall second.
        seed: the same seed publishes the same bytes (for the same ``start_ms``).
        topic_prefix: the topics' first level(s).
        start_ms: plant time the run starts at, epoch ms; by default
            ``duration_s * speed`` seconds before now, so the stream ends near now.
        stop: set it to end the run early.
        faults: gateway faults, none by default.
        max_batch_span_s: the plant time one message may span.
        connect_timeout_s: how long to wait for the broker's CONNACK.
        events: energy spikes and idle periods injected into lines
            (``wattline.simulators.events``).
        payload_format: ``json`` or ``sparkplug``, as for ``schedule``.
        scenarios: scenario per model name; by default the packaged ones.

    Raises:
        ConnectionError: the broker could not be reached or refused the connection.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be positive or None, got {duration_s}")
    stop = stop or threading.Event()
    plant_s = None if duration_s is None else duration_s * speed
    if start_ms is None:
        start_ms = int(time.time() * 1000) - round((plant_s or 0.0) * 1000)
    per_message = readings_per_message(speed, rate_s, max_batch_span_s=max_batch_span_s)
    messages = schedule(
        lines, site=site, start_ms=start_ms, plant_s=plant_s, rate_s=rate_s, seed=seed,
        topic_prefix=topic_prefix, readings_per_message=per_message, faults=faults,
        events=events, payload_format=payload_format, scenarios=scenarios,
    )
    with connected_client(mqtt_url, connect_timeout_s) as (client, host, port):
        log.info(
            "publishing %s of site %s to %s:%d, plant clock x%g, %d poll(s) per message",
            ", ".join(lines), site, host, port, speed, per_message,
        )
        return _publish(client, messages, stop, speed, first_poll_ms(start_ms, rate_s), plant_s)


@contextmanager
def connected_client(
    mqtt_url: str, connect_timeout_s: float = 10.0
) -> Iterator[tuple[mqtt.Client, str, int]]:
    """A paho client connected to ``mqtt_url`` with its network loop running, as
    ``(client, host, port)``; it disconnects when the block ends.

    Raises:
        ConnectionError: the broker could not be reached or refused the connection.
    """
    client, host, port = _client(mqtt_url)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ConnectionError(f"cannot reach the broker at {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(connect_timeout_s) or refused:
            why = refused[0] if refused else f"no CONNACK within {connect_timeout_s:g} s"
            raise ConnectionError(f"broker {host}:{port} did not accept us: {why}")
        yield client, host, port
    finally:
        client.disconnect()
        client.loop_stop()


def _publish(
    client: mqtt.Client,
    messages: Iterator[OutgoingMessage],
    stop: threading.Event,
    speed: float,
    first_ms: int,
    plant_s: float | None,
) -> Summary:
    """Release each message when the plant clock reaches it; wait for the acknowledgements."""
    unacked: deque[mqtt.MQTTMessageInfo] = deque()
    n_messages = n_meta = n_readings = 0
    oldest: int | None = None
    newest: int | None = None
    started = time.monotonic()
    stopped = False
    for msg in messages:
        wait_s = (msg.due_ms - first_ms) / 1000.0 / speed - (time.monotonic() - started)
        if (wait_s > 0 and stop.wait(wait_s)) or stop.is_set():
            stopped = True
            break
        unacked.append(client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain))
        if msg.retain:
            n_meta += 1
        else:
            n_messages += 1
            n_readings += len(msg.readings)
            first_ts = min(ts for ts, _ in msg.readings)
            last_ts = max(ts for ts, _ in msg.readings)
            oldest = first_ts if oldest is None else min(oldest, first_ts)
            newest = last_ts if newest is None else max(newest, last_ts)
        if len(unacked) > _MAX_UNACKED:
            _wait_acked(unacked, _MAX_UNACKED // 2, time.monotonic() + ACK_TIMEOUT_S)
    _wait_acked(unacked, 0, time.monotonic() + ACK_TIMEOUT_S)
    return Summary(
        n_messages, n_meta, n_readings, oldest, newest, time.monotonic() - started, speed,
        stopped=stopped and plant_s is not None,
    )


def _wait_acked(
    unacked: deque[mqtt.MQTTMessageInfo], keep: int, deadline: float
) -> None:
    """Wait until at most ``keep`` QoS 1 messages await their PUBACK, or the deadline passes.

    paho keeps unacknowledged messages and resends them after a reconnect, so a
    broker that comes back within the deadline still gets them.
    """
    while len(unacked) > keep:
        info = unacked[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("%d message(s) not acknowledged by the broker in time", len(unacked))
            return
        try:
            info.wait_for_publish(min(remaining, 1.0))
        except (RuntimeError, ValueError):  # never queued: nothing to wait for
            unacked.popleft()
            continue
        if info.is_published():
            unacked.popleft()
