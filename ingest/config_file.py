"""The TOML config file: its values, and the line each key is set on (for error messages)."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from wattline.contract.errors import ConfigError

__all__ = ["line_of", "line_of_array_key", "line_of_table_key", "load_toml", "point_at_file"]


def load_toml(path: str) -> tuple[dict[str, Any], str]:
    """The file's top-level values, flag-style spellings (``mqtt-url``) read as
    ``mqtt_url``, and its text; a ``ConfigError`` names the file and line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            "config", f"{path} is not valid TOML: {exc}", line=int(m.group(1)) if m else None
        ) from None
    return {k.replace("-", "_"): v for k, v in values.items()}, text


def line_of(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` is set in a TOML text, for error messages."""
    pattern = re.compile(rf"^\s*\[?\s*\"?{re.escape(key)}\"?\s*[=\].]")
    alt = key.replace("_", "-")
    pattern_alt = re.compile(rf"^\s*\[?\s*\"?{re.escape(alt)}\"?\s*[=\].]")
    for n, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line) or pattern_alt.match(line):
            return n
    return None


_ARRAY_KEY = re.compile(r"(\w+)\[(\d+)\](?:\.(.+))?")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]*?)\s*\]\]?")


def line_of_array_key(text: str, table: str, number: int, key: str | None) -> int | None:
    """The line of ``key`` (dotted, its last part a key, quoted or bare) in the
    ``number``-th ``[[table]]`` of a TOML text (from 1), or of that header itself."""
    header = None
    seen = 0
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        m = _HEADER.match(line)
        if m is None:
            continue
        name = m.group(1).replace('"', "")
        if line.lstrip().startswith("[[") and name == table:
            seen += 1
            if seen == number:
                header = n
            elif seen > number:
                break
        elif header is not None and not name.startswith(f"{table}."):
            break
    if header is None or key is None:
        return header
    if key[-1] in "'\"":  # a quoted key, which may hold dots
        last = key[key.rindex(key[-1], 0, len(key) - 1) + 1:-1]
    else:
        last = key.rsplit(".", 1)[-1]
    pattern = re.compile(rf"^\s*[\"']?{re.escape(last)}[\"']?\s*=")
    for n in range(header + 1, len(lines) + 1):
        m = _HEADER.match(lines[n - 1])
        if m is not None and not m.group(1).replace('"', "").startswith(f"{table}."):
            break
        if pattern.match(lines[n - 1]):
            return n
    return header


_TABLE_KEY = re.compile(r"""(\w+)\.('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?:\..+)?""")


def line_of_table_key(text: str, table: str, name: str) -> int | None:
    """The line of the entry ``name`` of the table ``table``: its own header
    (``[lines."plant-a/eaf-1"]``) or its key inside ``[table]`` (``"Plant A" = ...``)."""
    spellings = [json.dumps(name, ensure_ascii=False), f"'{name}'"]
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        spellings.append(name)
    lines = text.splitlines()
    keyed = "|".join(re.escape(k) for k in spellings)
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\.\s*(?:{keyed})\s*[\].]")
    entry = re.compile(rf"^\s*(?:{keyed})\s*=")
    inside = False
    for n, line in enumerate(lines, start=1):
        if header.match(line):
            return n
        m = _HEADER.match(line)
        if m is not None:
            inside = m.group(1).strip() == table
        elif inside and entry.match(line):
            return n
    return None


def point_at_file(err: ConfigError, path: str) -> None:
    """Make a validation error name ``path`` and the line its key is set on (a key of
    an array of tables, ``payloads[2].value``, in the 2nd ``[[payloads]]``)."""
    if err.line is None:
        text = Path(path).read_text(encoding="utf-8")
        m = _ARRAY_KEY.fullmatch(err.key)
        keyed = _TABLE_KEY.fullmatch(err.key)
        if m is not None:
            err.line = line_of_array_key(text, m.group(1), int(m.group(2)), m.group(3))
        elif keyed is not None:
            err.line = (line_of_table_key(text, keyed.group(1), ast.literal_eval(keyed.group(2)))
                        or line_of(text, keyed.group(1)))
        else:
            err.line = line_of(text, err.key.split(".")[0])
    err.path = path
