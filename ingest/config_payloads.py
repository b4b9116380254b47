"""The config file's ``[[payloads]]`` tables: gateways' own JSON documents mapped to readings.

Each table is checked and its JMESPath expressions compiled here, once, when the config
is loaded; what the mapping does with a document is ``wattline.ingest.decode.mapping``.
A mistake is a ``ConfigError`` keyed ``payloads[N].<key>`` (N counts the file's
``[[payloads]]`` tables from 1), which ``config_file.point_at_file`` turns into the
line of the file.
"""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from wattline.contract.errors import ConfigError
from wattline.contract.topics import KINDS, valid_name
from wattline.ingest.config_tables import unknown_key
from wattline.ingest.decode.mapping import (
    NAME_FIELDS,
    TIME_FORMATS,
    PayloadMapping,
    quality_key,
)

__all__ = ["DEFAULT_GOOD", "PAYLOAD_KEYS", "parse_payloads"]

_EXPRESSIONS = ("readings", "value", "time", "quality", "tag", *NAME_FIELDS)
PAYLOAD_KEYS = ("topic", *_EXPRESSIONS[:3], "time_format", "quality", "good", "tag", "tags",
                *NAME_FIELDS)
DEFAULT_GOOD: tuple[Any, ...] = ("good", 0, True)
"""Quality values that count as good when a mapping gives ``quality`` but not ``good``."""
_CONTEXT = frozenset({"document", "topic", "reading"})


def parse_payloads(value: Any) -> tuple[PayloadMapping, ...]:
    """The ``[[payloads]]`` tables of the file, checked and compiled, in file order."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError("payloads", "expected [[payloads]] tables, one per mapping")
    out: list[PayloadMapping] = []
    seen: dict[str, int] = {}
    for number, spec in enumerate(value, start=1):
        mapping = _mapping(number, spec)
        if mapping.topic in seen:
            raise ConfigError(f"payloads[{number}].topic",
                              f"{mapping.topic!r} is already the topic of [[payloads]] table "
                              f"{seen[mapping.topic]}, which reads every message on it",
                              suggestion="give each mapping its own topic filter")
        seen[mapping.topic] = number
        out.append(mapping)
    return tuple(out)


def _mapping(number: int, spec: dict[str, Any]) -> PayloadMapping:
    where = f"payloads[{number}]"
    for k in spec:
        if k not in PAYLOAD_KEYS:
            raise unknown_key(k, PAYLOAD_KEYS, where=f"{where}.")
    for k in ("topic", "readings", "value", "time"):
        if k not in spec:
            raise ConfigError(f"{where}", f"a mapping needs {k!r}",
                              suggestion="see the [[payloads]] section of docs/formats.md")
    topic = _string(where, "topic", spec["topic"])
    _check_filter(f"{where}.topic", topic)
    time_format = spec.get("time_format", "epoch_ms")
    if time_format not in TIME_FORMATS:
        raise ConfigError(f"{where}.time_format", f"must be {', '.join(TIME_FORMATS[:-1])} or "
                          f"{TIME_FORMATS[-1]}, got {time_format!r}")
    good = _good(where, spec)
    by_tag = "tags" in spec or "tag" in spec
    names_given = [k for k in NAME_FIELDS if k in spec]
    if by_tag:
        if "tag" not in spec or "tags" not in spec:
            missing = "tags" if "tag" in spec else "tag"
            raise ConfigError(f"{where}", f"tag and tags go together; {missing!r} is missing",
                              suggestion="tag finds a reading's tag id, tags maps each id "
                              "to site/line/kind/meter")
        if names_given:
            raise ConfigError(f"{where}.{names_given[0]}", "a mapping names its meters "
                              "either by tag (tag and tags) or by site, line, kind and "
                              "meter, not both")
    elif len(names_given) < len(NAME_FIELDS):
        missing = [k for k in NAME_FIELDS if k not in spec]
        raise ConfigError(f"{where}", f"a mapping needs {', '.join(missing)} (or tag and tags)",
                          suggestion="a constant name is a JMESPath string: 'plant-a'")
    expressions = tuple((k, _string(where, k, spec[k])) for k in _EXPRESSIONS if k in spec)
    compiled = {k: _compile(f"{where}.{k}", text) for k, text in expressions}
    tags = _tags(where, spec["tags"]) if by_tag else ()
    return PayloadMapping(number, topic, expressions, time_format, good, tags, compiled)


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _check_filter(key: str, topic: str) -> None:
    """An MQTT topic filter: ``+`` alone in a level, ``#`` alone and last, no empty level."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if not level:
            raise ConfigError(key, f"{topic!r} has an empty level")
        if level != "+" and "+" in level:
            raise ConfigError(key, f"{topic!r}: + stands alone in its level")
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(key, f"{topic!r}: # stands alone in the last level")
        if "\x00" in level:
            raise ConfigError(key, f"{topic!r} holds a NUL character")
    if levels[0] == "$share":
        raise ConfigError(key, "give the topic without $share/...; mqtt_share_group adds it")


