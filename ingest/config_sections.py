"""Every setting of ``wattline run``, declared once, in its component's section: here
the input and what is computed (MQTT, readings, semantics, alerts); the outputs and the
process (InfluxDB, store, durability, metrics, pipeline, logging) are in
``config_outputs``.

One frozen dataclass per component holds that component's keys, each with its type,
default and help text, and checks its own values in ``check()``; ``config.Settings``
puts them together.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import field
from typing import Any

from wattline.contract.errors import ConfigError
from wattline.ingest.calendar import parse_shifts, zone
from wattline.ingest.config_mqtt import (
    check_share_group,
    expand_client_id,
    parse_subscribe_lines,
)
from wattline.ingest.config_payloads import parse_payloads
from wattline.ingest.config_schema import (
    LEFT_OUT,
    Duration,
    TextList,
    doc,
    durations,
    parse_mqtt_url,
    specs,
    with_ms_accessors,
)
from wattline.ingest.config_tables import (
    LineSettings,
    MeterSettings,
    check_grid_factor,
    parse_lines,
    parse_meters,
    parse_renames,
)
from wattline.ingest.decode.mapping import PayloadMapping
from wattline.ingest.process_co2 import PROCESS_EXAMPLE, PROCESS_HELP

__all__ = ["AlertSettings", "DecodeSettings", "MqttSettings", "Section", "SemanticsSettings",
           "must_exist", "read_secret"]


def read_secret(path: str) -> str:
    """The secret in the file ``path`` (a password or token), without surrounding space."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def must_exist(section: Any, *keys: str) -> None:
    """Raise ``ConfigError`` for the first of ``keys`` naming a file that does not exist."""
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
            elif spec.kind is tuple and not spec.is_table \
                    and not all(isinstance(v, Duration) for v in value):
                object.__setattr__(self, spec.name, durations(*value))

    def check(self) -> None:
        """Raise ``ConfigError`` naming the key if the section's values do not fit together."""


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class MqttSettings(Section):
    """The broker, the topics subscribed to and the session: the MQTT source."""

    mqtt_url: str = field(default="mqtt://127.0.0.1:1883", repr=False, metadata=doc(
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
        "MQTT client id, unique to this collector on its broker; {host} is replaced by this "
        "machine's host name, so one config gives each gateway its own (persistent) "
        "session.",
        example="wattline-{host}"))
    qos: int = field(default=1, metadata=doc(
        "Subscription QoS, 0, 1 or 2.",
        choices=(0, 1, 2)))
    mqtt_protocol: str = field(default="3.1.1", metadata=doc(
        "MQTT protocol version.",
        choices=("3.1.1", "5")))
    persistent_session: bool = field(default=False, metadata=doc(
        "Keep the broker session (subscriptions and QoS 1/2 messages queued while the "
        "collector is away) across reconnects and restarts, so a restart loses nothing; "
        "needs a --client-id unique to this collector.",
        default_help="clean session",
        example=True,
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
    subscribe_lines: str | None = field(default=None, metadata=doc(
        "Subscribe to these lines only: site/line pairs separated by commas, + for every "
        "site or every line of a site (plant-a/+); names as the topics spell them.",
        default_help="every line",
        hint="plant-a/eaf-1,plant-a/eaf-2"))
    mqtt_share_group: str | None = field(default=None, metadata=doc(
        "Subscribe as $share/GROUP/... (a shared subscription: the broker hands each "
        "message to one collector of the group). Refused unless --subscribe-lines names "
        "each site and line without +: a line's meters split between collectors would "
        "each give a partial energy_intensity. Best left unset.",
        hint=LEFT_OUT))
    sparkplug: bool = field(default=False, metadata=doc(
        "Also take Sparkplug B (spBv1.0/{group}/...): group = site, edge node = line, "
        "metrics named energy/<meter> or production/<meter>; asks nodes for a rebirth on a "
        "sequence gap or unknown alias."))

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "client_id", expand_client_id(self.client_id))

    @property
    def subscribed_lines(self) -> tuple[tuple[str, str], ...] | None:
        """(site, line) pairs of ``subscribe_lines`` (``+`` for any); None: every line."""
        return parse_subscribe_lines(self.subscribe_lines)

    def resolved_mqtt_password(self) -> str | None:
        """The broker password: from ``mqtt_password_file`` when given, else from the URL."""
        if self.mqtt_password_file:
            return read_secret(self.mqtt_password_file)
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
        must_exist(self, "mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file",
                    "mqtt_key_file")
        if self.mqtt_share_group is not None and not re.fullmatch(
                r"[A-Za-z0-9_.-]{1,64}", self.mqtt_share_group):
            raise ConfigError("mqtt_share_group", "use 1-64 of A-Z a-z 0-9 _ . -")
        check_share_group(self.mqtt_share_group, self.subscribed_lines)


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
    max_lines: int = field(default=2000, metadata=doc(
        "Most lines (site/line) the daemon keeps: a meter on a new line beyond it is "
        "refused and its readings dropped (meter_limit), so that a flood of new names "
        "cannot grow memory, checkpoints and metric series without bound.",
        positive=True))
    max_meters: int = field(default=20_000, metadata=doc(
        "Most meters the daemon keeps, over all lines: a new meter beyond it is refused "
        "like one beyond --max-lines.",
        positive=True))
    rename: dict[str, str] = field(default_factory=dict, metadata=doc(
        'Names wattline gives a gateway\'s sites, lines and meters, in a [rename] table: '
        'each key a site, "site/line" or "site/line/kind/meter" as the gateway names it, '
        'each value the new name of that site, line or meter, used everywhere after '
        'decoding (store, InfluxDB, metrics, logs, alerts topic, and the keys of the '
        '[meters] and [lines] tables). No two entries may give one name in one place, and '
        'a gateway publishing under a name an entry gives another source is refused '
        '(name_taken). Needs a restart to change.',
        parse=parse_renames,
        example={"Sparkplug B Devices": "plant-a", "Sparkplug B Devices/EAF 1": "eaf-1"}))
    meters: dict[str, MeterSettings] = field(default_factory=dict, metadata=doc(
        'Meters described like a retained meta message, in '
        '[meters."site/line/kind/meter"] tables; the file wins over meta. Keys: carrier '
        '(one of the reference data\'s carriers: electricity, natural_gas, raw_coal, coke, '
        'heat, steam, ...), unit (the carrier\'s unit or a multiple: kWh, MWh, m3, kg, t, '
        'MJ, GJ), mode (counter, a cumulative register, or delta), rollover (the '
        'register\'s wrap value), direction (import, or export for energy leaving the '
        'line), max_rate (the most the meter registers per hour, in its unit), and the '
        'plant\'s measured values, which win over the reference data\'s: ncv_kj_per_unit '
        '(net calorific value, kJ per kg or m3 of the carrier: its kgce and, at the '
        'carrier\'s CO2 per unit of energy, its CO2) and tco2_per_unit (t CO2 per unit of '
        'the carrier; for electricity, a factor of its own instead of grid_factor).',
        parse=parse_meters,
        example={
            "plant-a/eaf-1/energy/main-incomer": {
                "carrier": "electricity", "unit": "kWh", "mode": "counter",
                "rollover": 42949672.95, "max_rate": 60000},
            "plant-a/eaf-1/energy/burner-gas": {"carrier": "natural_gas", "unit": "m3",
                                                 "ncv_kj_per_unit": 35900.0},
            "plant-a/eaf-1/production/tapped-steel": {"unit": "t"},
        }))
    payloads: tuple[PayloadMapping, ...] = field(default=(), metadata=doc(
        "Gateways that publish several tags in one JSON document of their own (Kepware's "
        "IoT Gateway, Node-RED flows), read by JMESPath expressions in [[payloads]] "
        "tables: topic (an MQTT filter, subscribed to as written), readings (the list of "
        "readings in the document), value, time and time_format (epoch_ms, epoch_s or "
        "rfc3339), optional quality and good, and each reading's site, line, kind and "
        "meter, or a tag looked up in a tags table. Every expression reads document, "
        "topic (the list of levels) and reading; docs/formats.md has the details, and "
        "deploy/mappings/ ready-made tables.",
        parse=parse_payloads,
        example=[{
            "topic": "iotgateway",
            "readings": "document.values",
            "tag": "reading.id",
            "value": "reading.v",
            "quality": "reading.q",
            "good": [True],
            "time": "reading.t",
            "time_format": "epoch_ms",
            "tags": {"Channel1.EAF1.MainIncomer": "plant-a/eaf-1/energy/main-incomer",
                     "Channel1.EAF1.TappedSteel": "plant-a/eaf-1/production/tapped-steel"},
        }]))


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
    watermark_wall_clock: bool = field(default=True, metadata=doc(
        "A line's watermark moves no further than this machine's clock, so one gateway "
        "whose clock runs fast cannot make the line's other readings late. Turn it off "
        "only for a simulated plant whose clock runs ahead of the wall clock.",
        default_help="on"))
    min_production_t: float | None = field(default=None, metadata=doc(
        "Production (t) a window needs to have an intensity.",
        default_help="more than 0",
        hint=0.5))
    plant_timezone: str = field(default="UTC", metadata=doc(
        "IANA time zone of the plant's calendar, in which shifts, days and months start "
        "(Europe/Berlin, Asia/Shanghai, ...); clock changes are honoured."))
    shifts: TextList = field(default=TextList("00:00,08:00,16:00"), metadata=doc(
        "Comma-separated local start times (HH:MM) of the plant's shifts (in the config "
        "file also a list); each shift lasts until the next one starts."))
    period_grace: Duration = field(default=Duration("2h"), metadata=doc(
        "How long after a shift, day or month ends (in the line's event time, or wall "
        "clock for a silent line) it still takes late readings before its final totals "
        "are written."))
    grid_factor: float | None = field(default=None, metadata=doc(
        "CO2 emission factor of bought electricity, kgCO2 per kWh (= tCO2 per MWh), for "
        "co2_indirect_t: the plant's regional, market or supplier factor.",
        default_help="the newest national factor in the reference data",
        hint=0.5703))

    @property
    def shift_starts(self) -> list[str]:
        return TextList(self.shifts).items

    def check(self) -> None:
        try:
            zone(self.plant_timezone)
        except ValueError as exc:
            raise ConfigError("plant_timezone", str(exc)) from None
        try:
            parse_shifts(self.shift_starts)
        except ValueError as exc:
            raise ConfigError("shifts", str(exc)) from None
        if self.period_grace.ms < 0:
            raise ConfigError("period_grace", "must not be negative")
        if self.min_production_t is not None and self.min_production_t < 0:
            raise ConfigError("min_production_t", "must not be negative")
        check_grid_factor(self.grid_factor)
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
        'the reference data), batch (true: every production reading with a positive delta '
        'closes a batch, written as an energy_batch point, and the spike rule compares '
        'batches), idle_kw (a batch line is idle, so no alert starts, while its energy rate '
        'over surge_window is below this many kW), and alert_for, spike_ratio, '
        'spike_clear_ratio and surge_k to override the daemon-wide settings for that line; '
        + PROCESS_HELP, parse=parse_lines,
        example={"plant-a/eaf-1": {"product": "eaf_steel", "spike_ratio": 1.6,
                                   "batch": True, "idle_kw": 500}, **PROCESS_EXAMPLE}))

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
