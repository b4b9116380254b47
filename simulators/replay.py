"""Captures of MQTT traffic: record what the simulator would publish, replay it to a broker.

A capture is a list of messages, each with the time it was due or sent
(``t_ms``, epoch milliseconds), its topic, its payload bytes, its retain flag
and its QoS. Two file formats hold one, chosen by the file's extension:

- ``.jsonl`` (or ``.jsonl.gz``, gzip-compressed): JSON Lines, one object per
  message, ``{"t_ms": int, "topic": str, "payload_b64": str, "retain": bool,
  "qos": int}``, the payload in standard base64 so any bytes survive.
- ``.parquet``: one row per message, columns ``t_ms`` (int64), ``topic``
  (string), ``payload`` (binary), ``retain`` (bool) and ``qos`` (int8).

``record_schedule`` writes the capture of what ``publisher.simulate`` would
publish for the same arguments, without a broker. ``replay`` publishes a
capture in ``t_ms`` order, keeping the recorded gaps divided by ``speed``.

Replayed payloads are byte for byte the recorded ones: readings keep the
timestamps they were recorded with. A collector drops readings stamped further
in the past than its ``--max-past`` (30 days by default), so an old capture
needs a collector whose ``--max-past`` reaches back to it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.parquet as pq

from wattline.simulators.events import Event
from wattline.simulators.gateway import Faults
from wattline.simulators.publisher import (
    _MAX_UNACKED,
    ACK_TIMEOUT_S,
    DEFAULT_LINES,
    MAX_BATCH_SPAN_S,
    _wait_acked,
    connected_client,
    readings_per_message,
    schedule,
)
from wattline.simulators.scenario import Scenario

__all__ = [
    "CAPTURE_EXTENSIONS",
    "CaptureError",
    "CapturedMessage",
    "ReplaySummary",
    "capture_format",
    "read_capture",
    "record_schedule",
    "replay",
    "write_capture",
]

log = logging.getLogger("wattline.simulators")

CAPTURE_EXTENSIONS = (".jsonl", ".jsonl.gz", ".parquet")
_PARQUET_SCHEMA = pa.schema(
    [
        ("t_ms", pa.int64()),
        ("topic", pa.string()),
        ("payload", pa.binary()),
        ("retain", pa.bool_()),
        ("qos", pa.int8()),
    ]
)
_PARQUET_BATCH_ROWS = 50_000
_PROGRESS_EVERY_S = 1.0


class CaptureError(ValueError):
    """A file is not a capture: unknown extension or malformed content."""


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One recorded MQTT message and the time (epoch ms) it was due or sent."""

    t_ms: int
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1


@dataclass(frozen=True)
class ReplaySummary:
    """What a ``replay`` run published."""

    messages: int  # all messages published, retained ones included
    retained: int  # of which published with the retain flag
    wall_s: float
    speed: float  # the speed asked for; 0 is as fast as possible
    first_t_ms: int | None  # recorded time of the first message published
    last_t_ms: int | None  # and of the last one
    stopped: bool = False  # ended by ``stop`` before the capture's end

    @property
    def recorded_span_s(self) -> float:
        """Recorded seconds between the first and the last message published."""
        if self.first_t_ms is None or self.last_t_ms is None:
            return 0.0
        return (self.last_t_ms - self.first_t_ms) / 1000.0

    @property
    def messages_per_s(self) -> float:
        """Achieved publishing rate, acknowledgements included."""
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        pace = "as fast as possible" if self.speed == 0 else f"asked x{self.speed:g}"
        return (
            f"replayed {self.messages:,} messages ({self.retained} retained) in "
            f"{self.wall_s:.1f} s{' (stopped)' if self.stopped else ''}; "
            f"{self.recorded_span_s:.1f} s of recorded time ({pace}), "
            f"{self.messages_per_s:,.0f} messages/s"
        )


