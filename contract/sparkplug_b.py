"""The Sparkplug B payload (Eclipse Sparkplug 3.0, "Payloads"), as protobuf messages.

The schema is declared below, field by field, and turned into message classes by
the ``protobuf`` runtime (a descriptor built here, so no ``protoc`` and no generated
code are needed, and any protobuf 5 or later decodes it with its C parser). It is
the specification's proto2 schema: the same message names, field numbers, types
and ``oneof value`` groups, so its bytes are those of every other Sparkplug B
implementation. Extension ranges are declared too; unknown fields (an extension a
vendor added) are kept by protobuf and ignored here.

``Payload`` is the top-level message class (``Payload.FromString(data)``,
``payload.SerializeToString()``). ``encode`` builds a payload from plain values,
for the simulators, the rebirth command and the tests; ``DataType`` names the
specification's datatype numbers.

The classes live in a descriptor pool of their own, so another Sparkplug library
loaded in the same process (with its own generated module) does not clash.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["NUMERIC_FIELDS", "QUALITY_GOOD", "DataType", "Metric", "Payload", "encode",
           "metric_value", "schema_fields"]


class DataType(enum.IntEnum):
    """Datatype numbers of a metric (``Metric.datatype``), from the specification."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSETLIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


# --- the schema ------------------------------------------------------------------------
# Each message: (name, fields, nested messages, first extension number or None).
# Each field: (number, name, type, label), where a type is a scalar name or the dotted
# name of a message below Payload; label "?" optional, "*" repeated, "|" a member of the
# message's one ``oneof value``.

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_LABELS = {"?": _F.LABEL_OPTIONAL, "*": _F.LABEL_REPEATED, "|": _F.LABEL_OPTIONAL}

_Message = tuple[str, list[tuple[int, str, str, str]], list[Any], int | None]


def _extension_only(name: str) -> _Message:
    return (name, [], [], 1)


