"""The daemon's settings: one typed schema, validated once at start-up.

Settings come from four places, the first that names a key wins: a command-line
flag, an environment variable ``WATTLINE_<FLAG>`` (``--mqtt-url`` reads
``WATTLINE_MQTT_URL``), the TOML config file, and the defaults. The CLI merges the
first three; ``settings_from_mapping`` validates the result and names the offending
key (and its line in the file) when something is wrong.

Each key is declared once, in its component's section (``config_sections``: type,
default, help text); ``Settings`` here is all sections together. How a key is
declared and converted is ``config_schema``; the ``[meters."..."]`` and
``[lines."..."]`` tables are ``config_tables``, the ``[[payloads]]`` mappings
``config_payloads``; the file's lines, ``config_file``.
See ``deploy/wattline.example.toml`` for every key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar, overload

from wattline.contract.durations import parse_duration_ms
from wattline.contract.errors import ConfigError
from wattline.ingest.config_file import line_of, load_toml, point_at_file
from wattline.ingest.config_nats import NatsSettings
from wattline.ingest.config_outputs import (
    DurabilitySettings,
    InfluxSettings,
    LoggingSettings,
    MetricsSettings,
    PipelineSettings,
    StoreSettings,
)
from wattline.ingest.config_schema import Duration, MqttUrl, SettingSpec, parse_mqtt_url, specs
from wattline.ingest.config_sections import (
    AlertSettings,
    DecodeSettings,
    MqttSettings,
    Section,
    SemanticsSettings,
)
from wattline.ingest.config_tables import LineSettings, MeterSettings, unknown_key

__all__ = [
    "SCHEMA", "SETTING_KEYS", "AlertSettings", "ConfigError", "DecodeSettings",
    "DurabilitySettings", "Duration", "InfluxSettings", "LineSettings", "LoggingSettings",
    "MeterSettings", "MetricsSettings", "MqttSettings", "MqttUrl", "NatsSettings",
    "PipelineSettings", "SectionView", "SemanticsSettings", "SettingSpec", "Settings",
    "StoreSettings",
    "check_config_file", "parse_duration_ms", "parse_mqtt_url", "point_at_file",
    "read_config_file", "settings_from_mapping",
]

S = TypeVar("S", bound=Section)


class SectionView(Generic[S]):
    """``settings.<name>``: that section's keys alone, as an instance of its dataclass."""

    def __init__(self, cls: type[S], title: str) -> None:
        self.cls = cls
        self.title = title  # its heading in --help and in the example config
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, settings: None, owner: type) -> SectionView[S]: ...
    @overload
    def __get__(self, settings: object, owner: type) -> S: ...
    def __get__(self, settings: object | None, owner: type) -> SectionView[S] | S:
        if settings is None:
            return self
        view = settings.__dict__.get(self.name)
        if view is None:  # built once per Settings, like functools.cached_property
            view = self.cls(**{spec.name: getattr(settings, spec.name)
                               for spec in self.specs()})
            settings.__dict__[self.name] = view
        return view  # type: ignore[no-any-return]

    def specs(self) -> list[SettingSpec]:
        return list(specs(self.cls, self.name))