def capture_format(path: str | os.PathLike[str]) -> str:
    """The capture format of a file name: ``jsonl``, ``jsonl.gz`` or ``parquet``.

    Raises:
        CaptureError: the extension is none of ``CAPTURE_EXTENSIONS``.
    """
    name = Path(path).name.lower()
    for extension in sorted(CAPTURE_EXTENSIONS, key=len, reverse=True):
        if name.endswith(extension) and len(name) > len(extension):
            return extension[1:]
    raise CaptureError(
        f"{os.fspath(path)}: unknown capture format; the file name must end in "
        f"{', '.join(CAPTURE_EXTENSIONS)}"
    )


def write_capture(
    path: str | os.PathLike[str], messages: Iterable[CapturedMessage]
) -> int:
    """Write ``messages`` to a capture file in the format its extension names; returns how many.

    The file appears complete or not at all: it is written under a temporary
    name next to ``path`` and renamed when done.

    Raises:
        CaptureError: unknown extension.
        ValueError: a message with a QoS other than 0, 1 or 2.
    """
    form = capture_format(path)
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        if form == "parquet":
            count = _write_parquet(partial, messages)
        else:
            opener = gzip.open if form == "jsonl.gz" else open
            with opener(partial, "wb") as out:
                count = _write_jsonl(out, messages)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _checked_qos(message: CapturedMessage) -> int:
    if message.qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, got {message.qos!r} on {message.topic!r}")
    return message.qos


def _write_jsonl(out: IO[bytes], messages: Iterable[CapturedMessage]) -> int:
    count = 0
    for message in messages:
        record = {
            "t_ms": int(message.t_ms),
            "topic": message.topic,
            "payload_b64": base64.b64encode(message.payload).decode("ascii"),
            "retain": bool(message.retain),
            "qos": _checked_qos(message),
        }
        out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def _write_parquet(path: Path, messages: Iterable[CapturedMessage]) -> int:
    count = 0
    with pq.ParquetWriter(path, _PARQUET_SCHEMA) as writer:
        for chunk in _chunks(messages, _PARQUET_BATCH_ROWS):
            columns = [
                [m.t_ms for m in chunk],
                [m.topic for m in chunk],
                [bytes(m.payload) for m in chunk],
                [bool(m.retain) for m in chunk],
                [_checked_qos(m) for m in chunk],
            ]
            writer.write_table(pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(columns, _PARQUET_SCHEMA, strict=True)],
                schema=_PARQUET_SCHEMA,
            ))
            count += len(chunk)
    return count


def _chunks(messages: Iterable[CapturedMessage], size: int) -> Iterator[list[CapturedMessage]]:
    chunk: list[CapturedMessage] = []
    for message in messages:
        chunk.append(message)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_capture(path: str | os.PathLike[str]) -> list[CapturedMessage]:
    """The messages of a capture file, in file order.

    Raises:
        FileNotFoundError: there is no such file.
        CaptureError: unknown extension, or content that is not a capture; for
            JSON Lines the message names the file and the line number.
    """
    form = capture_format(path)
    if form == "parquet":
        return _read_parquet(Path(path))
    if form == "jsonl":
        with open(path, "rb") as lines:
            return _read_jsonl(lines, os.fspath(path))
    with gzip.open(path, "rb") as lines:
        try:
            return _read_jsonl(lines, os.fspath(path))
        except (gzip.BadGzipFile, EOFError) as err:
            raise CaptureError(f"{os.fspath(path)}: not a readable gzip file: {err}") from None


