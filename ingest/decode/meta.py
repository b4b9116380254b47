"""A meter's description from its retained ``meta`` topic (docs/formats.md, meta payloads).

    {"carrier": "electricity", "unit": "kWh", "mode": "counter", "rollover": 1000000,
     "direction": "import", "max_rate": 90000}
    {"carrier": "raw_coal", "unit": "t", "ncv_kj_per_unit": 22500, "tco2_per_unit": 0.00205}

Every key is optional and ``null`` counts as absent. The values are checked here, on
their own; whether the carrier and unit exist and convert is the registry's to say.
The same checks apply to a meter described in the config file (``config_tables``),
through ``check_rollover``, ``check_max_rate``, ``check_ncv`` and ``check_tco2_per_unit``.
``ncv_kj_per_unit`` (a measured net calorific value) and ``tco2_per_unit`` (a measured
CO2 factor) are per unit of the carrier as the reference data gives it (kg, m3, kWh),
whatever unit the meter counts in.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Literal

from wattline.contract.errors import PayloadError
from wattline.ingest.decode.json_doc import json_type, parse_json

__all__ = ["DIRECTIONS", "MAX_ROLLOVER", "META_KEYS", "METER_MODES", "MeterMeta",
           "check_max_rate", "check_ncv", "check_rollover", "check_tco2_per_unit", "decode_meta"]

META_KEYS = ("carrier", "unit", "mode", "rollover", "direction", "max_rate", "ncv_kj_per_unit",
             "tco2_per_unit")
MAX_NCV_KJ = 200_000.0
"""kJ per unit: above any fuel's calorific value per kg or m3 (hydrogen: 120,000 kJ/kg)."""
MAX_TCO2_PER_UNIT = 0.01
"""t CO2 per unit: above any carrier's per kg, m3 or kWh (a kg of fuel oil: 0.0032 t)."""
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
    ncv_kj_per_unit: float | None = None  # measured net calorific value per carrier unit
    tco2_per_unit: float | None = None  # measured CO2 factor, t per carrier unit


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


def check_ncv(value: object) -> str | None:
    """What is wrong with ``value`` as a measured calorific value, or ``None``."""
    if not _is_number(value) or not (math.isfinite(value) and 0 < value <= MAX_NCV_KJ):  # type: ignore[arg-type]
        return (f"ncv_kj_per_unit must be the net calorific value in kJ per unit of the "
                f"carrier (kJ/kg, kJ/m3), above 0 and at most {MAX_NCV_KJ:,.0f}, got "
                f"{value!r:.80}")
    return None


def check_tco2_per_unit(value: object) -> str | None:
    """What is wrong with ``value`` as a measured CO2 factor, or ``None``."""
    if not _is_number(value) or not (math.isfinite(value) and 0 <= value <= MAX_TCO2_PER_UNIT):  # type: ignore[arg-type]
        return (f"tco2_per_unit must be tonnes of CO2 per unit of the carrier (t/kg, t/m3, "
                f"t/kWh), from 0 to {MAX_TCO2_PER_UNIT:g}, got {value!r:.80}")
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
    ncv = doc.get("ncv_kj_per_unit")
    tco2 = doc.get("tco2_per_unit")
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
    for value, check in ((rollover, check_rollover), (max_rate, check_max_rate),
                         (ncv, check_ncv), (tco2, check_tco2_per_unit)):
        if value is not None:
            problem = check(value)
            if problem is not None:
                raise PayloadError("meta_invalid", problem)
    return MeterMeta(carrier, unit, mode,
                     None if rollover is None else float(rollover),
                     direction,
                     None if max_rate is None else float(max_rate),
                     None if ncv is None else float(ncv),
                     None if tco2 is None else float(tco2))
