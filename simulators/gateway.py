"""What a line's gateway publishes: registers, payloads and, on request, faults.

A gateway polls its line's meters every ``rate_s`` of plant time. Each meter
is held in a register (``GatewaySpec``): an integer count of
``10**-decimals`` of the meter's unit, starting from an arbitrary value (meters
are not new), optionally ``bits`` wide so that it wraps, as a Modbus uint32
scaled by 0.01 does at 42,949,672.96 (the reference data's ``simulator_hints``).
A register never runs backwards, except on a wrap or a reset. A ``delta``
meter publishes the increase since the previous poll instead.

Readings go out in the contract's JSON forms (docs/formats.md, payloads): one reading as
``{"ts", "v"}``, several as a list of those or as columnar ``ts``/``v``
lists, and ``ts`` as epoch milliseconds or an RFC 3339 string with an offset.
Each meter is described once by a retained ``meta`` message (carrier, unit,
mode and rollover; docs/formats.md, payloads).

Faults are off unless asked for (``Faults``): messages published twice
(a QoS 1 redelivery), messages held back by a bounded stretch of plant time,
readings lost, registers reset to zero, a gateway clock that is off by a constant,
and uplink losses after which the buffered readings arrive in one burst. Their draws
come from the gateway's own seeded streams, so switching faults on leaves the plant as
it was.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import orjson

from wattline.simulators.plant import MeterSpec

__all__ = [
    "BATCH_FORMS",
    "TIMESTAMP_FORMS",
    "Faults",
    "GatewaySpec",
    "LineGateway",
    "MeterRegister",
    "OutgoingMessage",
    "encode_readings",
    "meta_payload",
]

BATCH_FORMS = ("list", "columnar")
TIMESTAMP_FORMS = ("ms", "rfc3339")
METER_MODES = ("counter", "delta")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """How the gateway holds and publishes one meter.

    Args:
        decimals: the register counts ``10**-decimals`` of the meter's unit.
        bits: register width; it wraps at ``2**bits`` counts, declared in the
            meta message as ``rollover``. ``None``: it does not wrap.
        mode: ``counter`` publishes the register, ``delta`` the increase
            since the previous poll (the first poll publishes 0).
        batch_form: how several readings go in one message: ``list`` of
            objects or ``columnar`` lists.
        timestamps: ``ms`` (epoch milliseconds) or ``rfc3339`` strings.
        utc_offset_h: the offset RFC 3339 timestamps are written with.
    """

    decimals: int
    bits: int | None = None
    mode: str = "counter"
    batch_form: str = "columnar"
    timestamps: str = "ms"
    utc_offset_h: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals must be 0..6, got {self.decimals}")
        if self.bits is not None and not 8 <= self.bits <= 64:
            raise ValueError(f"bits must be 8..64 or absent, got {self.bits}")
        if self.mode not in METER_MODES:
            raise ValueError(f"mode must be one of {METER_MODES}, got {self.mode!r}")
        if self.batch_form not in BATCH_FORMS:
            raise ValueError(f"batch_form must be one of {BATCH_FORMS}, got {self.batch_form!r}")
        if self.timestamps not in TIMESTAMP_FORMS:
            raise ValueError(
                f"timestamps must be one of {TIMESTAMP_FORMS}, got {self.timestamps!r}"
            )

    @property
    def rollover(self) -> float | None:
        """The register's wrap value in the meter's unit, for counters that wrap."""
        if self.bits is None or self.mode != "counter":
            return None
        return 2**self.bits / 10**self.decimals


@dataclass(frozen=True, slots=True)
class Faults:
    """Gateway misbehaviour, each off at 0. Probabilities are per message or per reading.

    Args:
        duplicate_p: a message is published a second time right after itself.
        out_of_order_p: a message is held back and sent after later ones.
        out_of_order_max_s: how far (plant seconds) any reading of a held-back
            message may then lag the newest reading its line has published:
            keep it below the collector's ``allowed_lateness`` (30 s by default)
            so nothing is late. A message spanning this much or more is never held.
        dropout_p: a reading is lost.
        reset_p: a counter register is reset to 0 at a poll (meter replaced,
            gateway power-cycled).
        clock_skew_s: each gateway's clock is off by a constant drawn in
            ``[-clock_skew_s, clock_skew_s]``; its readings carry that clock's times.
        uplink_loss_p: at each message, the gateway loses its uplink with this
            probability for ``uplink_loss_s`` of plant time; what it reads meanwhile is
            buffered and flushed at once when the link is back (a burst).
        uplink_loss_s: how long an uplink loss lasts.
    """

    duplicate_p: float = 0.0
    out_of_order_p: float = 0.0
    out_of_order_max_s: float = 25.0
    dropout_p: float = 0.0
    reset_p: float = 0.0
    clock_skew_s: float = 0.0
    uplink_loss_p: float = 0.0
    uplink_loss_s: float = 60.0

    def __post_init__(self) -> None:
        if self.clock_skew_s < 0 or self.uplink_loss_s < 0:
            raise ValueError("clock_skew_s and uplink_loss_s must be >= 0")
        for name in ("duplicate_p", "out_of_order_p", "dropout_p", "reset_p", "uplink_loss_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability 0..1, got {p}")
        if self.out_of_order_max_s < 0:
            raise ValueError(f"out_of_order_max_s must be >= 0, got {self.out_of_order_max_s}")

    @property
    def any(self) -> bool:
        return bool(self.duplicate_p or self.out_of_order_p or self.dropout_p or self.reset_p
                    or self.clock_skew_s or self.uplink_loss_p)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One MQTT message as the gateway sends it, and when (plant time, epoch ms)."""

    due_ms: int
    topic: str
    payload: bytes
    readings: tuple[tuple[int, float], ...] = ()
    retain: bool = False
    # A message carrying several meters (Sparkplug B): each meter's readings under its
    # contract topic. Empty for a JSON message, whose readings are all of ``topic``.
    by_topic: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()


