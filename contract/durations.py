"""Durations as the config, the topics and the simulators spell them: ``500ms``, ``10s``,
``15m``, ``1h``, ``1d``; a bare number counts seconds. Parsed to integer milliseconds."""

from __future__ import annotations

import re

from wattline.contract.errors import ConfigError

__all__ = ["format_duration", "parse_duration_ms"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str | float, key: str = "duration") -> int:
    """``"10s"`` -> 10000; bare numbers are seconds."""
    if isinstance(text, bool):
        raise ConfigError(key, f"expected a duration like 10s, 15m, 1h, got {text!r}")
    if isinstance(text, (int, float)):
        return round(float(text) * 1000)
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(
            key, f"expected a duration like 500ms, 10s, 15m, 1h or 1d, got {text!r}"
        )
    return round(float(m.group(1)) * _UNIT_MS[m.group(2)])


def format_duration(ms: int) -> str:
    """The shortest exact spelling: 900000 -> ``15m``."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0 and ms >= _UNIT_MS[unit]:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
