"""Results batches as InfluxDB line protocol: contract section 4's ``energy_intensity``.

    energy_intensity,site=S,line=L,window=15m energy_kgce=..,electricity_kwh=..,
        production_t=..,kgce_per_t=..,kwh_per_t=.. <T in ms>

Tag values are escaped (comma, equals sign, space, backslash); a tag value with a
line break cannot be written in line protocol at all and is refused, as are empty
ones. Floats are written with Python's shortest round-trip repr, so a value read
back is the value written. Null intensity fields (an idle window) are left out of
their point, as the contract says.
"""

from __future__ import annotations

import math
import re

import pyarrow as pa

MEASUREMENT = "energy_intensity"
TAGS = ("site", "line", "window")
FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t")

_TAG_SPECIAL = re.compile(r"([,= \\])")


def escape_tag_value(value: str) -> str:
    """A tag value escaped for line protocol; ValueError for values it cannot carry."""
    if not value:
        raise ValueError("an empty tag value cannot be written in line protocol")
    if "\n" in value or "\r" in value:
        raise ValueError(f"a tag value with a line break cannot be written: {value!r}")
    return _TAG_SPECIAL.sub(r"\\\1", value)


def format_float(value: float) -> str:
    """A finite float as a line-protocol float field value that reads back exactly."""
    if not math.isfinite(value):
        raise ValueError(f"line protocol has no way to write {value!r}")
    return repr(float(value))


def encode_intensity(table: pa.Table) -> bytes:
    """Encode a results batch (``INTENSITY_SCHEMA``) as line protocol, one point per row."""
    if table.num_rows == 0:
        return b""
    columns = table.select([*TAGS, "time_ms", *FIELDS]).to_pydict()
    tag_cache: dict[tuple[str, str, str], str] = {}
    lines: list[str] = []
    for row in range(table.num_rows):
        key = (columns["site"][row], columns["line"][row], columns["window"][row])
        series = tag_cache.get(key)
        if series is None:
            series = MEASUREMENT + "".join(
                f",{tag}={escape_tag_value(value)}" for tag, value in zip(TAGS, key, strict=True)
            )
            tag_cache[key] = series
        fields = ",".join(
            f"{name}={format_float(columns[name][row])}"
            for name in FIELDS
            if columns[name][row] is not None
        )
        lines.append(f"{series} {fields} {columns['time_ms'][row]}")
    return ("\n".join(lines) + "\n").encode()
