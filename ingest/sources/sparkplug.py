"""Sparkplug B: edge nodes and devices mapped onto the contract's sites, lines and meters.

Payloads are decoded with wattline's own Sparkplug B schema
(``wattline.contract.sparkplug_b``, on the ``protobuf`` runtime, a dependency of the
package). The mapping:

    spBv1.0/{group}/NBIRTH|NDATA|NDEATH/{edge node}
    spBv1.0/{group}/DBIRTH|DDATA|DDEATH/{edge node}/{device}

- the group is the **site** and the edge node is the **line**; group, edge node and
  device ids follow the contract's name rule (``Sparkplug B Devices`` is one), else
  the message is refused as ``topic_name``;
- a metric named ``energy/<meter>`` or ``production/<meter>`` is that meter's
  reading (a device's metrics name meters ``<device>.<meter>``); other metrics
  (``Node Control/...``, ``bdSeq``, properties) are not readings and are skipped;
- numeric values only (the integer types, read signed or unsigned by the metric's
  datatype, Float and Double); a metric marked null, or whose ``Quality`` property
  is not good (192), is a reading of bad quality, dropped and counted like a JSON
  reading with a bad ``q``;
- a reading's time is the metric's timestamp, else the payload's.

A meter's carrier, unit and mode come from the config file or a retained ``meta``
message on the contract's topic ``{prefix}/{site}/{line}/{kind}/{meter}/meta``, as
for JSON gateways.

Session rules (per edge node, its devices included): a BIRTH records the metric
names and datatypes behind each alias and resets the sequence; every later message
must carry the next sequence number (mod 256). A gap, or DATA whose aliases no BIRTH
explained, makes the decoder ask for a rebirth (``Node Control/Rebirth`` on the
node's NCMD topic), at most once per node every ``REBIRTH_EVERY_S``. DATA on a gap is
still used; metrics whose alias is unknown cannot be, and are dropped as
``sparkplug_alias``. A DEATH forgets the node (or device), except an NDEATH whose
``bdSeq`` is not the one of the node's current NBIRTH: that is the will of an older
session, delivered late after the node came back, and is ignored (``stale_death``).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from wattline.contract.errors import ConfigError, PayloadError, TopicError
from wattline.contract.topics import valid_name

NAMESPACE = "spBv1.0"
SUBSCRIPTIONS = [
    f"{NAMESPACE}/+/{kind}/+" for kind in ("NBIRTH", "NDATA", "NDEATH")
] + [f"{NAMESPACE}/+/{kind}/+/+" for kind in ("DBIRTH", "DDATA", "DDEATH")]
"""What the collector subscribes to with --sparkplug."""

REBIRTH_EVERY_S = 10.0
EVENTS = ("birth", "death", "stale_death", "seq_gap", "rebirth_requested")
"""Session events counted per kind (``wattline_sparkplug_events_total{event}``)."""
KINDS = ("energy", "production")
_MESSAGE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"})
_NUMERIC_TYPES = frozenset(range(0, 11))  # Unknown, the integer types, Float, Double
BD_SEQ = "bdSeq"


class SparkplugReadings(NamedTuple):
    """One meter's readings out of a Sparkplug message (a tuple: made per meter and
    message, and a dataclass costs several times more to make)."""

    kind: str
    meter: str
    ts_ms: np.ndarray  # int64
    value: np.ndarray  # float64


@dataclass
class SparkplugResult:
    """What one message gave: readings per meter, readings dropped by reason."""

    site: str
    line: str
    readings: list[SparkplugReadings] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # readings, by reason
    events: list[str] = field(default_factory=list)  # of EVENTS
    rebirth: tuple[str, bytes] | None = None  # (topic, payload) to publish

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


_Reading = tuple[str, str, int] | None
"""What a metric name stands for: (kind, meter, datatype), or None if not a reading."""


@dataclass
class _Birth:
    by_alias: dict[int, _Reading] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)  # name -> datatype


@dataclass
class _Node:
    seq: int | None = None  # last sequence number seen
    births: dict[str | None, _Birth] = field(default_factory=dict)  # device (None: node)
    bd_seq: int | None = None  # of the current NBIRTH
    rebirth_asked_s: float = -math.inf


def is_sparkplug(topic: str) -> bool:
    return topic.startswith(NAMESPACE + "/")


def _schema() -> Any:
    """The Sparkplug B schema module; a one-line error when protobuf is missing."""
    try:
        return importlib.import_module("wattline.contract.sparkplug_b")
    except ImportError as exc:
        raise ConfigError(
            "sparkplug", f"Sparkplug B needs the protobuf package, which does not import "
                         f"({type(exc).__name__})",
            suggestion="pip install 'protobuf>=5.28', a wattline dependency that an "
                       "install with --no-deps leaves out") from None


class SparkplugDecoder:
    """Decodes Sparkplug B messages, keeping each edge node's births and sequence."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._spb = _schema()  # fails here, at start-up, when protobuf is missing
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._clock = clock

    def decode(self, topic: str, payload: bytes, *, max_bytes: int) -> SparkplugResult:
        """Readings of one message; ``PayloadError`` for one that is not Sparkplug B,
        ``TopicError`` (``topic_name``) for an id that is not a name."""
        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[0] != NAMESPACE:
            raise PayloadError("sparkplug_invalid", f"not a Sparkplug B topic: {topic[:120]!r}")
        _, group, kind, node_id = levels[:4]
        device = levels[4] if len(levels) == 5 else None
        if kind not in _MESSAGE_TYPES or (device is None) != (kind[0] == "N"):
            raise PayloadError("sparkplug_invalid", f"message type {kind[:16]!r} on {topic!r}")
        key = (group, node_id)
        known = self._nodes.get(key)  # ids of a node (and device) seen before are names
        if known is None or (device is not None and device not in known.births):
            for what, name in (("group", group), ("edge node", node_id), ("device", device)):
                if name is not None and not valid_name(name):
                    raise TopicError("topic_name", topic, f"{what} id {name[:80]!r}")
        if len(payload) > max_bytes:
            raise PayloadError("too_large", f"{len(payload)} bytes > {max_bytes}")
        try:
            message = self._spb.Payload.FromString(payload)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, or a RuntimeError
            raise PayloadError("sparkplug_invalid",
                               f"{kind} payload does not parse: {type(exc).__name__}: "
                               f"{str(exc)[:200]}") from None
        result = SparkplugResult(group, node_id)
        node = known if known is not None else self._nodes.setdefault(key, _Node())
        seq = message.seq if message.HasField("seq") else None
        default_ts = message.timestamp if message.HasField("timestamp") else None
        if kind == "NDEATH":
            bd_seq = _bd_seq(message)
            if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
                result.events.append("stale_death")
            else:
                result.events.append("death")
                self._nodes.pop(key, None)
            return result
        if kind == "DDEATH":
            result.events.append("death")
            self._check_seq(node, seq, result)
            node.births.pop(device, None)
            return result
        if kind in ("NBIRTH", "DBIRTH"):
            if seq is None:
                raise PayloadError("sparkplug_invalid", f"{kind} without a sequence number")
            birth = self._birth(message.metrics)
            result.events.append("birth")
            if device is None:
                node.births = {None: birth}
                node.bd_seq = _bd_seq(message)
            else:
                node.births[device] = birth
            self._check_seq(node, seq, result, birth=device is None)
            self._readings(message.metrics, default_ts, device, birth, result)
            return result
        birth = node.births.get(device)
        self._check_seq(node, seq, result)
        if birth is None:
            # No BIRTH: the metrics cannot be read (their names and datatypes are in the
            # BIRTH); count them and ask for a rebirth.
            result.drop("sparkplug_alias", len(message.metrics))
            self._ask_rebirth(node, group, node_id, result)
            return result
        if self._readings(message.metrics, default_ts, device, birth, result):
            self._ask_rebirth(node, group, node_id, result)
        return result

    def _birth(self, metrics: Any) -> _Birth:
        birth = _Birth()
        for m in metrics:
            if not m.HasField("name"):
                continue
            datatype = m.datatype if m.HasField("datatype") else 0
            birth.by_name[m.name] = datatype
            if m.HasField("alias"):
                birth.by_alias[m.alias] = _reading_of(m.name, datatype)
        return birth

    def _check_seq(self, node: _Node, seq: int | None, result: SparkplugResult, *,
                   birth: bool = False) -> None:
        if seq is None:
            return
        expected = None if (birth or node.seq is None) else (node.seq + 1) % 256
        node.seq = seq
        if expected is not None and seq != expected:
            result.events.append("seq_gap")
            self._ask_rebirth(node, result.site, result.line, result)

    def _ask_rebirth(self, node: _Node, group: str, node_id: str,
                     result: SparkplugResult) -> None:
        now = self._clock()
        if now - node.rebirth_asked_s < REBIRTH_EVERY_S:
            return
        node.rebirth_asked_s = now
        result.events.append("rebirth_requested")
        result.rebirth = (f"{NAMESPACE}/{group}/NCMD/{node_id}", rebirth_request())

    def _readings(self, metrics: Any, default_ts: int | None, device: str | None,
                  birth: _Birth, result: SparkplugResult) -> bool:
        """Append the metrics' readings to ``result``; True when an alias was unknown.

        Written for the common message: DATA by alias, a double each, one reading per
        meter. Each metric costs a few attribute reads; the numbers of the whole
        message become one array each, and every meter's readings a view of them."""
        spb = self._spb
        by_alias, by_name = birth.by_alias, birth.by_name
        numeric_fields = spb.NUMERIC_FIELDS
        keys: list[tuple[str, str]] = []
        stamps: list[int] = []
        values: list[float] = []
        unknown = 0
        for m in metrics:
            name = m.name
            if name:
                known = _reading_of(name, m.datatype if m.HasField("datatype")
                                    else by_name.get(name, 0))
            elif m.HasField("alias") and m.alias in by_alias:
                known = by_alias[m.alias]
            else:
                unknown += 1
                continue
            if known is None:
                continue
            kind, meter, datatype = known
            if m.HasField("datatype"):
                datatype = m.datatype
            which = m.WhichOneof("value")
            if m.is_null or which is None or (m.HasField("properties")
                                              and not _good_quality(m.properties, spb)):
                result.drop("quality")
                continue
            if which == "double_value" and datatype in (0, 10):
                value = m.double_value
            elif which in numeric_fields and datatype in _NUMERIC_TYPES:
                value = float(spb.metric_value(m, datatype, which))
            else:
                result.drop("value_type")
                continue
            ts = m.timestamp if m.HasField("timestamp") else default_ts
            if ts is None:
                result.drop("ts_invalid")
                continue
            if not math.isfinite(value):
                result.drop("value_not_finite")
                continue
            keys.append((kind, f"{device}.{meter}" if device is not None else meter))
            stamps.append(ts)
            values.append(value)
        result.drop("sparkplug_alias", unknown)
        if keys:
            result.readings.extend(_by_meter(keys, np.array(stamps, dtype=np.int64),
                                             np.array(values, dtype=np.float64)))
        return unknown > 0


