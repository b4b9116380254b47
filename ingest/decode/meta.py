"""A meter's description from its retained ``meta`` topic (docs/formats.md, meta payloads).

    {"carrier": "electricity", "unit": "kWh", "mode": "counter", "rollover": 1000000,
     "direction": "import", "max_rate": 90000}

Every key is optional and ``null`` counts as absent. The values are checked here, on
their own; whether the carrier and unit exist and convert is the registry's to say.
The same checks apply to a meter described in the config file (``config_tables``),
through ``check_rollover`` and ``check_max_rate``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Literal

from wattline.contract.errors import PayloadError
from wattline.ingest.decode.json_doc import json_type, parse_json

__all__ = ["DIRECTIONS", "MAX_ROLLOVER", "META_KEYS", "METER_MODES", "MeterMeta",
           "check_max_rate", "check_rollover", "decode_meta"]

META_KEYS = ("carrier", "unit", "mode", "rollover", "direction", "max_rate")
METER_MODES = ("counter", "delta")
DIRECTIONS = ("import", "export")
MAX_ROLLOVER = 2.0**64
"""The largest register wrap taken: a 64-bit register's."""


@dataclass(frozen=True, slots=True)
class MeterMeta:
    """A meter's self-description from its retained ``meta`` topic; ``None`` means not given.

    The carrier is not checked against the reference data here: the registry does that.
    """

    carrier: str | None = None
    unit: str | None = None
    mode: Literal["counter", "delta"] | None = None
    rollover: float | None = None
    direction: Literal["import", "export"] | None = None
    max_rate: float | None = None  # per hour, in the meter's unit


def _is_number(x: object) -> bool:
    return type(x) is int or type(x) is float


def check_rollover(value: object) -> str | None:
    """What is wrong with ``value`` as a rollover, or ``None`` if it is one."""
    if not _is_number(value) or not (math.isfinite(value) and 0 < value <= MAX_ROLLOVER):  # type: ignore[arg-type]
        return f"rollover must be a finite number above 0 and at most 2**64, got {value!r:.80}"
    return None


def check_max_rate(value: object) -> str | None:
    """What is wrong with ``value`` as a max_rate, or ``None`` if it is one."""
    if not _is_number(value) or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        return (f"max_rate must be a positive finite number (the most the meter registers "
                f"per hour, in its unit), got {value!r:.80}")
    return None


def decode_meta(payload: bytes, *, max_bytes: int = 65_536) -> MeterMeta:
    """A meter's description from its ``meta`` topic.

    A zero-length payload (a cleared retained message) gives an all-``None``
    ``MeterMeta``, i.e. the defaults. Unknown keys are rejected, since a misspelt
    ``rollover`` would silently turn register wraps into resets.

    Raises:
        PayloadError: ``too_large``, ``invalid_json``, ``duplicate_key``, or
            ``meta_invalid`` naming the key.
    """
    size = len(payload)
    if size > max_bytes:
        raise PayloadError("too_large", f"meta of {size} bytes, limit {max_bytes}")
    if size == 0:
        return MeterMeta()
    doc = parse_json(payload)
    if type(doc) is not dict:
        raise PayloadError("meta_invalid", f"expected a JSON object, got a {json_type(doc)}")
    for key in doc:
        if key not in META_KEYS:
            close = difflib.get_close_matches(key, META_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PayloadError("meta_invalid", f"unknown key {key[:64]!r}{hint}")
    carrier = doc.get("carrier")
    unit = doc.get("unit")
    mode = doc.get("mode")
    rollover = doc.get("rollover")
    direction = doc.get("direction")
    max_rate = doc.get("max_rate")
    for key, text in (("carrier", carrier), ("unit", unit)):
        if text is not None and (type(text) is not str or not text):
            raise PayloadError(
                "meta_invalid", f"{key} must be a non-empty string, got {text!r:.80}"
            )
    if mode is not None and mode not in METER_MODES:
        raise PayloadError("meta_invalid", f"mode must be 'counter' or 'delta', got {mode!r:.80}")
    if direction is not None and direction not in DIRECTIONS:
        raise PayloadError("meta_invalid",
                           f"direction must be 'import' or 'export', got {direction!r:.80}")
    for value, check in ((rollover, check_rollover), (max_rate, check_max_rate)):
        if value is not None:
            problem = check(value)
            if problem is not None:
                raise PayloadError("meta_invalid", problem)
    return MeterMeta(carrier, unit, mode,
                     None if rollover is None else float(rollover),
                     direction,
                     None if max_rate is None else float(max_rate))
