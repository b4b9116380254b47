"""Gateways' own JSON documents -> readings, by a ``[[payloads]]`` mapping (docs/formats.md).

A mapping names an MQTT topic filter and JMESPath expressions, compiled once when the
config is loaded (``wattline.ingest.config_payloads``). Every expression is evaluated on
one small object, the *context*::

    {"document": <the JSON document>, "topic": ["level", ...], "reading": <one reading>}

``readings`` (evaluated without ``reading``) finds the list of readings in the
document; then, for each of them, ``value``, ``time``, the optional ``quality`` and the
names (``site``, ``line``, ``kind`` and ``meter``, or a ``tag`` looked up in the
mapping's ``tags`` table) are evaluated with ``reading`` set to it. So a name can come
from the document (``document.site``), a topic level (``topic[1]``), the reading
(``reading.meter``) or be a constant (``'plant-a'``).

What a mapping cannot read is counted, never guessed:

- ``readings`` giving anything but a list: the whole document is refused
  (``mapping``, a payload error);
- a reading whose value, time or a name the expressions do not find (``null``), whose
  name is not a string, or whose tag is not in the table: that reading is dropped
  (``mapping``); one with a quality outside ``good``, ``quality``;
- then the contract's rules for every JSON reading: the value bounds (``value_type``,
  ``value_not_finite``, ``value_range``), the time's format (``ts_invalid``) and range
  (``ts_out_of_range``); and the name rule: a reading whose site, line or meter is not
  a name, or whose kind is not ``energy`` or ``production``, is refused like a message
  on such a topic (``topic_name``, ``topic_kind``, once per name and document).

Lifecycle: the decoder builds one ``PayloadMapper`` from the settings and calls
``match`` and ``read`` from the pipeline's thread only; its caches are not locked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

from wattline.contract.errors import PayloadError
from wattline.contract.topics import KINDS, valid_name
from wattline.ingest.decode.json_doc import json_type, parse_json
from wattline.ingest.decode.payloads import judge_reading, rfc3339_ms

__all__ = ["NAME_FIELDS", "TIME_FORMATS", "MappedReadings", "PayloadMapper", "PayloadMapping",
           "filter_matches"]

TIME_FORMATS = ("epoch_ms", "epoch_s", "rfc3339")
"""How a mapping's ``time`` is written: integer (or integral) epoch milliseconds, epoch
seconds (a fraction allowed), or an RFC 3339 / ISO 8601 string with an offset."""
NAME_FIELDS = ("site", "line", "kind", "meter")
MAX_CACHED_TOPICS = 100_000
MeterName = tuple[str, str, str, str]


@dataclass(frozen=True)
class PayloadMapping:
    """One ``[[payloads]]`` table, validated, its expressions compiled.

    ``number`` is its place among the file's ``[[payloads]]`` tables (from 1);
    ``expressions`` holds the text of each expression by key, and ``compiled`` the same
    compiled (left out of equality, so a reload compares what the file says).
    """

    number: int
    topic: str
    expressions: tuple[tuple[str, str], ...]
    time_format: str = "epoch_ms"
    good: frozenset[tuple[str, Any]] = frozenset()
    tags: tuple[tuple[str, MeterName], ...] = ()
    compiled: dict[str, ParsedResult] = field(default_factory=dict, compare=False, repr=False)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.topic.split("/"))


def quality_key(value: Any) -> tuple[str, Any] | None:
    """How a quality value is compared with ``good``: by JSON type and value (``true`` is
    not ``1``; ``192`` is ``192.0``); None for values that are never good."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    return None