def _by_meter(keys: list[tuple[str, str]], ts: np.ndarray,
              value: np.ndarray) -> list[SparkplugReadings]:
    """The readings of each meter, in the order of each meter's first metric."""
    if len(set(keys)) == len(keys):  # one reading per meter: views of one row each
        return [SparkplugReadings(kind, meter, ts[i:i + 1], value[i:i + 1])
                for i, (kind, meter) in enumerate(keys)]
    rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        rows.setdefault(key, []).append(i)
    return [SparkplugReadings(kind, meter, ts[at], value[at])
            for (kind, meter), at in rows.items()]


def _reading_of(name: str, datatype: int) -> _Reading:
    kind, sep, meter = name.partition("/")
    if not sep or kind not in KINDS:
        return None
    return kind, meter, datatype


def _good_quality(properties: Any, spb: Any) -> bool:
    """False when the metric's ``Quality`` property says bad (0) or stale (500)."""
    for key, value in zip(properties.keys, properties.values, strict=False):
        if key == "Quality":
            which = value.WhichOneof("value")
            if which in ("int_value", "long_value"):
                return spb.metric_value(value, spb.DataType.INT32, which) == spb.QUALITY_GOOD
            return False
    return True


def _bd_seq(message: Any) -> int | None:
    for m in message.metrics:
        if m.name == BD_SEQ:
            which = m.WhichOneof("value")
            if which in ("int_value", "long_value"):
                return int(getattr(m, which))
    return None


def rebirth_request(timestamp_ms: int | None = None) -> bytes:
    """The NCMD payload asking an edge node to send its births again."""
    spb = _schema()
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return spb.encode([spb.Metric(name="Node Control/Rebirth", timestamp=ts,
                                  datatype=spb.DataType.BOOLEAN, value=True)], timestamp=ts)
