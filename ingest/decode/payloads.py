"""Decode MQTT reading payloads into columnar readings (docs/formats.md, payloads).

Three reading forms are accepted, all UTF-8 JSON parsed by orjson::

    {"ts": 1732406400000, "v": 123456.7}            one reading
    [{"ts": ..., "v": ...}, ...]                    a batch
    {"ts": [t0, t1, ...], "v": [v0, v1, ...]}       a columnar batch (optional "q" list)

Two kinds of failure are kept apart. A payload that cannot be read at all
raises ``PayloadError`` (its ``reason`` is a metric label); an object anywhere in it
with a repeated key is one of those (``duplicate_key``, see ``json_doc``). A reading that is
readable but unusable is dropped alone and counted in ``DecodedReadings.dropped``
under the first of these that applies, in this order:

- ``quality``: ``q`` present and neither the string ``"good"`` nor the integer ``0``
  (``null``, ``false`` and ``0.0`` are not good).
- ``value_type``: ``v`` missing, or not a number: a string, bool, null, list or object.
- ``value_not_finite``: ``v`` is a string naming a non-finite float (``"NaN"``, ``"inf"``,
  ``"-Infinity"``); orjson already rejects bare ``NaN`` as invalid JSON.
- ``value_range``: ``v`` a number of magnitude ``VALUE_LIMIT`` (1e15) or more. JSON
  numbers are finite here (orjson refuses ``1e400`` as invalid JSON), so this is what
  catches ``1e308`` or a register read as garbage; a non-finite number, were one to
  get this far, is out of range too.
- ``ts_invalid``: ``ts`` missing, a bool or other non-number, a float with a fractional
  part (integral floats such as ``1.7e12`` are taken as milliseconds), or a string that
  is not RFC 3339 with an offset (``2024-11-24T00:00:00Z``, ``...00.250+08:00``;
  ``T``, ``t`` or a space between date and time; sub-millisecond digits are truncated;
  leap seconds ``:60`` are rejected).
- ``ts_out_of_range``: earlier than ``now - max_past_ms`` or later than ``now + max_future_ms``.

Decisions the contract leaves open:

- An empty batch (``[]`` or ``{"ts": [], "v": []}``) is valid and yields no readings.
  A zero-length payload (what clears a retained message) raises ``empty``.
- In the single-object form both ``ts`` and ``v`` keys must be present, or the payload
  is ``payload_shape``; inside a batch a missing key drops only that reading.
- A batch element that is not an object, or an object with only one of ``ts``/``v``
  as a list, is ``payload_shape``. A columnar ``q`` must be a list too.
- Keys other than ``ts``, ``v``, ``q`` and ``batch`` in a reading are ignored.
- ``batch``: a production reading's batch id (a heat's number, a run's name), kept for
  the batch it closes (``DecodedReadings.labels``). A string that is a valid name (1-64
  characters, no control characters, no surrounding white space) or an integer; any
  other value keeps the reading but not the id (``DecodedReadings.bad_labels``, so the
  batch takes its default id). Only the single and the list-of-objects forms carry it.

Speed: the single form with an integer ``ts`` and numeric ``v``, and columnar
batches of integer ``ts`` and numeric ``v``, skip per-reading Python (type checks run
as C-level ``set(map(type, ...))``, conversion by NumPy); anything unusual falls back
to the per-reading path, which gives the same answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat

import numpy as np

from wattline.contract.errors import PayloadError
from wattline.contract.topics import valid_name
from wattline.ingest.decode.json_doc import json_type, parse_json
from wattline.ingest.decode.meta import MeterMeta, decode_meta

__all__ = [
    "READING_DROP_REASONS",
    "VALUE_LIMIT",
    "DecodedReadings",
    "MeterMeta",
    "batch_label",
    "decode_meta",
    "decode_readings",
    "judge_reading",
    "rfc3339_ms",
]

#: Why a single reading was dropped, in the order they are checked.
READING_DROP_REASONS = (
    "quality",
    "value_type",
    "value_not_finite",
    "value_range",
    "ts_invalid",
    "ts_out_of_range",
    "sparkplug_alias",  # a Sparkplug B metric whose alias no BIRTH named
    "mapping",  # a [[payloads]] mapping found no value, time or name for it (or no tag)
    "meter_limit",  # a new meter or line beyond --max-meters / --max-lines (the registry's)
)

VALUE_LIMIT = 1e15
"""A reading's ``v`` must be below this in magnitude (``value_range``): far above any real
register, and low enough that sums of deltas stay exact to well below a unit."""


@dataclass(frozen=True, slots=True)
class DecodedReadings:
    """One message's usable readings as columns, and how many were dropped by reason.

    ``dropped`` holds only reasons that occurred (an all-good message gives ``{}``).
    Readings keep their order in the message; ordering by ``ts`` is the kernels' job.
    """

    ts_ms: np.ndarray  # int64, epoch milliseconds
    value: np.ndarray  # float64, finite
    dropped: dict[str, int] = field(default_factory=dict)
    labels: tuple[tuple[int, str], ...] = ()
    """``(ts_ms, batch id)`` of the kept readings that carried a usable ``batch`` value."""
    bad_labels: int = 0
    """Kept readings whose ``batch`` value was no usable id (the reading still counts)."""

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


class _Absent:
    """Marks a key missing from a reading, which is not the same as JSON ``null``."""

    __slots__ = ()


_ABSENT = _Absent()
_INT = frozenset({int})
_NUMBER = frozenset({int, float})
_QUALITY_TYPES = frozenset({str, int})
_GOOD_QUALITY = frozenset({"good", 0})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def decode_readings(
    payload: bytes,
    *,
    now_ms: int,
    max_future_ms: int = 300_000,
    max_past_ms: int = 30 * 86_400_000,
    max_bytes: int = 1_048_576,
) -> DecodedReadings:
    """Readings of one message, with unusable ones dropped and counted.

    Args:
        payload: the MQTT message body.
        now_ms: the receiving clock, epoch ms; readings are judged against it.
        max_future_ms: how far ahead of ``now_ms`` a reading may be (gateway clock skew).
        max_past_ms: how far behind ``now_ms`` a reading may be (a gateway's backlog).
        max_bytes: longer payloads are rejected before parsing.

    Raises:
        PayloadError: the whole payload is unreadable (``too_large``, ``empty``,
            ``invalid_json``, ``duplicate_key``, ``payload_shape``, ``length_mismatch``).
    """
    size = len(payload)
    if size > max_bytes:
        raise PayloadError("too_large", f"{size} bytes, limit {max_bytes}")
    if size == 0:
        raise PayloadError("empty", "zero-length payload")
    doc = parse_json(payload)
    lo = now_ms - max_past_ms
    hi = now_ms + max_future_ms
    kind = type(doc)
    if kind is dict:
        if "ts" not in doc or "v" not in doc:
            raise PayloadError("payload_shape", "an object needs both 'ts' and 'v' keys")
        ts = doc["ts"]
        v = doc["v"]
        ts_is_list = type(ts) is list
        if ts_is_list or type(v) is list:
            if not (ts_is_list and type(v) is list):
                raise PayloadError("payload_shape", "columnar form needs 'ts' and 'v' both lists")
            q = doc.get("q", _ABSENT)
            if q is _ABSENT:
                return _columnar(ts, v, None, lo, hi)
            if type(q) is not list:
                raise PayloadError("payload_shape", "in the columnar form 'q' must be a list")
            return _columnar(ts, v, q, lo, hi)
        if (
            type(ts) is int
            and (type(v) is float or type(v) is int)
            and -VALUE_LIMIT < v < VALUE_LIMIT
            and "q" not in doc
            and "batch" not in doc
            and lo <= ts <= hi
        ):
            return DecodedReadings(np.array([ts], dtype=np.int64), np.array([v], dtype=np.float64))
        return _collect(((ts, v, doc.get("q", _ABSENT), doc.get("batch", _ABSENT)),), lo, hi)
    if kind is list:
        if not set(map(type, doc)) <= {dict}:
            raise PayloadError("payload_shape", "a batch is a list of {\"ts\", \"v\"} objects")
        return _collect(_batch_fields(doc), lo, hi)
    raise PayloadError("payload_shape", f"a JSON {json_type(doc)} is not a reading")


def _columnar(
    ts: list[object], v: list[object], q: list[object] | None, lo: int, hi: int
) -> DecodedReadings:
    n = len(ts)
    if len(v) != n:
        raise PayloadError("length_mismatch", f"{n} ts but {len(v)} v")
    if q is not None and len(q) != n:
        raise PayloadError("length_mismatch", f"{n} ts but {len(q)} q")
    if (
        set(map(type, ts)) <= _INT
        and set(map(type, v)) <= _NUMBER
        and (q is None or (set(map(type, q)) <= _QUALITY_TYPES and set(q) <= _GOOD_QUALITY))
    ):
        try:
            ts_ms = np.array(ts, dtype=np.int64)
        except OverflowError:  # an integer beyond int64: certainly out of range, judged below
            pass
        else:
            value = np.array(v, dtype=np.float64)
            if (np.abs(value) < VALUE_LIMIT).all():  # false for NaN too
                in_range = (ts_ms >= lo) & (ts_ms <= hi)
                kept = int(np.count_nonzero(in_range))
                if kept == n:
                    return DecodedReadings(ts_ms, value)
                return DecodedReadings(
                    ts_ms[in_range], value[in_range], {"ts_out_of_range": n - kept}
                )
    if q is None:
        return _collect(zip(ts, v, repeat(_ABSENT), repeat(_ABSENT)), lo, hi)
    return _collect(((t, x, y, _ABSENT) for t, x, y in zip(ts, v, q, strict=True)), lo, hi)


def _batch_fields(
    items: list[dict[str, object]],
) -> Iterator[tuple[object, object, object, object]]:
    for item in items:
        yield (item.get("ts", _ABSENT), item.get("v", _ABSENT), item.get("q", _ABSENT),
               item.get("batch", _ABSENT))


def _collect(
    readings: Iterable[tuple[object, object, object, object]], lo: int, hi: int
) -> DecodedReadings:
    """The per-reading path: keep what passes, count the rest by reason."""
    ts_out: list[int] = []
    v_out: list[float] = []
    dropped: dict[str, int] = {}
    labels: list[tuple[int, str]] = []
    bad_labels = 0
    for ts, v, q, batch in readings:
        if (
            q is _ABSENT
            and type(ts) is int
            and (type(v) is float or type(v) is int)
            and -VALUE_LIMIT < v < VALUE_LIMIT
            and lo <= ts <= hi
        ):
            ms, value = ts, v
        else:
            judged = _judge(ts, v, q, lo, hi)
            if isinstance(judged, str):
                dropped[judged] = dropped.get(judged, 0) + 1
                continue
            ms, value = judged
        ts_out.append(ms)
        v_out.append(value)
        if batch is not _ABSENT:
            label = batch_label(batch)
            if label is None:
                bad_labels += 1
            else:
                labels.append((ms, label))
    return DecodedReadings(
        np.array(ts_out, dtype=np.int64), np.array(v_out, dtype=np.float64), dropped,
        tuple(labels), bad_labels,
    )


def batch_label(value: object) -> str | None:
    """A reading's ``batch`` value as a batch id, or ``None`` if it cannot be one: a valid
    name (1-64 characters, no control characters or surrounding white space) or an
    integer (``2291`` is ``"2291"``; a bool is not an integer here)."""
    if type(value) is int:
        text = str(value)
        return text if len(text) <= 64 else None
    if type(value) is str and valid_name(value):
        return value
    return None


def _judge(ts: object, v: object, q: object, lo: int, hi: int) -> tuple[int, float] | str:
    """One reading as ``(ts_ms, value)``, or the reason it is dropped."""
    if q is not _ABSENT and not ((type(q) is str or type(q) is int) and q in _GOOD_QUALITY):
        return "quality"
    if type(v) is float or type(v) is int:
        value = float(v)
        if not abs(value) < VALUE_LIMIT:  # NaN and the infinities included
            return "value_range"
    elif type(v) is str:
        return "value_not_finite" if _names_non_finite(v) else "value_type"
    else:
        return "value_type"
    ms = _epoch_ms(ts)
    if ms is None:
        return "ts_invalid"
    if not lo <= ms <= hi:
        return "ts_out_of_range"
    return ms, value


def judge_reading(ts_ms: int, v: object, lo: int, hi: int) -> tuple[int, float] | str:
    """A reading that has no quality, its time already in ms, as ``(ts_ms, value)`` or
    the reason it is dropped: the rules of every JSON reading, for other decoders."""
    return _judge(ts_ms, v, _ABSENT, lo, hi)


def rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 timestamp with an offset; ``None`` if it is not one."""
    return _rfc3339_ms(text)


def _names_non_finite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _epoch_ms(ts: object) -> int | None:
    if isinstance(ts, bool):  # an int subclass, but never a time
        return None
    if isinstance(ts, int):
        return ts
    if isinstance(ts, float):
        return int(ts) if ts.is_integer() else None
    if isinstance(ts, str):
        return _rfc3339_ms(ts)
    return None


def _rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 timestamp with an offset; ``None`` if it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    date, clock, fraction, offset = m.groups()
    fraction = (fraction or "")[:7]  # datetime keeps microseconds; ms are kept below
    if offset in ("Z", "z"):
        offset = "+00:00"
    try:
        delta = datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}") - _EPOCH
    except (ValueError, OverflowError):
        return None
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
