"""How a setting is declared, documented and converted.

A setting is a field of its component's section dataclass (``config_sections``),
``name: type = field(default=..., metadata=doc("Help."))``: its type is the
annotation, its default the field's, and its help text, choices and flag spelling
ride in the metadata. ``specs()`` reads them back as ``SettingSpec`` rows, from which the
config file reader, the validator, the command-line flags and the example-config
test all work; nothing else spells a key.

Durations are ``Duration`` values from load on: the text as written (windows are
named by it in every output) with its length parsed once, in ``.ms``. ``MqttUrl`` is
the broker URL taken apart.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from wattline.contract.durations import parse_duration_ms
from wattline.contract.errors import ConfigError
from wattline.ingest.redact import redact_url

__all__ = ["LEFT_OUT", "NO_EXAMPLE", "Duration", "MqttUrl", "SettingSpec", "TextList",
           "boolean", "check_type", "doc", "durations", "number", "parse_mqtt_url",
           "positive_number", "specs", "with_ms_accessors"]

T = TypeVar("T")
_META = "wattline.setting"


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NO_EXAMPLE: Any = _Marker("NO_EXAMPLE")
"""``doc(example=...)`` not given: the example config shows the default."""

LEFT_OUT: Any = _Marker("LEFT_OUT")
"""``doc(hint=LEFT_OUT)``: the example config names the setting without showing a value,
for one that should not be set without reading its help."""


class Duration(str):
    """A duration as the config spells it (``"10s"``, ``"15m"``), with ``ms`` parsed once.

    It stays a string so that it reads, compares and is named (window tags, log lines)
    exactly as written; a bare number counts seconds and is kept as ``"<n>s"``.
    """

    ms: int

    def __new__(cls, value: str | float, key: str = "duration") -> Duration:
        if isinstance(value, Duration):
            return value
        text = value if isinstance(value, str) else f"{value}s"
        ms = parse_duration_ms(text, key)
        self = super().__new__(cls, text)
        self.ms = ms
        return self


class TextList(str):
    """Comma-separated items (``"06:00,14:00,22:00"``); a config file may also give them as
    a list of strings (``["06:00", "14:00", "22:00"]``)."""

    @property
    def items(self) -> list[str]:
        return [x.strip() for x in self.split(",") if x.strip()]


def durations(*texts: str) -> tuple[Duration, ...]:
    return tuple(Duration(t) for t in texts)


@dataclasses.dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    def __repr__(self) -> str:  # never show the password
        user = f"{self.username}:***@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"MqttUrl({scheme}://{user}{self.host}:{self.port})"


def parse_mqtt_url(url: str, key: str = "mqtt_url") -> MqttUrl:
    """``mqtt://[user:pass@]host:port``; ``mqtts://`` for TLS (port 8883 by default).

    An error shows the URL without its password."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(key, f"expected mqtt://host:port or mqtts://host:port, got {shown!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        if "@" in url:  # the "port" may be part of a password holding a bare / or @
            raise ConfigError(key, f"bad port in {shown!r}", suggestion="write a / or @ in "
                              "the user or password as %2F or %40") from None
        raise ConfigError(key, f"bad port in {shown!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(key, f"no host in {shown!r}; expected mqtt://host:port")
    if parts.path not in ("", "/"):
        raise ConfigError(key, f"unexpected path {parts.path!r} in {shown!r}; expected "
                          "mqtt://host:port (the topics come from --topic-prefix)")
    return MqttUrl(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


@dataclasses.dataclass(frozen=True)
class _Doc:
    help: str
    default_help: str | None
    choices: tuple[Any, ...]
    positive: bool
    off_flag: str | None
    parse: Callable[[Any], Any] | None
    example: Any
    hint: Any


def doc(help: str, *, default_help: str | None = None, choices: tuple[Any, ...] = (),
        positive: bool = False, off_flag: str | None = None,
        parse: Callable[[Any], Any] | None = None,
        example: Any = NO_EXAMPLE, hint: Any = NO_EXAMPLE) -> dict[str, _Doc]:
    """A setting's field metadata: ``field(default=..., metadata=doc("Help text."))``.

    ``default_help`` replaces the ``[default: ...]`` shown when the default needs words;
    ``choices`` and ``positive`` are checked at load; ``off_flag`` names the flag that
    turns a boolean off (``--no-<flag>`` otherwise); ``parse`` reads a table of the
    config file (``[meters."..."]``), which has no flag. ``example`` is the value the
    example config (``config_example``) sets instead of the default; ``hint`` is a value
    it shows commented out, for a setting best left unset.
    """
    return {_META: _Doc(help, default_help, choices, positive, off_flag, parse, example,
                        hint)}


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """One setting as the schema declares it."""

    name: str
    section: str  # the attribute of Settings holding the section: "mqtt", "alerts", ...
    kind: type  # str, int, float, bool, Duration, tuple (of Durations), dict (a table)
    optional: bool  # None is a value: "not set"
    default: Any
    help: str
    default_help: str | None
    choices: tuple[Any, ...]
    positive: bool
    off_flag: str | None
    parse: Callable[[Any], Any] | None
    example: Any = NO_EXAMPLE
    hint: Any = NO_EXAMPLE

    @property
    def is_table(self) -> bool:
        return self.parse is not None

    @property
    def flag(self) -> str:
        """``mqtt_url`` -> ``--mqtt-url``."""
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        """``mqtt_url`` -> ``WATTLINE_MQTT_URL``."""
        return "WATTLINE_" + self.name.upper()

    @property
    def shown_default(self) -> str | None:
        """The default as ``--help`` shows it, or None to show none."""
        if self.default_help is not None:
            return self.default_help
        value = self.default
        if value is None:
            return None
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def coerce(self, value: Any) -> Any:
        """``value`` (from a flag, the environment or the file) as this setting's type."""
        key = self.name
        if self.parse is not None:
            return self.parse(value)
        if self.kind is bool:
            return boolean(key, value)
        if self.kind is Duration:
            check_type(key, value, (str, int, float))
            if isinstance(value, str) and value.strip().isdigit():
                value = f"{value.strip()}s"  # a bare number from a flag counts seconds too
            return Duration(value, key)
        if self.kind is tuple:
            return _windows(key, value)
        if self.kind is TextList:
            if isinstance(value, (list, tuple)):
                for x in value:
                    check_type(key, x, str)
                value = ",".join(value)
            check_type(key, value, str)
            return TextList(value)
        if self.kind is int:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            check_type(key, value, int)
            if self.positive and value <= 0:
                raise ConfigError(key, "must be positive")
        elif self.kind is float:
            value = positive_number(key, value) if self.positive else float(number(key, value))
        else:
            check_type(key, value, str)
        if self.choices and value not in self.choices:
            *most, last = (str(c) for c in self.choices)
            raise ConfigError(key, f"must be {', '.join(most)} or {last}, got {value!r}")
        return value


def specs(section: type, name: str) -> Iterator[SettingSpec]:
    """The settings a section dataclass declares, in declaration order."""
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):
        doc = f.metadata.get(_META)
        if doc is None:
            continue
        kind, optional = _kind(hints[f.name])
        default = {} if f.default is dataclasses.MISSING else f.default
        yield SettingSpec(f.name, name, kind, optional, default, doc.help, doc.default_help,
                          doc.choices, doc.positive, doc.off_flag, doc.parse, doc.example,
                          doc.hint)


def with_ms_accessors(cls: type[T]) -> type[T]:
    """Add ``<name>_ms`` for every required duration (a tuple of ints for a tuple of them),
    unless the class defines its own; the modules reading ``settings.emit_every_ms`` keep
    working and nothing parses again."""
    for spec in specs(cls, ""):
        name = f"{spec.name}_ms"
        if spec.optional or spec.kind not in (Duration, tuple) or spec.is_table \
                or hasattr(cls, name):
            continue
        if spec.kind is Duration:
            def get(self: Any, key: str = spec.name) -> int:
                return int(getattr(self, key).ms)
        else:
            def get(self: Any, key: str = spec.name) -> tuple[int, ...]:
                return tuple(d.ms for d in getattr(self, key))
        get.__doc__ = f"``{spec.name}`` in milliseconds."
        setattr(cls, name, property(get))
    return cls


def _kind(hint: Any) -> tuple[type, bool]:
    """(base type, may be None) of a field annotation."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (base,) = [a for a in args if a is not type(None)]
        return _kind(base)[0], True
    origin = typing.get_origin(hint)
    if origin is not None:
        return origin, False
    return hint, False


def check_type(key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    wanted = expected if isinstance(expected, tuple) else (expected,)
    if (isinstance(value, bool) and bool not in wanted) or not isinstance(value, expected):
        raise ConfigError(key, f"expected {' or '.join(t.__name__ for t in wanted)}, "
                          f"got {value!r}")


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(key, f"expected true or false, got {value!r}")


def number(key: str, value: Any) -> float:
    """A number, or a string holding one (from a flag or the environment)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    check_type(key, value, (int, float))
    return typing.cast(float, value)


def positive_number(key: str, value: Any) -> float:
    value = number(key, value)
    if not value > 0 or value == float("inf"):
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    return float(value)


def _windows(key: str, value: Any) -> tuple[Duration, ...]:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(key, f"expected a list like 15m,1h,24h, got {value!r}")
    for x in value:
        check_type(key, x, str)
    return tuple(Duration(x, key) for x in value)