def _compile(key: str, text: str) -> Any:
    try:
        compiled = jmespath.compile(text)
    except JMESPathError as exc:
        column = getattr(exc, "lex_position", None)
        at = f" at column {column + 1}" if isinstance(column, int) else ""
        first = str(exc).splitlines()[0].rstrip(":")
        raise ConfigError(key, f"{text!r} is not a JMESPath expression ({first}{at})") from None
    if not _reads_context(compiled.parsed):
        raise ConfigError(key, f"{text!r} reads none of document, topic and reading, so it "
                          "finds nothing", suggestion=f"did you mean 'reading.{text}' or "
                          f"'document.{text}'? A constant is a quoted string: 'plant-a'")
    return compiled


def _reads_context(node: dict[str, Any]) -> bool:
    """Whether a parsed expression reads the context at all: a field of it, ``@`` (the
    whole context) or a constant; ``v`` alone is a field no context has."""
    kind = node.get("type")
    if kind == "field":
        return node.get("value") in _CONTEXT
    if kind in ("literal", "current"):
        return True
    children = node.get("children", [])
    if kind in ("subexpression", "index_expression", "projection", "value_projection",
                "filter_projection", "flatten", "pipe"):
        return bool(children) and _reads_context(children[0])
    return any(_reads_context(c) for c in children if isinstance(c, dict))


def _good(where: str, spec: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    if "good" in spec and "quality" not in spec:
        raise ConfigError(f"{where}.good", "good needs a quality expression to compare with")
    values = spec.get("good", DEFAULT_GOOD)
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(f"{where}.good", f"expected a list of quality values, got {values!r}")
    keys = [quality_key(v) for v in values]
    if None in keys:
        raise ConfigError(f"{where}.good", f"quality values are strings, numbers or booleans, "
                          f"got {values!r}")
    return frozenset(k for k in keys if k is not None)


def _tags(where: str, table: Any) -> tuple[tuple[str, tuple[str, str, str, str]], ...]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{where}.tags", 'expected a table of tag ids, like '
                          '"Channel1.Device1.Tag1" = "site/line/kind/meter"')
    out = []
    for tag, name in table.items():
        key = f"{where}.tags.{tag!r}"
        parts = name.split("/") if isinstance(name, str) else []
        if len(parts) != 4:
            raise ConfigError(key, f"expected \"site/line/kind/meter\", got {name!r}")
        site, line, kind, meter = parts
        if kind not in KINDS:
            raise ConfigError(key, f"kind {kind!r} is neither energy nor production")
        bad = [n for n in (site, line, meter) if not valid_name(n)]
        if bad:
            raise ConfigError(key, f"{bad[0]!r} is not a name: 1-64 characters, no control "
                              "character, no white space at either end, not . or ..")
        out.append((tag, (site, line, kind, meter)))
    return tuple(out)