def _read_jsonl(lines: Iterable[bytes], name: str) -> list[CapturedMessage]:
    messages: list[CapturedMessage] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            messages.append(_parse_record(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValueError, TypeError) as err:
            raise CaptureError(f"{name}, line {number}: not a captured message: {err}") from None
    return messages


def _parse_record(record: Any) -> CapturedMessage:
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    missing = [k for k in ("t_ms", "topic", "payload_b64", "retain", "qos") if k not in record]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    t_ms, topic, encoded = record["t_ms"], record["topic"], record["payload_b64"]
    retain, qos = record["retain"], record["qos"]
    if not isinstance(t_ms, int) or isinstance(t_ms, bool):
        raise ValueError(f"t_ms must be an integer, got {t_ms!r}")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if not isinstance(encoded, str):
        raise ValueError("payload_b64 must be a base64 string")
    if not isinstance(retain, bool):
        raise ValueError(f"retain must be true or false, got {retain!r}")
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except binascii.Error as err:
        raise ValueError(f"payload_b64 is not valid base64: {err}") from None
    return CapturedMessage(t_ms, topic, payload, retain, qos)


def _read_parquet(path: Path) -> list[CapturedMessage]:
    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise CaptureError(f"{path}: not a Parquet capture: {err}") from None
    missing = [f.name for f in _PARQUET_SCHEMA if f.name not in table.column_names]
    if missing:
        raise CaptureError(f"{path}: not a capture, missing column(s) {', '.join(missing)}")
    try:
        table = table.select(_PARQUET_SCHEMA.names).cast(_PARQUET_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise CaptureError(f"{path}: a column has the wrong type: {err}") from None
    for name in _PARQUET_SCHEMA.names:
        if table.column(name).null_count:
            raise CaptureError(f"{path}: column {name} has empty (null) values")
    columns = [table.column(name).to_pylist() for name in _PARQUET_SCHEMA.names]
    messages = [CapturedMessage(*row) for row in zip(*columns, strict=True)]
    for row, message in enumerate(messages):
        if message.qos not in (0, 1, 2) or not message.topic:
            raise CaptureError(f"{path}, row {row}: qos must be 0, 1 or 2 and topic non-empty")
    return messages


def record_schedule(
    path: str | os.PathLike[str],
    lines: Sequence[str] = DEFAULT_LINES,
    *,
    site: str = "demo",
    rate_s: float = 10.0,
    duration_s: float = 60.0,
    speed: float = 1.0,
    seed: int = 0,
    topic_prefix: str = "factory",
    start_ms: int | None = None,
    faults: Faults | None = None,
    max_batch_span_s: float = MAX_BATCH_SPAN_S,
    events: Sequence[Event] = (),
    payload_format: str = "json",
    scenarios: Mapping[str, Scenario] | None = None,
) -> int:
    """Write the capture of what ``publisher.simulate`` would publish, without a broker.

    The arguments mean what they mean for ``simulate``; the messages are the
    ones ``publisher.schedule`` gives for them, each with ``t_ms`` its due time
    on the plant clock and QoS 1. Returns how many messages were written.

    Raises:
        ValueError: an argument ``simulate`` would refuse, or an unknown extension.
    """
    capture_format(path)
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if not duration_s > 0:
        raise ValueError(f"a recording needs a positive duration_s, got {duration_s}")
    plant_s = duration_s * speed
    if start_ms is None:
        start_ms = _now_ms() - round(plant_s * 1000)
    outgoing = schedule(
        lines, site=site, start_ms=start_ms, plant_s=plant_s, rate_s=rate_s, seed=seed,
        topic_prefix=topic_prefix,
        readings_per_message=readings_per_message(
            speed, rate_s, max_batch_span_s=max_batch_span_s
        ),
        faults=faults, events=events, payload_format=payload_format, scenarios=scenarios,
    )
    return write_capture(
        path, (CapturedMessage(m.due_ms, m.topic, m.payload, m.retain, 1) for m in outgoing)
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def replay(
    mqtt_url: str,
    path: str | os.PathLike[str],
    *,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    shift_to_now: bool = False,
    progress: Callable[[int, int], None] | None = None,
    connect_timeout_s: float = 10.0,
) -> ReplaySummary:
    """Publish a capture file to a broker in ``t_ms`` order; returns what was published.

    The first message goes out at once; each later one when ``(t_ms - first
    t_ms) / speed`` wall seconds have passed. Messages with the same ``t_ms``
    keep their file order. Each goes out with its recorded QoS and retain
    flag; the run ends by waiting (up to 30 s) for the broker to acknowledge
    the QoS 1 and 2 messages.

    Args:
        mqtt_url: ``mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS).
        path: a capture file (``.jsonl``, ``.jsonl.gz`` or ``.parquet``).
        speed: recorded seconds per wall second; ``0`` publishes as fast as
            the broker takes the messages, without pauses.
        stop: set it to end the run early.
        shift_to_now: accepted for callers that anchor a replay to the present.
            Payloads are never rewritten, with or without it: readings keep their
            recorded timestamps, so a collector's ``--max-past`` must reach back
            to them. With it, the log says how far back that is.
        progress: called about once a second, and at the end, with
            ``(messages published, messages in the capture)``.
        connect_timeout_s: how long to wait for the broker's CONNACK.

    Raises:
        ConnectionError: the broker could not be reached or refused the connection.
        FileNotFoundError, CaptureError: the capture cannot be read.
        ValueError: a bad ``speed`` or ``mqtt_url``.
    """
    if not (speed >= 0) or math.isinf(speed):
        raise ValueError(f"speed must be positive, or 0 for as fast as possible; got {speed}")
    messages = sorted(read_capture(path), key=lambda m: m.t_ms)
    stop = stop or threading.Event()
    if shift_to_now and messages:
        behind_s = (_now_ms() - messages[0].t_ms) / 1000.0
        log.info(
            "readings keep their recorded timestamps: the oldest message was due %.0f s ago, "
            "so the collector's --max-past must reach back at least that far", behind_s,
        )
    with connected_client(mqtt_url, connect_timeout_s) as (client, host, port):
        log.info(
            "replaying %d message(s) from %s to %s:%d, %s", len(messages), os.fspath(path),
            host, port, "as fast as possible" if speed == 0 else f"x{speed:g}",
        )
        return _replay_messages(client, messages, stop, speed, progress)


def _replay_messages(
    client: mqtt.Client,
    messages: Sequence[CapturedMessage],
    stop: threading.Event,
    speed: float,
    progress: Callable[[int, int], None] | None,
) -> ReplaySummary:
    """Release each message at its recorded offset divided by ``speed``; wait for the acks."""
    unacked: deque[mqtt.MQTTMessageInfo] = deque()
    sent = retained = 0
    stopped = False
    started = time.monotonic()
    next_progress = started + _PROGRESS_EVERY_S
    first_t_ms = messages[0].t_ms if messages else 0
    for message in messages:
        if speed > 0:
            wait_s = (message.t_ms - first_t_ms) / 1000.0 / speed - (time.monotonic() - started)
            if wait_s > 0 and stop.wait(wait_s):
                stopped = True
                break
        if stop.is_set():
            stopped = True
            break
        info = client.publish(message.topic, message.payload, qos=message.qos,
                              retain=message.retain)
        if message.qos > 0:
            unacked.append(info)
        sent += 1
        retained += message.retain
        if len(unacked) > _MAX_UNACKED:
            _wait_acked(unacked, _MAX_UNACKED // 2, time.monotonic() + ACK_TIMEOUT_S)
        if progress is not None and time.monotonic() >= next_progress:
            progress(sent, len(messages))
            next_progress = time.monotonic() + _PROGRESS_EVERY_S
    _wait_acked(unacked, 0, time.monotonic() + ACK_TIMEOUT_S)
    if progress is not None:
        progress(sent, len(messages))
    return ReplaySummary(
        messages=sent,
        retained=retained,
        wall_s=time.monotonic() - started,
        speed=speed,
        first_t_ms=messages[0].t_ms if sent else None,
        last_t_ms=messages[sent - 1].t_ms if sent else None,
        stopped=stopped,
    )