_SCHEMA: _Message = ("Payload", [
    (1, "timestamp", "uint64", "?"),   # when the message was sent, ms since the epoch
    (2, "metrics", "Metric", "*"),
    (3, "seq", "uint64", "?"),         # 0-255, per edge node
    (4, "uuid", "string", "?"),
    (5, "body", "bytes", "?"),
], [
    ("Template", [
        (1, "version", "string", "?"),
        (2, "metrics", "Metric", "*"),
        (3, "parameters", "Template.Parameter", "*"),
        (4, "template_ref", "string", "?"),
        (5, "is_definition", "bool", "?"),
    ], [
        ("Parameter", [
            (1, "name", "string", "?"),
            (2, "type", "uint32", "?"),
            (3, "int_value", "uint32", "|"),
            (4, "long_value", "uint64", "|"),
            (5, "float_value", "float", "|"),
            (6, "double_value", "double", "|"),
            (7, "boolean_value", "bool", "|"),
            (8, "string_value", "string", "|"),
            (9, "extension_value", "Template.Parameter.ParameterValueExtension", "|"),
        ], [_extension_only("ParameterValueExtension")], None),
    ], 6),
    ("DataSet", [
        (1, "num_of_columns", "uint64", "?"),
        (2, "columns", "string", "*"),
        (3, "types", "uint32", "*"),
        (4, "rows", "DataSet.Row", "*"),
    ], [
        ("DataSetValue", [
            (1, "int_value", "uint32", "|"),
            (2, "long_value", "uint64", "|"),
            (3, "float_value", "float", "|"),
            (4, "double_value", "double", "|"),
            (5, "boolean_value", "bool", "|"),
            (6, "string_value", "string", "|"),
            (7, "extension_value", "DataSet.DataSetValue.DataSetValueExtension", "|"),
        ], [_extension_only("DataSetValueExtension")], None),
        ("Row", [(1, "elements", "DataSet.DataSetValue", "*")], [], 2),
    ], 5),
    ("PropertyValue", [
        (1, "type", "uint32", "?"),
        (2, "is_null", "bool", "?"),
        (3, "int_value", "uint32", "|"),
        (4, "long_value", "uint64", "|"),
        (5, "float_value", "float", "|"),
        (6, "double_value", "double", "|"),
        (7, "boolean_value", "bool", "|"),
        (8, "string_value", "string", "|"),
        (9, "propertyset_value", "PropertySet", "|"),
        (10, "propertysets_value", "PropertySetList", "|"),
        (11, "extension_value", "PropertyValue.PropertyValueExtension", "|"),
    ], [_extension_only("PropertyValueExtension")], None),
    ("PropertySet", [
        (1, "keys", "string", "*"),
        (2, "values", "PropertyValue", "*"),
    ], [], 3),
    ("PropertySetList", [(1, "propertyset", "PropertySet", "*")], [], 2),
    ("MetaData", [
        (1, "is_multi_part", "bool", "?"),
        (2, "content_type", "string", "?"),
        (3, "size", "uint64", "?"),
        (4, "seq", "uint64", "?"),
        (5, "file_name", "string", "?"),
        (6, "file_type", "string", "?"),
        (7, "md5", "string", "?"),
        (8, "description", "string", "?"),
    ], [], 9),
    ("Metric", [
        (1, "name", "string", "?"),        # in BIRTH messages (and DATA without aliases)
        (2, "alias", "uint64", "?"),       # stands for the name after the BIRTH
        (3, "timestamp", "uint64", "?"),   # when the value was read, ms since the epoch
        (4, "datatype", "uint32", "?"),    # a DataType
        (5, "is_historical", "bool", "?"),
        (6, "is_transient", "bool", "?"),
        (7, "is_null", "bool", "?"),
        (8, "metadata", "MetaData", "?"),
        (9, "properties", "PropertySet", "?"),
        (10, "int_value", "uint32", "|"),  # the 8-32 bit integer types
        (11, "long_value", "uint64", "|"),  # the 64-bit integer types, DateTime
        (12, "float_value", "float", "|"),
        (13, "double_value", "double", "|"),
        (14, "boolean_value", "bool", "|"),
        (15, "string_value", "string", "|"),
        (16, "bytes_value", "bytes", "|"),
        (17, "dataset_value", "DataSet", "|"),
        (18, "template_value", "Template", "|"),
        (19, "extension_value", "Metric.MetricValueExtension", "|"),
    ], [_extension_only("MetricValueExtension")], None),
], 6)

_PACKAGE = "wattline.sparkplug_b"
_MAX_FIELD_NUMBER = 536_870_911  # 2**29 - 1, protobuf's largest field number


def _describe(message: _Message, into: descriptor_pb2.DescriptorProto) -> None:
    name, fields, nested, extensions_from = message
    into.name = name
    has_oneof = any(label == "|" for *_, label in fields)
    if has_oneof:
        into.oneof_decl.add(name="value")
    for number, field_name, kind, label in fields:
        field = into.field.add(name=field_name, number=number, label=_LABELS[label])
        if kind in _SCALARS:
            field.type = _SCALARS[kind]
        else:
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{_PACKAGE}.Payload.{kind}"
        if label == "|":
            field.oneof_index = 0
    for inner in nested:
        _describe(inner, into.nested_type.add())
    if extensions_from is not None:
        into.extension_range.add(start=extensions_from, end=_MAX_FIELD_NUMBER + 1)


def _build() -> type:
    file = descriptor_pb2.FileDescriptorProto(name="wattline/sparkplug_b.proto",
                                              package=_PACKAGE, syntax="proto2")
    _describe(_SCHEMA, file.message_type.add())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Payload"))


Payload: Any = _build()
"""The Sparkplug B ``Payload`` message class."""


