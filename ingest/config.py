"""The daemon's settings: one typed schema, validated once at start-up.

Settings come from four places, the first that names a key wins: a command-line
flag, an environment variable ``WATTLINE_<FLAG>`` (``--mqtt-url`` reads
``WATTLINE_MQTT_URL``), the TOML config file, and the defaults here. The CLI
merges the first three; ``settings_from_mapping`` validates the result and names
the offending key (and its line in the file) when something is wrong.

A config file holds the flags' keys with underscores at the top level, plus
optional ``[meters."<site>/<line>/<kind>/<meter>"]`` tables that describe meters
the way a retained ``meta`` message would (the file wins over ``meta``).
See ``deploy/wattline.example.toml`` for every key.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from wattline.contract.durations import parse_duration_ms
from wattline.contract.errors import ConfigError


@dataclass(frozen=True)
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
    """``mqtt://[user:pass@]host:port``; ``mqtts://`` for TLS (port 8883 by default)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(key, f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(key, f"bad port in {url!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(key, f"no host in {url!r}; expected mqtt://host:port")
    return MqttUrl(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


@dataclass(frozen=True)
class MeterSettings:
    """A meter described in the config file: it overrides the meter's ``meta``."""

    carrier: str | None = None
    unit: str | None = None
    mode: str | None = None
    rollover: float | None = None


@dataclass(frozen=True)
class LineSettings:
    """A line described in the config file: its product (national levels) and alert tuning.

    ``None`` takes the daemon-wide setting of the same name.
    """

    product: str | None = None
    alert_for: int | None = None
    spike_ratio: float | None = None
    spike_clear_ratio: float | None = None
    surge_k: float | None = None


@dataclass(frozen=True)
class Settings:
    """Everything ``wattline run`` needs, validated."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "factory"
    topic_template: str = "{prefix}/{site}/{line}/{kind}/{meter}"
    client_id: str = "wattline"
    qos: int = 1
    mqtt_protocol: str = "3.1.1"
    persistent_session: bool = False
    session_expiry: str = "1h"
    mqtt_password_file: str | None = None
    mqtt_ca_file: str | None = None
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    mqtt_share_group: str | None = None
    influx_url: str | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    influx_token: str | None = field(default=None, repr=False)
    influx_token_file: str | None = None
    store: str | None = None
    store_retention: str | None = None
    state_dir: str | None = None
    spool_dir: str | None = None
    spool_max_bytes: int = 1 << 30
    dead_letter_dir: str | None = None
    checkpoint_every: str = "60s"
    metrics_port: int | None = 9464
    metrics_host: str = "127.0.0.1"
    emit_every: str = "10s"
    windows: tuple[str, ...] = ("15m", "1h", "24h")
    allowed_lateness: str = "30s"
    min_production_t: float | None = None
    max_future: str = "5m"
    max_past: str = "30d"
    max_payload_bytes: int = 1_048_576
    batch_max_messages: int = 1000
    batch_max_wait: str = "200ms"
    queue_max_messages: int = 100_000
    log_level: str = "info"
    alert_for: int = 3
    spike_ratio: float = 1.5
    spike_clear_ratio: float = 1.2
    spike_short_window: str | None = None
    spike_long_window: str | None = None
    surge_window: str | None = None
    surge_k: float = 4.0
    level_window: str | None = None
    stale_after: str = "5m"
    alert_topic: bool = True
    sparkplug: bool = False
    meters: dict[str, MeterSettings] = field(default_factory=dict)
    lines: dict[str, LineSettings] = field(default_factory=dict)

    # Derived, in milliseconds; filled by settings_from_mapping.
    @property
    def emit_every_ms(self) -> int:
        return parse_duration_ms(self.emit_every, "emit_every")

    @property
    def windows_ms(self) -> tuple[int, ...]:
        return tuple(parse_duration_ms(w, "windows") for w in self.windows)

    @property
    def allowed_lateness_ms(self) -> int:
        return parse_duration_ms(self.allowed_lateness, "allowed_lateness")

    @property
    def max_future_ms(self) -> int:
        return parse_duration_ms(self.max_future, "max_future")

    @property
    def max_past_ms(self) -> int:
        return parse_duration_ms(self.max_past, "max_past")

    @property
    def store_retention_days(self) -> int | None:
        """Whole days the Parquet store keeps; None keeps everything."""
        if self.store_retention is None:
            return None
        return parse_duration_ms(self.store_retention, "store_retention") // 86_400_000

    @property
    def session_expiry_ms(self) -> int:
        return parse_duration_ms(self.session_expiry, "session_expiry")

    def resolved_mqtt_password(self) -> str | None:
        """The broker password: from ``mqtt_password_file`` when given, else from the URL."""
        if self.mqtt_password_file:
            with open(self.mqtt_password_file, encoding="utf-8") as f:
                return f.read().strip()
        return parse_mqtt_url(self.mqtt_url).password

    @property
    def spike_windows(self) -> tuple[str, str]:
        """(short, long) windows the spike rule compares: the first and last by default."""
        by_length = sorted(self.windows, key=lambda w: parse_duration_ms(w))
        return (self.spike_short_window or by_length[0], self.spike_long_window or by_length[-1])

    @property
    def level_window_name(self) -> str:
        """The window compared with national levels: 24h when configured, else the longest."""
        if self.level_window:
            return self.level_window
        if "24h" in self.windows:
            return "24h"
        return max(self.windows, key=lambda w: parse_duration_ms(w))

    @property
    def surge_window_ms(self) -> int:
        """The power-surge rule's window; by default 1 min, rounded up to whole ticks."""
        if self.surge_window:
            return parse_duration_ms(self.surge_window, "surge_window")
        emit = self.emit_every_ms
        return -(-60_000 // emit) * emit

    @property
    def stale_after_ms(self) -> int:
        return parse_duration_ms(self.stale_after, "stale_after")

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

    @property
    def checkpoint_every_ms(self) -> int:
        return parse_duration_ms(self.checkpoint_every, "checkpoint_every")

    @property
    def batch_max_wait_ms(self) -> int:
        return parse_duration_ms(self.batch_max_wait, "batch_max_wait")

    def resolved_influx_token(self) -> str | None:
        """The token itself, read from ``influx_token_file`` when that is given."""
        if self.influx_token_file:
            with open(self.influx_token_file, encoding="utf-8") as f:
                return f.read().strip()
        return self.influx_token


SETTING_KEYS = tuple(f.name for f in fields(Settings))


def _check_type(key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in (
        expected if isinstance(expected, tuple) else (expected,)
    ):
        raise ConfigError(key, f"expected {_type_name(expected)}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(key, f"expected {_type_name(expected)}, got {value!r}")


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _unknown_key(key: str, known: tuple[str, ...], where: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    return ConfigError(
        f"{where}{key}",
        "unknown key",
        suggestion=f"did you mean {close[0]!r}?" if close else None,
    )


def settings_from_mapping(values: dict[str, Any]) -> Settings:
    """Validate merged settings; raise ``ConfigError`` naming the key."""
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in SETTING_KEYS:
            raise _unknown_key(key, SETTING_KEYS)
        kwargs[key] = value
    ints = ("qos", "metrics_port", "max_payload_bytes", "batch_max_messages", "queue_max_messages",
            "alert_for", "spool_max_bytes")
    for key in ints:
        if key in kwargs:
            if isinstance(kwargs[key], str) and kwargs[key].strip().lstrip("-").isdigit():
                kwargs[key] = int(kwargs[key])
            _check_type(key, kwargs[key], int)
    strs = (
        "mqtt_url", "topic_prefix", "topic_template", "client_id", "mqtt_protocol",
        "mqtt_password_file",
        "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file", "mqtt_share_group", "influx_url",
        "influx_org", "influx_bucket",
        "influx_token", "influx_token_file", "store", "state_dir", "metrics_host", "log_level",
        "spike_short_window", "spike_long_window", "level_window", "spool_dir",
        "dead_letter_dir",
    )
    for key in strs:
        if key in kwargs:
            _check_type(key, kwargs[key], str)
    if kwargs.get("store_retention") is not None:
        _check_type("store_retention", kwargs["store_retention"], str)
        days = parse_duration_ms(kwargs["store_retention"], "store_retention") / 86_400_000
        if days < 1 or days != int(days):
            raise ConfigError("store_retention", "give whole days, e.g. 90d (at least 1d)")
    for key in ("persistent_session", "alert_topic", "sparkplug"):
        if key in kwargs:
            kwargs[key] = _boolean(key, kwargs[key])
    for key in ("spike_ratio", "spike_clear_ratio", "surge_k"):
        if key in kwargs:
            kwargs[key] = _positive_number(key, kwargs[key])
    durations = ("emit_every", "allowed_lateness", "max_future", "max_past", "batch_max_wait",
                 "checkpoint_every", "session_expiry", "surge_window", "stale_after")
    for key in durations:
        if key in kwargs:
            _check_type(key, kwargs[key], (str, int, float))
            parse_duration_ms(kwargs[key], key)
            kwargs[key] = str(kwargs[key]) if isinstance(kwargs[key], str) else f"{kwargs[key]}s"
    if "windows" in kwargs:
        w = kwargs["windows"]
        if isinstance(w, str):
            w = [x.strip() for x in w.split(",") if x.strip()]
        if not isinstance(w, (list, tuple)) or not w:
            raise ConfigError("windows", f"expected a list like 15m,1h,24h, got {w!r}")
        for x in w:
            _check_type("windows", x, str)
            parse_duration_ms(x, "windows")
        kwargs["windows"] = tuple(w)
    if "min_production_t" in kwargs:
        v = kwargs["min_production_t"]
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise ConfigError("min_production_t", f"expected a number, got {v!r}") from None
        _check_type("min_production_t", v, (int, float))
        if v < 0:
            raise ConfigError("min_production_t", "must not be negative")
        kwargs["min_production_t"] = float(v)
    if "meters" in kwargs:
        kwargs["meters"] = _meters(kwargs["meters"])
    if "lines" in kwargs:
        kwargs["lines"] = _lines(kwargs["lines"])
    settings = Settings(**kwargs)
    parse_mqtt_url(settings.mqtt_url)
    from wattline.contract.topics import TopicTemplate

    TopicTemplate(settings.topic_template, prefix=settings.topic_prefix)  # ConfigError if bad
    if settings.qos not in (0, 1, 2):
        raise ConfigError("qos", f"must be 0, 1 or 2, got {settings.qos}")
    if settings.mqtt_protocol not in ("3.1.1", "5"):
        raise ConfigError("mqtt_protocol", f"must be 3.1.1 or 5, got {settings.mqtt_protocol!r}")
    if settings.persistent_session and settings.client_id in ("", None):
        raise ConfigError("persistent_session", "a persistent session needs a fixed client_id")
    if bool(settings.mqtt_cert_file) != bool(settings.mqtt_key_file):
        raise ConfigError("mqtt_key_file" if settings.mqtt_cert_file else "mqtt_cert_file",
                          "give mqtt_cert_file and mqtt_key_file together")
    for key in ("mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file"):
        path = getattr(settings, key)
        if path and not os.path.isfile(path):
            raise ConfigError(key, f"no such file: {path}")
    if settings.mqtt_share_group is not None and not re.fullmatch(
            r"[A-Za-z0-9_.-]{1,64}", settings.mqtt_share_group):
        raise ConfigError("mqtt_share_group", "use 1-64 of A-Z a-z 0-9 _ . -")
    if settings.metrics_port is not None and not 0 <= settings.metrics_port <= 65535:
        raise ConfigError(
            "metrics_port", f"must be a TCP port (0-65535), got {settings.metrics_port}"
        )
    emit = settings.emit_every_ms
    if emit <= 0:
        raise ConfigError("emit_every", "must be positive")
    for w, w_ms in zip(settings.windows, settings.windows_ms, strict=True):
        if w_ms <= 0 or w_ms % emit:
            raise ConfigError(
                "windows",
                f"window {w} is not a whole number of ticks of emit_every {settings.emit_every}",
                suggestion="make every window a multiple of emit_every",
            )
    if len(set(settings.windows_ms)) != len(settings.windows_ms):
        raise ConfigError("windows", f"windows repeat: {', '.join(settings.windows)}")
    influx = [settings.influx_url, settings.influx_bucket]
    if any(influx) and not all(influx):
        raise ConfigError(
            "influx_url" if not settings.influx_url else "influx_bucket",
            "influx_url and influx_bucket go together",
            suggestion="give both, or neither to write only the local store",
        )
    if settings.influx_token and settings.influx_token_file:
        raise ConfigError("influx_token_file", "give influx_token or influx_token_file, not both")
    if settings.influx_token_file and not os.path.isfile(settings.influx_token_file):
        raise ConfigError("influx_token_file", f"no such file: {settings.influx_token_file}")
    for key in ("batch_max_messages", "queue_max_messages", "max_payload_bytes",
                "spool_max_bytes"):
        if getattr(settings, key) <= 0:
            raise ConfigError(key, "must be positive")
    _check_alert_settings(settings)
    return settings


def _positive_number(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    _check_type(key, value, (int, float))
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    return float(value)


def _check_alert_settings(settings: Settings) -> None:
    if settings.alert_for < 1:
        raise ConfigError("alert_for", "must be at least 1 tick")
    for key in ("spike_short_window", "spike_long_window", "level_window"):
        value = getattr(settings, key)
        if value is not None and value not in settings.windows:
            raise ConfigError(key, f"{value!r} is not one of the windows "
                              f"{', '.join(settings.windows)}",
                              suggestion="name a window exactly as it is written in windows")
    short, long_ = settings.spike_windows
    if parse_duration_ms(short) >= parse_duration_ms(long_):
        raise ConfigError("spike_short_window",
                          f"the spike rule compares a short window with a longer one; "
                          f"{short} is not shorter than {long_}")
    if settings.surge_window_ms % settings.emit_every_ms or settings.surge_window_ms <= 0:
        raise ConfigError("surge_window", f"must be a whole number of ticks of emit_every "
                          f"{settings.emit_every}")
    if settings.stale_after_ms <= 0:
        raise ConfigError("stale_after", "must be positive")
    if settings.spike_clear_ratio > settings.spike_ratio:
        raise ConfigError("spike_clear_ratio",
                          f"the end ratio {settings.spike_clear_ratio} is above the start ratio "
                          f"{settings.spike_ratio}",
                          suggestion="make spike_clear_ratio <= spike_ratio")
    for name, line in settings.lines.items():
        ratio = line.spike_ratio or settings.spike_ratio
        clear = line.spike_clear_ratio or settings.spike_clear_ratio
        if clear > ratio:
            raise ConfigError(f"lines.{name!r}.spike_clear_ratio",
                              f"the end ratio {clear} is above the start ratio {ratio}",
                              suggestion="an alert ends below where it starts: make "
                              "spike_clear_ratio <= spike_ratio")


_LINE_KEYS = ("product", "alert_for", "spike_ratio", "spike_clear_ratio", "surge_k")


def _lines(table: Any) -> dict[str, LineSettings]:
    from wattline.contract.reference_data import load_reference

    if not isinstance(table, dict):
        raise ConfigError("lines", 'expected tables like [lines."site/line"]')
    products = sorted(load_reference().levels)
    out: dict[str, LineSettings] = {}
    for name, spec in table.items():
        where = f"lines.{name!r}"
        if name.count("/") != 1 or not all(name.split("/")):
            raise ConfigError(where, "a line is named site/line")
        if not isinstance(spec, dict):
            raise ConfigError(where, "expected a table with product and alert settings")
        for k in spec:
            if k not in _LINE_KEYS:
                raise _unknown_key(k, _LINE_KEYS, where=f"{where}.")
        product = spec.get("product")
        if product is not None and product not in products:
            close = difflib.get_close_matches(str(product), products, n=1)
            raise ConfigError(f"{where}.product", f"no national levels for {product!r}; the "
                              f"reference data has {', '.join(products)}",
                              suggestion=f"did you mean {close[0]!r}?" if close else None)
        alert_for = spec.get("alert_for")
        if alert_for is not None and (isinstance(alert_for, bool)
                                      or not isinstance(alert_for, int) or alert_for < 1):
            raise ConfigError(f"{where}.alert_for", f"must be a whole number of ticks >= 1, "
                              f"got {alert_for!r}")
        numbers = {k: _positive_number(f"{where}.{k}", spec[k])
                   for k in ("spike_ratio", "spike_clear_ratio", "surge_k") if k in spec}
        out[name] = LineSettings(product=product, alert_for=alert_for, **numbers)
    return out


_METER_KEYS = ("carrier", "unit", "mode", "rollover")


def _meters(table: Any) -> dict[str, MeterSettings]:
    if not isinstance(table, dict):
        raise ConfigError("meters", 'expected tables like [meters."site/line/energy/meter"]')
    out: dict[str, MeterSettings] = {}
    for name, spec in table.items():
        where = f"meters.{name!r}"
        if name.count("/") != 3:
            raise ConfigError(where, "a meter is named site/line/kind/meter")
        if not isinstance(spec, dict):
            raise ConfigError(where, "expected a table with carrier, unit, mode, rollover")
        for k in spec:
            if k not in _METER_KEYS:
                raise _unknown_key(k, _METER_KEYS, where=f"{where}.")
        mode = spec.get("mode")
        if mode is not None and mode not in ("counter", "delta"):
            raise ConfigError(f"{where}.mode", f"must be counter or delta, got {mode!r}")
        rollover = spec.get("rollover")
        if rollover is not None and (
            isinstance(rollover, bool) or not isinstance(rollover, (int, float)) or rollover <= 0
        ):
            raise ConfigError(f"{where}.rollover", f"must be a positive number, got {rollover!r}")
        for k in ("carrier", "unit"):
            if spec.get(k) is not None and not isinstance(spec[k], str):
                raise ConfigError(f"{where}.{k}", f"expected a string, got {spec[k]!r}")
        out[name] = MeterSettings(
            carrier=spec.get("carrier"),
            unit=spec.get("unit"),
            mode=mode,
            rollover=float(rollover) if rollover is not None else None,
        )
    return out


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config; errors name the file, key and line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            "config", f"{path} is not valid TOML: {exc}", line=int(m.group(1)) if m else None
        ) from None
    # Flag-style spellings (mqtt-url) are accepted too.
    values = {k.replace("-", "_"): v for k, v in values.items()}
    for key in values:
        if key not in SETTING_KEYS:
            err = _unknown_key(key, SETTING_KEYS)
            err.line = _line_of(text, key)
            err.path = path
            raise err
    return values


def _line_of(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` is set in a TOML text, for error messages."""
    pattern = re.compile(rf"^\s*\[?\s*\"?{re.escape(key)}\"?\s*[=\].]")
    alt = key.replace("_", "-")
    pattern_alt = re.compile(rf"^\s*\[?\s*\"?{re.escape(alt)}\"?\s*[=\].]")
    for n, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line) or pattern_alt.match(line):
            return n
    return None


def point_at_file(err: ConfigError, path: str) -> None:
    """Make a validation error name ``path`` and the line its key is set on."""
    if err.line is None:
        text = Path(path).read_text(encoding="utf-8")
        err.line = _line_of(text, err.key.split(".")[0])
    err.path = path


def check_config_file(path: str) -> Settings:
    """Read and validate a config file alone; ``ConfigError`` points at the line."""
    values = read_config_file(path)
    try:
        return settings_from_mapping(values)
    except ConfigError as err:
        point_at_file(err, path)
        raise
