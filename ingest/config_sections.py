"""Every setting of ``wattline run``, declared once, in its component's section.

One frozen dataclass per component holds that component's keys, each with its type,
default and help text, and checks its own values in ``check()``; ``config.Settings``
puts them together.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from dataclasses import field
from typing import Any

from wattline.contract.errors import ConfigError
from wattline.ingest.config_schema import (
    Duration,
    doc,
    durations,
    parse_mqtt_url,
    specs,
    with_ms_accessors,
)
from wattline.ingest.config_tables import LineSettings, MeterSettings, parse_lines, parse_meters

__all__ = [
    "AlertSettings", "DecodeSettings", "DurabilitySettings", "InfluxSettings",
    "LoggingSettings", "MetricsSettings", "MqttSettings", "PipelineSettings",
    "SemanticsSettings", "StoreSettings",
]


def _read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _must_exist(section: Any, *keys: str) -> None:
    for key in keys:
        path = getattr(section, key)
        if path and not os.path.isfile(path):
            raise ConfigError(key, f"no such file: {path}")


@dataclasses.dataclass(frozen=True)
class Section:
    """What every section has: typed durations, and a check of its own values."""

    def __post_init__(self) -> None:
        # Settings built by hand (not by settings_from_mapping) get typed durations too.
        for spec in specs(type(self), ""):
            value = getattr(self, spec.name)
            if spec.kind is Duration and isinstance(value, str) \
                    and not isinstance(value, Duration):
                object.__setattr__(self, spec.name, Duration(value, spec.name))
            elif spec.kind is tuple and not all(isinstance(v, Duration) for v in value):
                object.__setattr__(self, spec.name, durations(*value))

    def check(self) -> None:
        """Raise ``ConfigError`` naming the key if the section's values do not fit together."""


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class MqttSettings(Section):
    """The broker, the topics subscribed to and the session: the MQTT source."""

    mqtt_url: str = field(default="mqtt://127.0.0.1:1883", metadata=doc(
        "Broker to subscribe to: mqtt://[user:pass@]host:port (mqtts:// for TLS). Keep a "
        "password out of files and process lists: WATTLINE_MQTT_URL or "
        "--mqtt-password-file."))
    topic_prefix: str = field(default="factory", metadata=doc(
        "First level of the reading topics {prefix}/{site}/{line}/{kind}/{meter}."))
    topic_template: str = field(default="{prefix}/{site}/{line}/{kind}/{meter}", metadata=doc(
        "Layout of the reading topics, for gateways that do not use the default one: {site}, "
        "{line}, {kind} and {meter} each fill one level, {prefix} is --topic-prefix, other "
        "levels match literally; meta is the same plus /meta."))
    client_id: str = field(default="wattline", metadata=doc(
        "MQTT client id."))
    qos: int = field(default=1, metadata=doc(
        "Subscription QoS, 0, 1 or 2.",
        choices=(0, 1, 2)))
    mqtt_protocol: str = field(default="3.1.1", metadata=doc(
        "MQTT protocol version.",
        choices=("3.1.1", "5")))
    persistent_session: bool = field(default=False, metadata=doc(
        "Keep the broker session (subscriptions and QoS 1/2 messages queued while the "
        "collector is away) across reconnects and restarts; needs a fixed --client-id.",
        default_help="clean session",
        off_flag="--clean-session"))
    session_expiry: Duration = field(default=Duration("1h"), metadata=doc(
        "MQTT 5: how long the broker keeps a persistent session after a "
        "disconnect."))
    mqtt_password_file: str | None = field(default=None, metadata=doc(
        "File holding the broker password (the user name goes in --mqtt-url).",
        hint="/etc/wattline/mqtt.password"))
    mqtt_ca_file: str | None = field(default=None, metadata=doc(
        "CA certificate(s) to verify the broker with (mqtts://).",
        hint="/etc/wattline/ca.pem"))
    mqtt_cert_file: str | None = field(default=None, metadata=doc(
        "Client certificate for TLS client authentication.",
        hint="/etc/wattline/client.pem"))
    mqtt_key_file: str | None = field(default=None, metadata=doc(
        "Private key of --mqtt-cert-file.",
        hint="/etc/wattline/client.key"))
    mqtt_share_group: str | None = field(default=None, metadata=doc(
        "Subscribe as $share/GROUP/... so that several collectors split the load "
        "(MQTT 5 shared subscriptions).",
        hint="wattline"))
    sparkplug: bool = field(default=False, metadata=doc(
        "Also take Sparkplug B (spBv1.0/{group}/...): group = site, edge node = line, "
        "metrics named energy/<meter> or production/<meter>; asks nodes for a rebirth on a "
        "sequence gap or unknown alias."))

    def resolved_mqtt_password(self) -> str | None:
        """The broker password: from ``mqtt_password_file`` when given, else from the URL."""
        if self.mqtt_password_file:
            return _read_secret(self.mqtt_password_file)
        return parse_mqtt_url(self.mqtt_url).password

    def check(self) -> None:
        parse_mqtt_url(self.mqtt_url)
        from wattline.contract.topics import TopicTemplate

        TopicTemplate(self.topic_template, prefix=self.topic_prefix)  # ConfigError if bad
        if self.persistent_session and self.client_id in ("", None):
            raise ConfigError("persistent_session", "a persistent session needs a fixed "
                              "client_id")
        if bool(self.mqtt_cert_file) != bool(self.mqtt_key_file):
            raise ConfigError("mqtt_key_file" if self.mqtt_cert_file else "mqtt_cert_file",
                              "give mqtt_cert_file and mqtt_key_file together")
        _must_exist(self, "mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file",
                    "mqtt_key_file")
        if self.mqtt_share_group is not None and not re.fullmatch(
                r"[A-Za-z0-9_.-]{1,64}", self.mqtt_share_group):
            raise ConfigError("mqtt_share_group", "use 1-64 of A-Z a-z 0-9 _ . -")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class DecodeSettings(Section):
    """What a reading must be to be accepted, and the meters the file describes: the
    decoder and the meter registry."""

    max_future: Duration = field(default=Duration("5m"), metadata=doc(
        "Readings stamped further ahead of this machine's clock are dropped "
        "(ts_out_of_range)."))
    max_past: Duration = field(default=Duration("30d"), metadata=doc(
        "Readings stamped further behind it are dropped."))
    max_payload_bytes: int = field(default=1_048_576, metadata=doc(
        "Larger MQTT payloads are rejected (payload_too_large).",
        positive=True))
    meters: dict[str, MeterSettings] = field(default_factory=dict, metadata=doc(
        'Meters described like a retained meta message, in '
        '[meters."site/line/kind/meter"] tables; the file wins over meta. Keys: carrier '
        '(one of the reference data\'s carriers: electricity, natural_gas, raw_coal, coke, '
        'heat, steam, ...), unit (the carrier\'s unit or a multiple: kWh, MWh, m3, kg, t, '
        'MJ, GJ), mode (counter, a cumulative register, or delta) and rollover (the '
        'register\'s wrap value).',
        parse=parse_meters,
        example={
            "plant-a/eaf-1/energy/main-incomer": {
                "carrier": "electricity", "unit": "kWh", "mode": "counter",
                "rollover": 42949672.95},
            "plant-a/eaf-1/energy/burner-gas": {"carrier": "natural_gas", "unit": "m3"},
            "plant-a/eaf-1/production/tapped-steel": {"unit": "t"},
        }))


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class SemanticsSettings(Section):
    """Ticks, windows and lateness: what the kernels compute."""

    emit_every: Duration = field(default=Duration("10s"), metadata=doc(
        "Tick period in event time; ticks align to multiples of it since the "
        "epoch."))
    windows: tuple[Duration, ...] = field(default=durations("15m", "1h", "24h"), metadata=doc(
        "Comma-separated rolling windows, each a multiple of --emit-every."))
    allowed_lateness: Duration = field(default=Duration("30s"), metadata=doc(
        "How far behind a line's newest reading a reading may still arrive."))
    min_production_t: float | None = field(default=None, metadata=doc(
        "Production (t) a window needs to have an intensity.",
        default_help="more than 0",
        hint=0.5))

    def check(self) -> None:
        if self.min_production_t is not None and self.min_production_t < 0:
            raise ConfigError("min_production_t", "must not be negative")
        emit = self.emit_every.ms
        if emit <= 0:
            raise ConfigError("emit_every", "must be positive")
        for w in self.windows:
            if w.ms <= 0 or w.ms % emit:
                raise ConfigError(
                    "windows",
                    f"window {w} is not a whole number of ticks of emit_every {self.emit_every}",
                    suggestion="make every window a multiple of emit_every",
                )
        if len({w.ms for w in self.windows}) != len(self.windows):
            raise ConfigError("windows", f"windows repeat: {', '.join(self.windows)}")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class AlertSettings(Section):
    """The alert rules' tuning, daemon-wide and per line: the alerting stage."""

    alert_for: int = field(default=3, metadata=doc(
        "Ticks in a row a rule must fire before its alert starts, and clear before it ends "
        "(hysteresis)."))
    spike_ratio: float = field(default=1.5, metadata=doc(
        "Spike alert: the short window's kgce/t above this times the long window's, while "
        "producing.",
        positive=True))
    spike_clear_ratio: float = field(default=1.2, metadata=doc(
        "The spike alert ends at or below this ratio.",
        positive=True))
    spike_short_window: str | None = field(default=None, metadata=doc(
        "Window the spike rule watches.",
        default_help="the shortest of --windows",
        hint="15m"))
    spike_long_window: str | None = field(default=None, metadata=doc(
        "Window the spike rule compares it with.",
        default_help="the longest of --windows",
        hint="24h"))
    surge_window: Duration | None = field(default=None, metadata=doc(
        "Window of the energy rate (kgce/h) the power-surge rule watches; kept "
        "internally when it is not one of --windows.",
        default_help="1m",
        hint="1m"))
    surge_k: float = field(default=4.0, metadata=doc(
        "Power surge: the rate above its rolling mean plus this many mean absolute "
        "deviations.",
        positive=True))
    level_window: str | None = field(default=None, metadata=doc(
        "Window compared with the product's national levels.",
        default_help="24h, else the longest window",
        hint="24h"))
    stale_after: Duration = field(default=Duration("5m"), metadata=doc(
        "Stale-line alert: no reading from a line for this long (wall clock)."))
    alert_topic: bool = field(default=True, metadata=doc(
        "Publish each line's active alerts, retained, to {prefix}/{site}/{line}/alerts."))
    lines: dict[str, LineSettings] = field(default_factory=dict, metadata=doc(
        'Per-line settings, in [lines."site/line"] tables: product (whose national levels '
        'the line is compared with: eaf_steel, cement_clinker, aluminium_liquid, ... as in '
        'the reference data), and alert_for, spike_ratio, spike_clear_ratio and surge_k to '
        'override the daemon-wide settings for that line.',
        parse=parse_lines,
        example={"plant-a/eaf-1": {"product": "eaf_steel", "spike_ratio": 1.6}}))

    def check(self) -> None:
        if self.alert_for < 1:
            raise ConfigError("alert_for", "must be at least 1 tick")
        if self.stale_after.ms <= 0:
            raise ConfigError("stale_after", "must be positive")
        if self.spike_clear_ratio > self.spike_ratio:
            raise ConfigError("spike_clear_ratio",
                              f"the end ratio {self.spike_clear_ratio} is above the start "
                              f"ratio {self.spike_ratio}",
                              suggestion="make spike_clear_ratio <= spike_ratio")
        for name, line in self.lines.items():
            ratio = line.spike_ratio or self.spike_ratio
            clear = line.spike_clear_ratio or self.spike_clear_ratio
            if clear > ratio:
                raise ConfigError(f"lines.{name!r}.spike_clear_ratio",
                                  f"the end ratio {clear} is above the start ratio {ratio}",
                                  suggestion="an alert ends below where it starts: make "
                                  "spike_clear_ratio <= spike_ratio")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class InfluxSettings(Section):
    """Where intensity points and alerts are written: the InfluxDB sink."""

    influx_url: str | None = field(default=None, metadata=doc(
        "InfluxDB 2/3 (or any /api/v2/write server) to write energy_intensity points to, "
        "e.g. http://127.0.0.1:8086.",
        hint="http://127.0.0.1:8086"))
    influx_org: str | None = field(default=None, metadata=doc(
        "InfluxDB organisation.",
        hint="plant"))
    influx_bucket: str | None = field(default=None, metadata=doc(
        "InfluxDB bucket (required with --influx-url).",
        hint="energy"))
    influx_token: str | None = field(default=None, repr=False, metadata=doc(
        "InfluxDB API token. Prefer --influx-token-file or the WATTLINE_INFLUX_TOKEN "
        "environment variable: flags show up in process lists.",
        hint="..."))
    influx_token_file: str | None = field(default=None, metadata=doc(
        "File holding the InfluxDB API token.",
        hint="/etc/wattline/influx.token"))

    def resolved_influx_token(self) -> str | None:
        """The token itself, read from ``influx_token_file`` when that is given."""
        if self.influx_token_file:
            return _read_secret(self.influx_token_file)
        return self.influx_token

    def check(self) -> None:
        if bool(self.influx_url) != bool(self.influx_bucket):
            raise ConfigError(
                "influx_url" if not self.influx_url else "influx_bucket",
                "influx_url and influx_bucket go together",
                suggestion="give both, or neither to write only the local store",
            )
        if self.influx_token and self.influx_token_file:
            raise ConfigError("influx_token_file",
                              "give influx_token or influx_token_file, not both")
        _must_exist(self, "influx_token_file")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class StoreSettings(Section):
    """The local Parquet store."""

    store: str | None = field(default=None, metadata=doc(
        "Directory of the local Parquet store (partitioned by date and line).",
        example="/var/lib/wattline/store"))
    store_retention: Duration | None = field(default=None, metadata=doc(
        "Delete the store's days older than this, in whole days (e.g. 90d); past days "
        "are also compacted to one file per line.",
        default_help="keep everything",
        example="400d"))

    @property
    def store_retention_days(self) -> int | None:
        """Whole days the Parquet store keeps; None keeps everything."""
        return None if self.store_retention is None else self.store_retention.ms // 86_400_000

    def check(self) -> None:
        if self.store_retention is not None:
            days = self.store_retention.ms / 86_400_000
            if days < 1 or days != int(days):
                raise ConfigError("store_retention", "give whole days, e.g. 90d (at least 1d)")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class DurabilitySettings(Section):
    """Checkpoints, the spool and dead letters: what survives a restart or an outage."""

    state_dir: str | None = field(default=None, metadata=doc(
        "Directory for kernel checkpoints (meter numbering, per-meter last readings, "
        "window contents, watermarks): a restarted daemon resumes its windows exactly.",
        default_help="none, windows restart empty",
        example="/var/lib/wattline/state"))
    checkpoint_every: Duration = field(default=Duration("60s"), metadata=doc(
        "How often to write a checkpoint to --state-dir, and always at "
        "shutdown."))
    spool_dir: str | None = field(default=None, metadata=doc(
        "Folder where InfluxDB batches wait, as Arrow files, while the server is down; "
        "they are delivered in order once it is back.",
        default_help="STATE_DIR/spool; none without --state-dir: the pipeline then holds "
        "back instead",
        hint="/var/lib/wattline/spool"))
    spool_max_bytes: int = field(default=1 << 30, metadata=doc(
        "Size cap of the spool; past it the oldest batch is dropped, counted and "
        "logged.",
        default_help="1073741824 (1 GiB)",
        positive=True))
    dead_letter_dir: str | None = field(default=None, metadata=doc(
        "Folder for batches the server refuses for good (HTTP 4xx), with its message.",
        default_help="STATE_DIR/dead-letter",
        hint="/var/lib/wattline/dead-letter"))

    @property
    def resolved_spool_dir(self) -> str | None:
        """Where undeliverable InfluxDB batches wait: spool_dir, else STATE_DIR/spool."""
        if self.spool_dir:
            return self.spool_dir
        return os.path.join(self.state_dir, "spool") if self.state_dir else None

    @property
    def resolved_dead_letter_dir(self) -> str | None:
        """Where batches the server refuses for good go: dead_letter_dir, else
        STATE_DIR/dead-letter."""
        if self.dead_letter_dir:
            return self.dead_letter_dir
        return os.path.join(self.state_dir, "dead-letter") if self.state_dir else None


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class MetricsSettings(Section):
    """The Prometheus endpoint."""

    metrics_port: int | None = field(default=9464, metadata=doc(
        "Port for Prometheus /metrics; 0 picks a free one."))
    metrics_host: str = field(default="127.0.0.1", metadata=doc(
        "Address /metrics listens on."))

    def check(self) -> None:
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                "metrics_port", f"must be a TCP port (0-65535), got {self.metrics_port}"
            )


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class PipelineSettings(Section):
    """Batches and the queue between the MQTT client and the kernels."""

    batch_max_messages: int = field(default=1000, metadata=doc(
        "Messages per batch handed to the kernels, at most. A batch holds Python's lock "
        "while it is worked on, which delays the MQTT thread's QoS 1 acknowledgements; keep "
        "it modest.",
        positive=True))
    batch_max_wait: Duration = field(default=Duration("200ms"), metadata=doc(
        "How long a batch may wait to fill before it goes to the kernels."))
    queue_max_messages: int = field(default=100_000, metadata=doc(
        "Messages queued between the MQTT client and the pipeline; when full, the "
        "collector stops reading from the broker (back-pressure).",
        positive=True))


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class LoggingSettings(Section):
    """The daemon's log: to stderr (journald under systemd), one line per record."""

    log_level: str = field(default="info", metadata=doc(
        "Log verbosity.", choices=("debug", "info", "warning", "error")))

    def configure(self) -> None:
        """Send this process's log to stderr at ``log_level``."""
        logging.basicConfig(level=self.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