# The bases are listed last section first: a dataclass's fields start with its last base's.
@dataclasses.dataclass(frozen=True)
class Settings(LoggingSettings, PipelineSettings, MetricsSettings, DurabilitySettings,
               StoreSettings, InfluxSettings, AlertSettings, SemanticsSettings,
               DecodeSettings, NatsSettings, MqttSettings):
    """Everything ``wattline run`` needs, validated: every key flat, as the file, the
    flags and the environment name them, and one section per component
    (``settings.mqtt``, ``settings.alerts``...), in the order ``--help`` lists them."""

    mqtt = SectionView(MqttSettings, "MQTT input")
    nats = SectionView(NatsSettings, "NATS scale-out")
    decode = SectionView(DecodeSettings, "Readings")
    semantics = SectionView(SemanticsSettings, "Semantics")
    alerts = SectionView(AlertSettings, "Alerts")
    influx = SectionView(InfluxSettings, "InfluxDB")
    parquet = SectionView(StoreSettings, "Parquet store")
    durability = SectionView(DurabilitySettings, "Checkpoints and spool")
    metrics = SectionView(MetricsSettings, "Metrics")
    pipeline = SectionView(PipelineSettings, "Pipeline")
    logging = SectionView(LoggingSettings, "Logging")

    @classmethod
    def sections(cls) -> list[SectionView[Any]]:
        return [v for v in vars(cls).values() if isinstance(v, SectionView)]

    # -- values that need more than one section ----------------------------------------------

    @property
    def spike_windows(self) -> tuple[str, str]:
        """(short, long) windows the spike rule compares: the first and last by default."""
        by_length = sorted(self.windows, key=lambda w: w.ms)
        return (self.spike_short_window or by_length[0], self.spike_long_window or by_length[-1])

    @property
    def level_window_name(self) -> str:
        """The window compared with national levels: 24h when configured, else the longest."""
        if self.level_window:
            return self.level_window
        if "24h" in self.windows:
            return "24h"
        return max(self.windows, key=lambda w: w.ms)

    @property
    def surge_window_ms(self) -> int:
        """The power-surge rule's window; by default 1 min, rounded up to whole ticks."""
        if self.surge_window is not None:
            return self.surge_window.ms
        emit = self.emit_every.ms
        return -(-60_000 // emit) * emit

    def check(self) -> None:
        """Each section's own checks, then those between sections."""
        for section in self.sections():
            getattr(self, section.name).check()
        for key in ("spike_short_window", "spike_long_window", "level_window"):
            value = getattr(self, key)
            if value is not None and value not in self.windows:
                raise ConfigError(key, f"{value!r} is not one of the windows "
                                  f"{', '.join(self.windows)}",
                                  suggestion="name a window exactly as it is written in "
                                  "windows")
        short, long_ = self.spike_windows
        if Duration(short).ms >= Duration(long_).ms:
            raise ConfigError("spike_short_window",
                              f"the spike rule compares a short window with a longer one; "
                              f"{short} is not shorter than {long_}")
        if self.surge_window_ms % self.emit_every.ms or self.surge_window_ms <= 0:
            raise ConfigError("surge_window", f"must be a whole number of ticks of emit_every "
                              f"{self.emit_every}")


SCHEMA: tuple[SettingSpec, ...] = tuple(spec for section in Settings.sections()
                                        for spec in section.specs())
"""Every setting, section by section, in the order ``--help`` and the example list them."""

SETTING_KEYS: tuple[str, ...] = tuple(spec.name for spec in SCHEMA)
_SPECS = {spec.name: spec for spec in SCHEMA}


def settings_from_mapping(values: dict[str, Any]) -> Settings:
    """Validate merged settings; raise ``ConfigError`` naming the key.

    ``None`` means "not given": the default applies. Each value is converted to its
    key's type (durations parsed once), then every section checks itself.
    """
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        spec = _SPECS.get(key)
        if spec is None:
            raise unknown_key(key, SETTING_KEYS)
        kwargs[key] = spec.coerce(value)
    settings = Settings(**kwargs)
    settings.check()
    return settings


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config; errors name the file, key and line.

    Settings are top-level keys (``emit_every = "10s"``); ``[meters."..."]``,
    ``[lines."..."]`` and ``[[payloads]]`` are its only tables.
    """
    values, text = load_toml(path)
    for key in values:
        if key not in _SPECS:
            err = unknown_key(key, SETTING_KEYS)
            err.line = line_of(text, key)
            err.path = path
            raise err
    return values


def check_config_file(path: str) -> Settings:
    """Read and validate a config file alone; ``ConfigError`` points at the line."""
    values = read_config_file(path)
    try:
        return settings_from_mapping(values)
    except ConfigError as err:
        point_at_file(err, path)
        raise
