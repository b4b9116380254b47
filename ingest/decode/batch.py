"""One batch of MQTT messages -> one columnar batch of readings, in arrival order.

The pipeline's first stage. Per message it looks at the topic (a known reading topic
is one dictionary lookup; a ``meta`` topic updates the meter registry; a Sparkplug B
topic, and one that a ``[[payloads]]`` mapping reads (``mapping``), is decoded whole);
then the reading payloads of the whole batch are decoded together by the compiled
scanner (``payload_scan``), and the few it hands back by ``decode_readings``, the
contract's definition. A meter is registered once a message
of it brings a usable reading, unless the registry's limits refuse it: then its
readings are dropped (``meter_limit``), and the refusal is counted in
``wattline_meters_refused_total`` and logged once a minute per limit, naming the
setting to raise. Everything dropped is counted by reason and logged at most once a
minute per topic and reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from wattline.contract.errors import PayloadError, TopicError
from wattline.contract.topics import MeterTopic, TopicTemplate, valid_name
from wattline.ingest.config import Settings
from wattline.ingest.decode.arrival import in_arrival_order
from wattline.ingest.decode.mapping import MeterName as MappedName
from wattline.ingest.decode.mapping import PayloadMapper, PayloadMapping
from wattline.ingest.decode.payloads import (
    VALUE_LIMIT,
    DecodedReadings,
    decode_meta,
    decode_readings,
)
from wattline.ingest.decode.registry import (
    REFUSED,
    MeterDescriptionError,
    MeterName,
    MeterRegistry,
)
from wattline.ingest.decode.rename import Renames
from wattline.ingest.decode.scanner import SCANNED, PayloadScanner
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sources.sparkplug import SparkplugDecoder, is_sparkplug
from wattline.kernels import Readings

log = logging.getLogger("wattline.pipeline")  # the pipeline's stage, under its logger

MAX_CACHED_TOPICS = 100_000
"""Reading topics whose meter number the decoder remembers (cleared when full)."""
UNSEEN = -2
"""A topic the decoder does not remember (``REFUSED`` ones are remembered as refused)."""


class Message(NamedTuple):
    """One MQTT message as received (a tuple: it is made on paho's thread per message)."""

    topic: str
    payload: bytes
    received_s: float  # time.time() at receipt
    ack: Any = None  # the MQTT source's token, to acknowledge once the message is durable


class BatchDecoder:
    """Decodes the pipeline's batches (``decode``); owns the topic layout, the payload
    scanner and the Sparkplug B decoder, and registers meters in ``registry``."""

    def __init__(
        self,
        settings: Settings,
        registry: MeterRegistry,
        metrics: CollectorMetrics,
        log_once: Callable[[str, str], bool],
    ) -> None:
        self.settings = settings
        """Read for every batch: the pipeline replaces it on a reload."""
        self.registry = registry
        self.metrics = metrics
        self._log_once = log_once
        registry.max_lines = settings.decode.max_lines
        registry.max_meters = settings.decode.max_meters
        registry.on_refused = self._refused
        mqtt = settings.mqtt
        self.topics = TopicTemplate(mqtt.topic_template, prefix=mqtt.topic_prefix)
        self.sparkplug = SparkplugDecoder() if mqtt.sparkplug else None
        self.mapper = PayloadMapper(settings.decode.payloads) if settings.decode.payloads \
            else None
        self.renames = Renames(settings.decode.rename)
        """The ``[rename]`` table: built once, a reload does not change it."""
        self.publish_command: Callable[[str, bytes], None] | None = None
        """Publishes a Sparkplug command (a rebirth request); set by the collector."""
        self._scanner = PayloadScanner()
        self._meter_of_topic: dict[str, int] = {}
        """Reading topics already registered, and their meter numbers (or ``REFUSED``)."""
        self._message_no = 0
        self.labels: list[tuple[int, int, str]] = []
        """The last batch's batch ids: ``(meter, ts_ms, id)`` of each kept reading that
        carried a ``batch`` value (docs/formats.md, batches)."""

    def reject(self, reason: str, topic: str, detail: str) -> None:
        """Count a message dropped whole, and log it once a minute per topic and reason."""
        self.metrics.payload_errors.labels(reason).inc()
        if self._log_once(reason, topic):
            log.warning("dropped a message on %r: %s (%s); further ones like it on this topic "
                        "are counted in wattline_payload_errors_total{reason=%r} and not logged "
                        "for a minute", topic[:200], reason, detail[:300], reason)

    def decode(self, batch: Sequence[Message]) -> Readings:
        """Topics and payloads to one columnar batch, in arrival order.

        Per message, only the topic is looked at in Python (a known reading topic is one
        dictionary lookup). The payloads are then decoded together by the compiled
        scanner (``payload_scan``), outside the interpreter lock; the few it hands back
        go through ``decode_readings`` one by one. Counters are summed over the batch.
        """
        s = self.settings.decode
        meter_of_topic = self._meter_of_topic
        sparkplug = self.sparkplug
        mapper = self.mapper
        renames = self.renames
        meters: list[int] = []  # per reading message: its meter; -1 until registered or
        # when refused
        payloads: list[bytes] = []
        received: list[float] = []
        names: list[str] = []
        unregistered: list[tuple[int, MeterTopic]] = []  # (position, topic) of new meters
        # Sparkplug B and mapped messages, decoded whole: (position, per meter its readings)
        sparkplug_at: list[tuple[int, list[tuple[int, np.ndarray, np.ndarray]]]] = []
        n_meta_msgs = 0
        for msg in batch:
            name = msg.topic
            meter = meter_of_topic.get(name, UNSEEN)
            if meter == UNSEEN:
                mapping = mapper.match(name) if mapper is not None else None
                if mapping is not None:
                    sparkplug_at.append((len(payloads), self._decode_mapped(msg, mapping)))
                    continue
                if sparkplug is not None and is_sparkplug(name):
                    sparkplug_at.append((len(payloads), self._decode_sparkplug(msg)))
                    continue
                try:
                    topic = self.topics.parse(name)
                except TopicError as exc:
                    self.reject(exc.reason, name, str(exc))
                    continue
                if renames:
                    renamed = renames.meter(topic.site, topic.line, topic.kind, topic.meter)
                    if renamed is None:
                        self.reject("name_taken", name, renames.taken(
                            topic.site, topic.line, topic.kind, topic.meter))
                        continue
                    topic = MeterTopic(*renamed, is_meta=topic.is_meta)
                if topic.is_meta:
                    n_meta_msgs += 1
                    self._apply_meta(topic, msg)
                    continue
                unregistered.append((len(payloads), topic))
                meter = -1
            meters.append(meter)
            payloads.append(msg.payload)
            received.append(msg.received_s)
            names.append(name)
        n_reading_msgs = len(payloads)
        n_received = 0
        dropped: dict[str, int] = {}
        scanned = self._scanner.scan(
            payloads,
            # Each message is judged against its receipt, also on a replay.
            (np.array(received, dtype=np.float64) * 1000.0).astype(np.int64),
            max_future_ms=s.max_future.ms, max_past_ms=s.max_past.ms,
            max_bytes=s.max_payload_bytes,
        )
        kept = scanned.kept
        n_received += int(kept.sum())
        for reason, per_payload in (("value_range", scanned.value_range),
                                    ("ts_out_of_range", scanned.out_of_range)):
            count = int(per_payload.sum())
            if count:
                n_received += count
                dropped[reason] = count
                for k in np.flatnonzero(per_payload):
                    self._log_dropped(names[k], reason, int(per_payload[k]))
        # Payloads the scanner handed back: decoded one by one, by the definition.
        slow: dict[int, DecodedReadings] = {}
        for k in np.flatnonzero(scanned.status != SCANNED).tolist():
            try:
                decoded = decode_readings(
                    payloads[k], now_ms=int(received[k] * 1000),
                    max_future_ms=s.max_future.ms, max_past_ms=s.max_past.ms,
                    max_bytes=s.max_payload_bytes)
            except PayloadError as exc:
                self.reject(exc.reason, names[k], exc.detail)
                continue
            slow[k] = decoded
            kept[k] = len(decoded)
            if decoded.bad_labels and self._log_once("batch_id", names[k]):
                log.warning("%d reading(s) on %r carry a 'batch' value that is no batch id (a "
                            "name of 1-64 characters or an integer); their batches take the "
                            "default id {line}-{close ms}", decoded.bad_labels,
                            names[k][:200])
            n_received += len(decoded)
            for reason, count in decoded.dropped.items():
                n_received += count
                dropped[reason] = dropped.get(reason, 0) + count
                self._log_dropped(names[k], reason, count)
        # A meter is registered once a message of it brings a usable reading (or refused).
        for k, topic in unregistered:
            if kept[k] > 0:
                meters[k] = meter_of_topic.get(names[k], UNSEEN)
                if meters[k] == UNSEEN:
                    meters[k] = self.registry.meter_index(topic.site, topic.line, topic.kind,
                                                          topic.meter)
                    if len(meter_of_topic) >= MAX_CACHED_TOPICS:
                        meter_of_topic.clear()
                    meter_of_topic[names[k]] = meters[k]
        self.labels = [(meters[k], ts, label) for k, decoded in slow.items()
                       if meters[k] >= 0 for ts, label in decoded.labels]
        meter_arr = np.array(meters, dtype=np.int32)
        refused = (meter_arr == REFUSED) & (kept > 0)
        if refused.any():
            count = int(kept[refused].sum())
            dropped["meter_limit"] = dropped.get("meter_limit", 0) + count
        if n_reading_msgs:
            self.metrics.messages_received.labels("reading").inc(n_reading_msgs)
        if n_meta_msgs:
            self.metrics.messages_received.labels("meta").inc(n_meta_msgs)
        if n_received:
            self.metrics.readings_received.inc(n_received)
        for reason, count in dropped.items():
            self.metrics.readings_dropped.labels(reason).inc(count)
        if not slow and not sparkplug_at and not refused.any():
            counts = kept
            meter_col = meter_arr
            ts_col, value_col = scanned.ts_ms, scanned.value
        else:
            meter_col, ts_col, value_col, counts = in_arrival_order(
                meters, scanned.status, kept, scanned.ts_ms, scanned.value, slow, sparkplug_at)
        numbers = np.arange(self._message_no + 1, self._message_no + 1 + counts.shape[0],
                            dtype=np.int64)
        self._message_no += counts.shape[0]
        # ts/value may be the scanner's reused columns: valid until the next batch.
        return Readings.from_arrays(np.repeat(meter_col, counts), ts_col, value_col,
                                    np.repeat(numbers, counts))

    def _log_dropped(self, topic: str, reason: str, count: int) -> None:
        if self._log_once(reason, topic):
            log.warning("dropped %d reading(s) on %r: %s", count, topic[:200], reason)

    def _decode_sparkplug(self, msg: Message) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """A Sparkplug B message's readings as (meter index, times, values), one per meter.

        Each meter's readings count as one message of the contract (judged against the
        line's watermark before them), in the order of the metrics.
        """
        s = self.settings.decode
        assert self.sparkplug is not None
        self.metrics.messages_received.labels("sparkplug").inc()
        try:
            result = self.sparkplug.decode(msg.topic, msg.payload, max_bytes=s.max_payload_bytes)
        except (PayloadError, TopicError) as exc:  # a bad payload, or an id that is no name
            self.reject(exc.reason, msg.topic, exc.detail)
            return []
        for event in result.events:
            self.metrics.sparkplug_events.labels(event).inc()
        if result.rebirth is not None and self.publish_command is not None:
            self.publish_command(*result.rebirth)
            log.warning("asked edge node %s/%s for a rebirth (%s)", result.site, result.line,
                        ", ".join(e for e in result.events if e != "rebirth_requested")
                        or "data before its birth")
        if not (valid_name(result.site) and valid_name(result.line)):
            self.reject("topic_name", msg.topic, "group or edge node id is not a valid name")
            return []
        now_ms = int(msg.received_s * 1000)
        parts: list[tuple[MappedName, np.ndarray, np.ndarray]] = []
        dropped = dict(result.dropped)
        received = sum(dropped.values())
        for r in result.readings:
            received += r.ts_ms.shape[0]
            if not valid_name(r.meter):
                self.reject("topic_name", msg.topic, f"metric meter {r.meter[:80]!r}")
                continue
            in_range = np.abs(r.value) < VALUE_LIMIT  # judged before the time, as in JSON
            keep = (in_range & (r.ts_ms <= now_ms + s.max_future.ms)
                    & (r.ts_ms >= now_ms - s.max_past.ms))
            for reason, count in (("value_range", int((~in_range).sum())),
                                  ("ts_out_of_range", int((in_range & ~keep).sum()))):
                if count:
                    dropped[reason] = dropped.get(reason, 0) + count
            if keep.any():
                parts.append(((result.site, result.line, r.kind, r.meter), r.ts_ms[keep],
                              r.value[keep]))
        return self._admit(msg.topic, parts, received, dropped)

    def _decode_mapped(self, msg: Message,
                       mapping: PayloadMapping) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """A document on a ``[[payloads]]`` topic, read by its mapping: (meter index,
        times, values) per meter, each meter's readings one message as in Sparkplug B."""
        s = self.settings.decode
        assert self.mapper is not None
        self.metrics.messages_received.labels("mapped").inc()
        try:
            result = self.mapper.read(
                mapping, msg.topic, msg.payload, now_ms=int(msg.received_s * 1000),
                max_future_ms=s.max_future.ms, max_past_ms=s.max_past.ms,
                max_bytes=s.max_payload_bytes)
        except PayloadError as exc:
            self.reject(exc.reason, msg.topic, exc.detail)
            return []
        for reason, detail in result.refused:
            self.reject(reason, msg.topic, detail)
        return self._admit(msg.topic, result.parts, result.received, dict(result.dropped))

    def _admit(self, topic: str, parts: list[tuple[MappedName, np.ndarray, np.ndarray]],
               received: int, dropped: dict[str, int]) -> list[tuple[int, np.ndarray,
                                                                     np.ndarray]]:
        """Register the meters of a message decoded whole and count its readings: the
        usable ones as (meter index, times, values); a refused meter's are dropped."""
        out = []
        renames = self.renames
        for name, ts, value in parts:
            if renames:
                renamed = renames.meter(*name)
                if renamed is None:
                    self.reject("name_taken", topic, renames.taken(*name))
                    continue
                name = renamed
            idx = self.registry.meter_index(*name)
            if idx == REFUSED:
                dropped["meter_limit"] = dropped.get("meter_limit", 0) + ts.shape[0]
            else:
                out.append((idx, ts, value))
        if received:
            self.metrics.readings_received.inc(received)
        for reason, count in dropped.items():
            if count:
                self.metrics.readings_dropped.labels(reason).inc(count)
                if reason != "meter_limit" and self._log_once(reason, topic):
                    log.warning("dropped %d reading(s) on %r: %s", count, topic[:200], reason)
        return out

    def _apply_meta(self, topic: MeterTopic, msg: Message) -> None:
        try:
            meta = decode_meta(msg.payload)
            self.registry.apply_meta(topic.site, topic.line, topic.kind, topic.meter, meta)
        except PayloadError as exc:
            self.reject(exc.reason, msg.topic, exc.detail)
        except MeterDescriptionError as exc:
            self.reject("meta_invalid", msg.topic, str(exc))

    def _refused(self, meter: MeterName, limit: str) -> None:
        """The registry refused a new meter (``limit``: the setting that did)."""
        self.metrics.meters_refused.labels(limit).inc()
        if self._log_once("meter_limit", limit):
            registry = self.registry
            held = (f"{registry.n_lines} lines" if limit == "max_lines"
                    else f"{registry.n_meters} meters")
            log.warning(
                "refused new meter %r: wattline already holds %s, the limit %s; its readings "
                "are dropped. Raise %s (--%s) if the plant really has more. Further refusals "
                "are counted in wattline_meters_refused_total{limit=%r} and "
                "wattline_readings_dropped_total{reason=\"meter_limit\"} and logged once a "
                "minute", "/".join(meter)[:300], held, limit, limit,
                limit.replace("_", "-"), limit)
