"""The TOML config file: its values, and the line each key is set on (for error messages)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from wattline.contract.errors import ConfigError

__all__ = ["line_of", "load_toml", "point_at_file"]


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


def point_at_file(err: ConfigError, path: str) -> None:
    """Make a validation error name ``path`` and the line its key is set on."""
    if err.line is None:
        text = Path(path).read_text(encoding="utf-8")
        err.line = line_of(text, err.key.split(".")[0])
    err.path = path
