"""A reference reader of InfluxDB line protocol, for the tests: how InfluxDB's own parser
reads a point (models/points.go in InfluxDB 1.x, found against 1.6.7 in
tests/e2e/test_influx_v1.py; the line-protocol reference of 2.x says the same).

- A measurement, tag key or tag value runs up to the first ``,`` (or, for a key, ``=``;
  for the last tag value, the space) that does not directly follow a backslash; a
  backslash escapes only the one character after it, and two backslashes are no
  escape of their own.
- Unescaping then drops the backslash of ``\\,``, ``\\=`` and ``\\ `` and keeps every
  other backslash, ``\\\\`` included, as it is.
- A string field value is double-quoted, with ``\\"`` and ``\\\\`` unescaped; an
  integer ends in ``i``; anything else is a float.

Slow and plain on purpose: written from the rules, not from wattline's writer.
"""

from __future__ import annotations

__all__ = ["parse_line", "read_tag_value"]


def _end(text: str, start: int, stops: str) -> int:
    """The first index from ``start`` holding one of ``stops`` not directly after a
    backslash; ``len(text)`` when none."""
    i = start
    while i < len(text):
        if text[i] in stops and (i == 0 or text[i - 1] != "\\"):
            return i
        i += 1
    return len(text)


def _unescape(text: str) -> str:
    for special in ",= ":
        text = text.replace("\\" + special, special)
    return text


def read_tag_value(text: str) -> tuple[str, str]:
    """The tag value InfluxDB reads at the start of ``text``, and what follows it."""
    end = _end(text, 0, ", ")
    return _unescape(text[:end]), text[end:]


def _field_value(text: str, i: int) -> tuple[object, int]:
    """The field value starting at ``text[i]`` and the index after it."""
    if text[i] == '"':
        out, i = [], i + 1
        while text[i] != '"':
            if text[i] == "\\" and text[i + 1] in '"\\':
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), i + 1
    end = i
    while end < len(text) and text[end] not in ", ":
        end += 1
    raw = text[i:end]
    return (int(raw[:-1]) if raw.endswith("i") else float(raw)), end


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int | None]:
    """(measurement, tags, fields, timestamp) of one line, as InfluxDB reads it."""
    i = _end(line, 0, ", ")
    measurement = _unescape(line[:i])
    tags: dict[str, str] = {}
    while line[i] == ",":
        eq = _end(line, i + 1, "=")
        key = _unescape(line[i + 1:eq])
        end = _end(line, eq + 1, ", ")
        if key in tags:
            raise ValueError(f"tag {key!r} twice in {line!r}")
        tags[key] = _unescape(line[eq + 1:end])
        i = end
    fields: dict[str, object] = {}
    i += 1  # the space before the fields
    while True:
        eq = _end(line, i, "=")
        key = _unescape(line[i:eq])
        fields[key], i = _field_value(line, eq + 1)
        if i >= len(line) or line[i] == " ":
            break
        i += 1  # the comma between fields
    stamp = line[i + 1:].strip()
    return measurement, tags, fields, int(stamp) if stamp else None