def meta_payload(meter: MeterSpec, spec: GatewaySpec) -> bytes:
    """A meter's retained description (docs/formats.md, payloads); no carrier for production."""
    doc: dict[str, object] = {}
    if meter.kind == "energy":
        doc["carrier"] = meter.carrier
        if meter.direction != "import":
            doc["direction"] = meter.direction
    doc["unit"] = meter.unit
    doc["mode"] = spec.mode
    if spec.rollover is not None:
        doc["rollover"] = spec.rollover
    return orjson.dumps(doc)


def _rfc3339(ts_ms: int, offset_h: float) -> str:
    tz = timezone(timedelta(hours=offset_h))
    moment = (_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(tz)
    return moment.isoformat(timespec="milliseconds")


def encode_readings(
    readings: Sequence[tuple[int, float]], spec: GatewaySpec
) -> bytes:
    """One message: a single reading as an object, several in the meter's batch form."""
    if not readings:
        raise ValueError("a message needs at least one reading")
    if spec.timestamps == "ms":
        stamps: list[int] | list[str] = [ts for ts, _ in readings]
    else:
        stamps = [_rfc3339(ts, spec.utc_offset_h) for ts, _ in readings]
    values = [v for _, v in readings]
    if len(readings) == 1:
        return orjson.dumps({"ts": stamps[0], "v": values[0]})
    if spec.batch_form == "columnar":
        return orjson.dumps({"ts": stamps, "v": values})
    return orjson.dumps([{"ts": t, "v": v} for t, v in zip(stamps, values, strict=True)])


@dataclass
class MeterRegister:
    """One meter's register in the gateway: true count in, published value out.

    The register starts at a random count (or, wrapping, anywhere below its
    wrap). ``poll`` returns the value to publish, or ``None`` when the reading
    is lost.
    """

    spec: GatewaySpec
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    offset: int = field(init=False)
    _count: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        scale = 10**self.spec.decimals
        top = 2**self.spec.bits if self.spec.bits is not None else 1_000_000 * scale
        self.offset = self.rng.randrange(top)

    def poll(self, true_total: float) -> float | None:
        """Read the meter once; the published value, or ``None`` if the reading is lost."""
        scale = 10**self.spec.decimals
        count = self.offset + math.floor(true_total * scale)
        previous = self._count
        if previous is not None and count < previous:
            count = previous  # a register never runs backwards (float rounding at a boundary)
        if (
            self.faults.reset_p
            and self.spec.mode == "counter"
            and self.rng.random() < self.faults.reset_p
        ):
            self.offset -= count
            count = 0
        self._count = count
        if self.faults.dropout_p and self.rng.random() < self.faults.dropout_p:
            return None
        if self.spec.mode == "delta":
            return (count - (count if previous is None else previous)) / scale
        if self.spec.bits is not None:
            count %= 2**self.spec.bits
        return count / scale


class LineGateway:
    """A line's gateway: polls all its meters together, batches and sends their readings.

    Args:
        topics: reading topic per meter, in the model's meter order.
        specs: ``GatewaySpec`` per meter, same order.
        readings_per_message: polls per message (1: every reading alone).
        seed_key: names this gateway's random stream (registers and faults).
        faults: misbehaviour, off by default.
    """

    def __init__(
        self,
        topics: Sequence[str],
        specs: Sequence[GatewaySpec],
        *,
        readings_per_message: int,
        seed_key: str,
        faults: Faults | None = None,
    ) -> None:
        if len(topics) != len(specs):
            raise ValueError("one topic per meter spec")
        if readings_per_message < 1:
            raise ValueError(f"readings_per_message must be >= 1, got {readings_per_message}")
        self.topics = list(topics)
        self.specs = list(specs)
        self.per_message = readings_per_message
        self.faults = faults or Faults()
        self._rng = random.Random(f"{seed_key}/faults")
        # Separate streams, so that skew and uplink losses leave the other faults as they were.
        self.skew_ms = round(random.Random(f"{seed_key}/skew").uniform(-1.0, 1.0)
                             * self.faults.clock_skew_s * 1000)
        self._uplink = random.Random(f"{seed_key}/uplink")
        self.registers = [
            MeterRegister(spec, random.Random(f"{seed_key}/{i}/register"), self.faults)
            for i, spec in enumerate(specs)
        ]

    def messages(
        self, polls: Iterable[tuple[int, Sequence[float]]]
    ) -> Iterator[OutgoingMessage]:
        """Messages for a stream of polls ``(ts_ms, true totals per meter)``, in sending order.

        Each message is due at its last poll's time, or later when held back;
        messages come out ordered by due time (ties in poll and meter order).
        """
        held: list[tuple[int, int, OutgoingMessage]] = []
        seq = 0
        group: list[list[tuple[int, float]]] = [[] for _ in self.registers]
        first_ts: int | None = None
        n = 0
        offline_until = -1  # plant ms the uplink is back at
        loss_p = self.faults.uplink_loss_p
        for ts, totals in polls:
            if first_ts is None:
                first_ts = ts
            for readings, register, total in zip(group, self.registers, totals, strict=True):
                value = register.poll(total)
                if value is not None:
                    readings.append((ts + self.skew_ms, value))  # the gateway's own clock
            n += 1
            if n < self.per_message:
                continue
            if loss_p and ts >= offline_until and self._uplink.random() < loss_p:
                offline_until = ts + round(self.faults.uplink_loss_s * 1000)
            for msg in self._send(group, first_ts, ts):
                if msg.due_ms < offline_until:  # buffered, flushed when the link is back
                    msg = dataclasses.replace(msg, due_ms=offline_until)
                heapq.heappush(held, (msg.due_ms, seq, msg))
                seq += 1
            while held and held[0][0] <= ts:
                yield heapq.heappop(held)[2]
            group = [[] for _ in self.registers]
            first_ts = None
            n = 0
        if first_ts is not None:
            for msg in self._send(group, first_ts, ts):
                heapq.heappush(held, (msg.due_ms, seq, msg))
                seq += 1
        while held:
            yield heapq.heappop(held)[2]

    def _send(
        self, group: list[list[tuple[int, float]]], first_ts: int, last_ts: int
    ) -> Iterator[OutgoingMessage]:
        faults = self.faults
        span_ms = last_ts - first_ts
        for topic, spec, readings in zip(self.topics, self.specs, group, strict=True):
            if not readings:
                continue
            due = last_ts
            room_ms = faults.out_of_order_max_s * 1000.0 - span_ms
            held_back = faults.out_of_order_p and self._rng.random() < faults.out_of_order_p
            if held_back and room_ms >= 1:
                due += min(int(self._rng.random() * room_ms), math.ceil(room_ms) - 1)
            msg = OutgoingMessage(due, topic, encode_readings(readings, spec), tuple(readings))
            yield msg
            if faults.duplicate_p and self._rng.random() < faults.duplicate_p:
                yield msg