def filter_matches(levels: tuple[str, ...], topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter split into ``levels`` (``+`` is one
    level, a final ``#`` the rest, none included); a ``$`` topic matches no wildcard
    at its first level, as brokers deliver them."""
    parts = topic.split("/")
    if parts[0].startswith("$") and levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(parts) == len(levels)


@dataclass(frozen=True, slots=True)
class MappedReadings:
    """One mapped document's usable readings, in runs of one meter in time order, and
    what was dropped: ``received`` counts every reading found, ``dropped`` those lost
    by reason, ``refused`` the (reason, detail) of names that are no names."""

    parts: list[tuple[MeterName, np.ndarray, np.ndarray]]
    received: int
    dropped: dict[str, int]
    refused: list[tuple[str, str]]


class PayloadMapper:
    """The mappings of the config: which topic is read by which, and the reading itself."""

    def __init__(self, mappings: tuple[PayloadMapping, ...]) -> None:
        self.mappings = mappings
        self._of_topic: dict[str, PayloadMapping | None] = {}
        self._tags = {m.number: dict(m.tags) for m in mappings}
        self._eval = {m.number: {k: evaluator(e) for k, e in m.compiled.items()}
                      for m in mappings}
        self._name_problems: dict[MeterName, str | None] = {}

    def match(self, topic: str) -> PayloadMapping | None:
        """The first mapping whose filter ``topic`` matches, or None (remembered)."""
        cache = self._of_topic
        if topic in cache:
            return cache[topic]
        found = next((m for m in self.mappings if filter_matches(m.levels, topic)), None)
        if len(cache) >= MAX_CACHED_TOPICS:
            cache.clear()
        cache[topic] = found
        return found

    def read(self, mapping: PayloadMapping, topic: str, payload: bytes, *, now_ms: int,
             max_future_ms: int, max_past_ms: int, max_bytes: int) -> MappedReadings:
        """The readings ``mapping`` finds in one message on ``topic``.

        Raises:
            PayloadError: the payload is unreadable (``too_large``, ``empty``,
                ``invalid_json``, ``duplicate_key``) or does not hold what the
                mapping's ``readings`` expects (``mapping``).
        """
        size = len(payload)
        if size > max_bytes:
            raise PayloadError("too_large", f"{size} bytes, limit {max_bytes}")
        if size == 0:
            raise PayloadError("empty", "zero-length payload")
        context: dict[str, Any] = {"document": parse_json(payload), "topic": topic.split("/")}
        compiled = self._eval[mapping.number]
        items = compiled["readings"](context)
        if type(items) is not list:
            raise PayloadError("mapping", f"readings {dict(mapping.expressions)['readings']!r} "
                               f"of [[payloads]] table {mapping.number} ({mapping.topic}) found "
                               f"{json_type(items) if items is not None else 'nothing'}, not "
                               "a list")
        lo, hi = now_ms - max_past_ms, now_ms + max_future_ms
        value_expr, time_expr = compiled["value"], compiled["time"]
        quality_expr = compiled.get("quality")
        tag_expr = compiled.get("tag")
        tags = self._tags[mapping.number]
        name_exprs = [compiled[k] for k in NAME_FIELDS] if tag_expr is None else []
        to_ms = _TO_MS[mapping.time_format]
        good = mapping.good
        kept: list[tuple[int, float, MeterName]] = []
        judged_names = self._name_problems
        if len(judged_names) >= MAX_CACHED_TOPICS:
            judged_names.clear()
        refused: dict[MeterName, str] = {}
        dropped: dict[str, int] = {}
        for item in items:
            context["reading"] = item
            name: MeterName | None
            if tag_expr is not None:
                tag = tag_expr(context)
                name = tags.get(tag) if type(tag) is str else None
            else:
                found = [e(context) for e in name_exprs]
                name = (found[0], found[1], found[2], found[3]) \
                    if all(type(n) is str for n in found) else None
            reason: str | None = None
            if name is None:
                reason = "mapping"
            else:
                problem = judged_names.get(name, "")
                if problem == "":
                    problem = judged_names[name] = _name_problem(name)
                if problem is not None:
                    refused.setdefault(name, problem)
                    continue  # like a message on a topic that names no meter: not a reading
            if reason is None and quality_expr is not None:
                q = quality_expr(context)
                if q is not None and quality_key(q) not in good:
                    reason = "quality"
            if reason is None:
                v = value_expr(context)
                t = time_expr(context)
                if v is None or t is None:
                    reason = "mapping"
                else:
                    ms = to_ms(t)
                    # the value is judged before the time, as in JSON (lo: a valid time)
                    judged = judge_reading(lo if ms is None else ms, v, lo, hi)
                    if ms is None and type(judged) is not str:
                        judged = "ts_invalid"
                    if type(judged) is str:
                        reason = judged
                    else:
                        assert name is not None and not isinstance(judged, str)
                        kept.append((judged[0], judged[1], name))
                        continue
            dropped[reason] = dropped.get(reason, 0) + 1
        received = len(kept) + sum(dropped.values())
        return MappedReadings(_runs(kept), received, dropped,
                              [(r, f"{r} {'/'.join(n)[:200]!r} in a mapped document")
                               for n, r in refused.items()])


def _runs(kept: list[tuple[int, float, MeterName]]
          ) -> list[tuple[MeterName, np.ndarray, np.ndarray]]:
    """The readings in time order (stable: a document's order among equal times), cut
    into runs of one meter. The kernels take each run as one message, judged against
    its line's watermark before it, so a document holding several meters' readings
    over a span longer than the allowed lateness loses none of them to lateness."""
    kept.sort(key=lambda r: r[0])
    parts = []
    start = 0
    for i in range(1, len(kept) + 1):
        if i == len(kept) or kept[i][2] != kept[start][2]:
            run = kept[start:i]
            parts.append((run[0][2], np.array([r[0] for r in run], dtype=np.int64),
                          np.array([r[1] for r in run], dtype=np.float64)))
            start = i
    return parts


def _name_problem(name: MeterName) -> str | None:
    """The topic error a mapped name would be on a topic, or None for a good name."""
    site, line, kind, meter = name
    if not (valid_name(site) and valid_name(line) and valid_name(meter)):
        return "topic_name"
    if kind not in KINDS:
        return "topic_kind"
    return None


def evaluator(expression: ParsedResult) -> Callable[[Any], Any]:
    """``expression`` as a function of the context. A JMESPath error (a function given
    the wrong type) finds nothing, like a missing key. A plain path of fields
    (``reading.v``, most of a mapping) is a few dictionary lookups, with JMESPath's
    meaning: a field of anything but an object is nothing."""
    keys = _field_path(expression.parsed)
    if keys is not None:
        def path(value: Any) -> Any:
            for key in keys:
                if type(value) is not dict:
                    return None
                value = value.get(key)
            return value
        return path
    interpreter = TreeInterpreter()  # keeps no state between calls
    parsed = expression.parsed

    def search(value: Any) -> Any:
        try:
            return interpreter.visit(parsed, value)
        except JMESPathError:
            return None
    return search


def _field_path(node: dict[str, Any]) -> tuple[str, ...] | None:
    if node.get("type") == "field":
        return (node["value"],)
    if node.get("type") == "subexpression":
        parts = [_field_path(c) for c in node["children"]]
        if all(p is not None for p in parts):
            return tuple(k for p in parts if p is not None for k in p)
    return None


def _epoch_ms(t: Any) -> int | None:
    if type(t) is int:
        return t
    if type(t) is float and t.is_integer():
        return int(t)
    return None


def _epoch_s(t: Any) -> int | None:
    if (type(t) is int or type(t) is float) and math.isfinite(t):
        return round(t * 1000)
    return None


def _rfc3339(t: Any) -> int | None:
    return rfc3339_ms(t) if type(t) is str else None


_TO_MS = {"epoch_ms": _epoch_ms, "epoch_s": _epoch_s, "rfc3339": _rfc3339}
