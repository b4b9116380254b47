"""Sparkplug B: edge nodes and devices mapped onto the contract's sites, lines and meters.

Payloads are decoded with pysparkplug (a maintained Sparkplug B implementation; only
its payload and topic classes are used, not its MQTT client). The mapping:

    spBv1.0/{group}/NBIRTH|NDATA|NDEATH/{edge node}
    spBv1.0/{group}/DBIRTH|DDATA|DDEATH/{edge node}/{device}

- the group is the **site** and the edge node is the **line**;
- a metric named ``energy/<meter>`` or ``production/<meter>`` is that meter's
  reading (a device's metrics name meters ``<device>.<meter>``); other metrics
  (``Node Control/...``, ``bdSeq``, properties) are not readings and are skipped;
- numeric values only; a metric marked null is a reading of bad quality, dropped
  and counted like a JSON reading with a bad ``q``;
- a reading's time is the metric's timestamp, else the payload's.

A meter's carrier, unit and mode come from the config file or a retained ``meta``
message on the contract's topic ``{prefix}/{site}/{line}/{kind}/{meter}/meta``, as
for JSON gateways.

Session rules (per edge node, its devices included): a BIRTH records the metric
names behind each alias and resets the sequence; every later message must carry the
next sequence number (mod 256). A gap, or DATA whose aliases no BIRTH explained,
makes the decoder ask for a rebirth (``Node Control/Rebirth`` on the node's NCMD
topic), at most once per node every ``REBIRTH_EVERY_S``. DATA on a gap is still
used; metrics whose alias is unknown cannot be, and are dropped as
``sparkplug_alias``. A DEATH forgets the node (or device).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wattline.contract.errors import PayloadError

NAMESPACE = "spBv1.0"
SUBSCRIPTIONS = [
    f"{NAMESPACE}/+/{kind}/+" for kind in ("NBIRTH", "NDATA", "NDEATH")
] + [f"{NAMESPACE}/+/{kind}/+/+" for kind in ("DBIRTH", "DDATA", "DDEATH")]
"""What the collector subscribes to with --sparkplug."""

REBIRTH_EVERY_S = 10.0
EVENTS = ("birth", "death", "seq_gap", "rebirth_requested")
"""Session events counted per kind (``wattline_sparkplug_events_total{event}``)."""
KINDS = ("energy", "production")


@dataclass(frozen=True)
class SparkplugReadings:
    """One meter's readings out of a Sparkplug message."""

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


@dataclass
class _Node:
    seq: int | None = None  # last sequence number seen
    births: dict[str | None, object] = field(default_factory=dict)  # device (None: node)
    rebirth_asked_s: float = -math.inf


def is_sparkplug(topic: str) -> bool:
    return topic.startswith(NAMESPACE + "/")


class SparkplugDecoder:
    """Decodes Sparkplug B messages, keeping each edge node's births and sequence."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        import pysparkplug  # noqa: F401 - fail here, at start-up, when it is missing

        self._nodes: dict[tuple[str, str], _Node] = {}
        self._clock = clock

    def decode(self, topic: str, payload: bytes, *, max_bytes: int) -> SparkplugResult:
        """Readings of one message; ``PayloadError`` for one that is not Sparkplug B."""
        import pysparkplug as spb

        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[0] != NAMESPACE:
            raise PayloadError("sparkplug_invalid", f"not a Sparkplug B topic: {topic[:120]!r}")
        _, group, kind, node_id = levels[:4]
        device = levels[4] if len(levels) == 5 else None
        result = SparkplugResult(group, node_id)
        if len(payload) > max_bytes:
            raise PayloadError("too_large", f"{len(payload)} bytes > {max_bytes}")
        node = self._nodes.setdefault((group, node_id), _Node())
        try:
            if kind in ("NDEATH", "DDEATH"):
                result.events.append("death")
                if device is None:
                    self._nodes.pop((group, node_id), None)
                else:
                    node.births.pop(device, None)
                return result
            if kind in ("NBIRTH", "DBIRTH"):
                birth = (spb.NBirth if kind == "NBIRTH" else spb.DBirth).decode(payload)
                result.events.append("birth")
                if device is None:
                    node.births = {None: birth}
                else:
                    node.births[device] = birth
                self._check_seq(node, birth.seq, result, birth=kind == "NBIRTH")
                self._readings(birth.metrics, birth.timestamp, device, result)
                return result
            if kind not in ("NDATA", "DDATA"):
                raise PayloadError("sparkplug_invalid", f"message type {kind[:16]!r}")
            birth = node.births.get(device)
            data_type = spb.NData if kind == "NDATA" else spb.DData
            try:
                if birth is None:
                    raise KeyError("no birth")
                data = data_type.decode(payload, birth=birth)
            except KeyError:
                # No BIRTH, or an alias it did not name: the metrics cannot be read (their
                # names and datatypes are in the BIRTH); count them and ask for a rebirth.
                raw = _raw_payload(payload)
                self._check_seq(node, raw.seq if raw.HasField("seq") else None, result)
                result.drop("sparkplug_alias", len(raw.metrics))
                self._ask_rebirth(node, group, node_id, result)
                return result
            self._check_seq(node, getattr(data, "seq", None), result)
            self._readings(data.metrics, data.timestamp, device, result)
            return result
        except PayloadError:
            raise
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types on bad bytes
            raise PayloadError("sparkplug_invalid",
                               f"{kind} payload does not parse: {type(exc).__name__}: "
                               f"{str(exc)[:200]}") from None

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

    def _readings(self, metrics, default_ts: int | None, device: str | None,
                  result: SparkplugResult) -> None:  # type: ignore[no-untyped-def]
        by_meter: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for metric in metrics:
            name = metric.name
            if not name or "/" not in name:
                continue
            kind, meter = name.split("/", 1)
            if kind not in KINDS:
                continue
            if device is not None:
                meter = f"{device}.{meter}"
            ts = metric.timestamp if metric.timestamp is not None else default_ts
            if metric.is_null or metric.value is None:
                result.drop("quality")
                continue
            value = metric.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                result.drop("value_type")
                continue
            if ts is None:
                result.drop("ts_invalid")
                continue
            value = float(value)
            if not math.isfinite(value):
                result.drop("value_not_finite")
                continue
            by_meter.setdefault((kind, meter), []).append((int(ts), value))
        for (kind, meter), pairs in by_meter.items():
            result.readings.append(SparkplugReadings(
                kind, meter, np.array([t for t, _ in pairs], dtype=np.int64),
                np.array([v for _, v in pairs], dtype=np.float64)))


def _raw_payload(payload: bytes):  # type: ignore[no-untyped-def]
    """The protobuf message itself, for a DATA payload no BIRTH explains (pysparkplug's
    generated module: its public classes need the BIRTH to decode metrics)."""
    from pysparkplug import _protobuf

    return _protobuf.Payload.FromString(payload)


def rebirth_request(timestamp_ms: int | None = None) -> bytes:
    """The NCMD payload asking an edge node to send its births again."""
    import pysparkplug as spb

    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    metric = spb.Metric(timestamp=ts, name="Node Control/Rebirth",
                        datatype=spb.DataType.BOOLEAN, value=True)
    return spb.NCmd(timestamp=ts, metrics=(metric,)).encode(include_dtypes=True)