def schema_fields(descriptor: Any = None) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Every message of a Sparkplug B schema (this one, or another implementation's
    ``Payload`` descriptor) by its name below ``Payload`` (``""`` for Payload itself):
    field name -> (number, protobuf type, repeated, has presence, its oneof or None).
    Two schemas with equal answers read and write the same bytes."""
    out: dict[str, dict[str, tuple[Any, ...]]] = {}

    def walk(message: Any, path: str) -> None:
        out[path] = {f.name: (f.number, f.type, f.is_repeated, f.has_presence,
                              f.containing_oneof.name if f.containing_oneof else None)
                     for f in message.fields}
        for inner in message.nested_types:
            walk(inner, f"{path}.{inner.name}".lstrip("."))

    walk(Payload.DESCRIPTOR if descriptor is None else descriptor, "")
    return out


# --- values ------------------------------------------------------------------------------

_SIGNED_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_INT_VALUE_TYPES = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.UINT8,
                              DataType.UINT16, DataType.UINT32})
_LONG_VALUE_TYPES = frozenset({DataType.INT64, DataType.UINT64, DataType.DATETIME})
NUMERIC_FIELDS = frozenset({"int_value", "long_value", "float_value", "double_value"})
"""The value fields that hold numbers (a DateTime's ``long_value`` aside)."""
QUALITY_GOOD = 192
"""The ``Quality`` property's value for good data (0 is bad, 500 stale)."""


def metric_value(metric: Any, datatype: int, which: str | None) -> Any:
    """The value of ``metric`` as Python, read by ``datatype``: signed integers are
    stored in their unsigned field as two's complement (some encoders sign-extend
    the 8 and 16 bit ones to 32 bits, so only the type's own bits are read)."""
    if which is None:
        return None
    raw = getattr(metric, which)
    bits = _SIGNED_BITS.get(datatype)  # type: ignore[call-overload]
    if bits is not None and which in ("int_value", "long_value"):
        raw &= (1 << bits) - 1
        return raw - (1 << bits) if raw >> (bits - 1) else raw
    return raw


class Metric(NamedTuple):
    """A metric to encode: ``value`` goes to the field its ``datatype`` uses."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    value: Any = None
    is_null: bool = False


def encode(metrics: Iterable[Metric], *, timestamp: int | None = None,
           seq: int | None = None) -> bytes:
    """A Sparkplug B payload holding ``metrics`` (datatypes written as given)."""
    payload = Payload()
    if timestamp is not None:
        payload.timestamp = timestamp
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        out = payload.metrics.add()
        if m.name is not None:
            out.name = m.name
        if m.alias is not None:
            out.alias = m.alias
        if m.timestamp is not None:
            out.timestamp = m.timestamp
        if m.datatype is not None:
            out.datatype = int(m.datatype)
        if m.is_null or m.value is None:
            out.is_null = True
            continue
        _set_value(out, DataType(m.datatype or DataType.UNKNOWN), m.value)
    return payload.SerializeToString()


def _set_value(out: Any, datatype: DataType, value: Any) -> None:
    if datatype in _INT_VALUE_TYPES:
        # Two's complement in the type's own width (-1 as Int8 is 0xFF), as strict
        # decoders expect; unsigned values are written as they are.
        out.int_value = int(value) & ((1 << _SIGNED_BITS.get(datatype, 32)) - 1)
    elif datatype in _LONG_VALUE_TYPES:
        out.long_value = int(value) & 0xFFFF_FFFF_FFFF_FFFF
    elif datatype == DataType.FLOAT:
        out.float_value = float(value)
    elif datatype == DataType.BOOLEAN:
        out.boolean_value = bool(value)
    elif datatype in (DataType.STRING, DataType.TEXT, DataType.UUID):
        out.string_value = str(value)
    elif datatype in (DataType.BYTES, DataType.FILE):
        out.bytes_value = bytes(value)
    elif isinstance(value, bool):
        out.boolean_value = value
    elif isinstance(value, int) and datatype == DataType.UNKNOWN:
        out.long_value = value & 0xFFFF_FFFF_FFFF_FFFF
    elif isinstance(value, (int, float)) and (datatype == DataType.DOUBLE
                                              or datatype == DataType.UNKNOWN):
        out.double_value = float(value)
    else:
        raise ValueError(f"cannot encode {value!r} as Sparkplug datatype {datatype.name}")

