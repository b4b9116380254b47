"""Results batches as InfluxDB line protocol: ``energy_intensity`` (docs/formats.md, outputs).

    energy_intensity,site=S,line=L,window=15m energy_kgce=..,electricity_kwh=..,
        production_t=..,kgce_per_t=..,kwh_per_t=..,co2_direct_t=..,co2_indirect_t=..,
        co2_per_t=.. <T in ms>

One point per row of the batch, in the batch's order, each ending in a newline; the
timestamp is the tick in epoch milliseconds, so the write must say ``precision=ms``.

- Tag values have their commas, equals signs and spaces escaped with a backslash, and
  nothing else: InfluxDB's parser (1.x, proven against 1.6.7 in tests/e2e; 2.x and 3.x
  follow the same line-protocol rules) reads a backslash as an escape only before a
  comma, an equals sign or a space, and keeps any other backslash, ``\\\\`` too, as it
  is. So backslashes are written as they are, and a value ending in one, which no
  InfluxDB can read back (its backslash would escape the separator after it), is
  refused (``unwritable_rows`` finds those rows, so that a writer refuses them alone).
  VictoriaMetrics reads ``\\\\`` as one backslash: a name holding a backslash directly
  before another, or before a comma, equals sign or space, reads back changed there
  (docs/formats.md). A tag value with a
  line break (``\\n`` or ``\\r``) cannot be written in line protocol at all, and an
  empty one would be dropped by the server, so both are refused with ``ValueError``
  rather than changed: a tag is a series' identity, and a silently altered one would
  be a different series. The topic parser never lets
  such names through (docs/formats.md, topics); this is the last guard.
- Float fields are written as the shortest text that reads back to the same double
  (Arrow's cast to string: ``0.1``, ``1``, ``1e+20``), so a value read back is bit
  for bit the value written. NaN and infinities have no line
  protocol form and are refused with ``ValueError``.
- Null intensity fields (an idle window) are left out of their point, as the
  contract says; the three sums are always written, and so are the two CO2 sums
  (floats, like every other field) unless the batch has none (a spooled batch
  from before wattline recorded carbon: left out, never written as another type).

``encode_alerts`` writes the other measurement of docs/formats.md, one point per alert
start or end, with ``state`` as an integer, ``value`` and ``threshold`` left out
when null, and ``message`` as a string field (double quotes and backslashes escaped)::

    energy_alert,site=S,line=L,rule=R state=1i,value=..,threshold=..,message=".." <ms>

The encoding works a column at a time with Arrow compute.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MEASUREMENT = "energy_intensity"
TAGS = ("site", "line", "window")
REQUIRED_FIELDS = ("energy_kgce", "electricity_kwh", "production_t")
OPTIONAL_FIELDS = ("kgce_per_t", "kwh_per_t", "co2_direct_t", "co2_indirect_t", "co2_per_t")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

_TAG_SPECIAL = re.compile(r"([,= ])")  # the same pattern serves Python re and Arrow's RE2
UNWRITABLE = "InfluxDB cannot read back a tag value ending in a backslash"


def escape_tag_value(value: str) -> str:
    """One tag value escaped for line protocol; ``ValueError`` for one it cannot carry."""
    _check_tag_value(value)
    return _TAG_SPECIAL.sub(r"\\\1", value)


def format_float(value: float) -> str:
    """A finite float as a line-protocol field value that reads back exactly."""
    if not math.isfinite(value):
        raise ValueError(f"line protocol has no way to write {value!r}")
    return repr(float(value))


def encode_intensity(table: pa.Table) -> bytes:
    """A results batch (``INTENSITY_SCHEMA`` columns) as one line-protocol body.

    Raises ``ValueError`` naming the column and value for a tag value with a line
    break, an empty tag value, a null tag or sum, or a non-finite field.
    """
    if table.num_rows == 0:
        return b""
    parts: list[pa.Array | str] = [MEASUREMENT]
    for tag in TAGS:
        parts += [f",{tag}=", _escaped_tags(tag, table.column(tag))]
    for i, name in enumerate(FIELDS):
        if name in OPTIONAL_FIELDS and name not in table.column_names:
            continue  # a batch written before the field existed
        parts.append(_field_texts(name, table.column(name), first=i == 0))
    parts += [" ", pc.cast(_non_null("time_ms", table.column("time_ms")), pa.string()), "\n"]
    # A null field text is an idle window's intensity: left out of its point.
    points = pc.binary_join_element_wise(*parts, "", null_handling="replace",
                                         null_replacement="")
    return _concatenated(points)


def _check_tag_value(value: str) -> None:
    if not value:
        raise ValueError("an empty tag value cannot be written in line protocol")
    if "\n" in value or "\r" in value:
        raise ValueError(f"a tag value with a line break cannot be written: {value!r}")
    if value.endswith("\\"):
        raise ValueError(f"{UNWRITABLE}: {value!r}")


def unwritable_rows(table: pa.Table, tags: tuple[str, ...]) -> dict[int, str]:
    """The rows with a tag value InfluxDB cannot read back (one ending in a backslash),
    each with why, so that a writer can send the others and refuse these alone."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for tag in tags:
        # Judged once per distinct value (a batch repeats a few names thousands of times).
        values = pc.dictionary_encode(table.column(tag).combine_chunks().cast(pa.string()))
        ends = pc.match_substring_regex(values.dictionary, r"\\$")
        if not pc.any(ends).as_py():
            continue
        ends = ends.take(values.indices)
        bad |= np.asarray(ends.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    out = {}
    for row in np.flatnonzero(bad).tolist():
        values = {tag: table.column(tag)[row].as_py() for tag in tags}
        named = ", ".join(f"{tag}={value!r}" for tag, value in values.items()
                          if str(value).endswith("\\"))
        out[int(row)] = f"{UNWRITABLE} ({named})"
    return out


def _non_null(name: str, column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks()
    if array.null_count:
        raise ValueError(f"column {name!r} has {array.null_count} null value(s); every point "
                         f"needs its {name}")
    return array


def _escaped_tags(tag: str, column: pa.ChunkedArray) -> pa.Array:
    # Checked and escaped once per distinct value, then spread over the rows: a batch
    # repeats a few site, line and window names thousands of times (3.5x faster).
    encoded = pc.dictionary_encode(_non_null(tag, column).cast(pa.string()))
    values = encoded.dictionary
    bad = pc.or_(pc.equal(pc.utf8_length(values), 0),
                 pc.match_substring_regex(values, r"[\r\n]|\\$"))
    if pc.any(bad).as_py():
        first = values.filter(bad)[0].as_py()
        try:
            _check_tag_value(first)
        except ValueError as exc:
            raise ValueError(f"tag {tag!r}: {exc}") from None
    return pc.replace_substring_regex(values, _TAG_SPECIAL.pattern, r"\\\1").take(
        encoded.indices)


def _field_texts(name: str, column: pa.ChunkedArray, *, first: bool) -> pa.Array:
    """``name=value`` per row (with a leading space or comma), or null where the value is
    (the point's join leaves those out)."""
    array = column.combine_chunks() if name in OPTIONAL_FIELDS else _non_null(name, column)
    values = array.cast(pa.float64())
    finite = pc.is_finite(values)  # null where the value is null
    if pc.any(pc.invert(finite)).as_py():
        bad = float(values.filter(pc.invert(finite))[0].as_py())
        raise ValueError(f"field {name!r}: line protocol has no way to write {bad!r}")
    lead = " " if first else ","
    # Arrow writes each double as the shortest text that reads back to the same bits
    # (checked in tests/property/test_line_protocol.py), eight times faster than repr per value.
    return pc.binary_join_element_wise(f"{lead}{name}=", pc.cast(values, pa.string()), "")


def _concatenated(points: pa.Array) -> bytes:
    """The bytes of a string array's values, back to back (they are already lines)."""
    offsets = np.frombuffer(points.buffers()[1], dtype=np.int32)
    start, end = offsets[points.offset], offsets[points.offset + len(points)]
    return points.buffers()[2].slice(int(start), int(end - start)).to_pybytes()


PERIOD_MEASUREMENT = "energy_period"
PERIOD_TAGS = ("site", "line", "period")


def encode_periods(table: pa.Table) -> bytes:
    """Period rows (``wattline.ingest.periods_stage.PERIOD_SCHEMA``) as ``energy_period``
    points at each period's start: the sums and ratios as floats (ratios left out when
    idle), ``final``, ``late_readings`` and ``grade`` as integers, ``gap_to_benchmark`` a
    float (both left out where the row has none). Few rows: built row by row."""
    lines = []
    for row in table.to_pylist():
        tags = ",".join(f"{tag}={escape_tag_value(row[tag])}" for tag in PERIOD_TAGS)
        fields = [f"{name}={format_float(row[name])}" for name in FIELDS
                  if row.get(name) is not None]
        fields += [f"final={int(row['final'])}i", f"late_readings={int(row['late_readings'])}i"]
        if row.get("grade") is not None:
            fields.append(f"grade={int(row['grade'])}i")
        if row.get("gap_to_benchmark") is not None:
            fields.append(f"gap_to_benchmark={format_float(row['gap_to_benchmark'])}")
        lines.append(f"{PERIOD_MEASUREMENT},{tags} {','.join(fields)} {int(row['time_ms'])}\n")
    return "".join(lines).encode()


ALERT_MEASUREMENT = "energy_alert"
ALERT_TAGS = ("site", "line", "rule")
ALERT_FIELDS = ("state", "value", "threshold", "message")


def escape_string_field(value: str) -> str:
    """A string field value, quoted, with its double quotes and backslashes escaped."""
    if "\n" in value or "\r" in value:
        value = value.replace("\r", " ").replace("\n", " ")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_alerts(table: pa.Table) -> bytes:
    """Alert starts and ends (``wattline.contract.schemas.ALERT_SCHEMA``) as line protocol.

    Alerts are few (a start and an end per episode), so this goes row by row.
    """
    lines = []
    for row in table.to_pylist():
        tags = ",".join(f"{tag}={escape_tag_value(row[tag])}" for tag in ALERT_TAGS)
        fields = [f"state={int(row['state'])}i"]
        for name in ("value", "threshold"):
            if row[name] is not None:
                fields.append(f"{name}={format_float(row[name])}")
        fields.append(f"message={escape_string_field(row['message'])}")
        lines.append(f"{ALERT_MEASUREMENT},{tags} {','.join(fields)} {int(row['time_ms'])}\n")
    return "".join(lines).encode()


BATCH_MEASUREMENT = "energy_batch"
BATCH_TAGS = ("site", "line")
BATCH_FIELDS = ("energy_kgce", "electricity_kwh", "production_t", "kgce_per_t", "kwh_per_t",
                "duration_s", "co2_direct_t", "co2_indirect_t", "co2_per_t")


def encode_batches(table: pa.Table) -> bytes:
    """Closed batches (``wattline.contract.schemas.BATCH_SCHEMA``) as ``energy_batch`` line
    protocol, stamped with each batch's close.

    Batches are few (one per heat or tap), so this goes row by row.
    """
    lines = []
    for row in table.to_pylist():
        tags = ",".join(f"{tag}={escape_tag_value(row[tag])}" for tag in BATCH_TAGS)
        fields = [f"batch={escape_string_field(row['batch'])}"]
        fields += [f"{name}={format_float(row[name])}" for name in BATCH_FIELDS
                   if row.get(name) is not None]
        lines.append(f"{BATCH_MEASUREMENT},{tags} {','.join(fields)} {int(row['time_ms'])}\n")
    return "".join(lines).encode()
