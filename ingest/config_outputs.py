"""The settings of the outputs and of the process: InfluxDB, the Parquet store,
checkpoints and spool, /metrics, the pipeline's batches and the log. Declared like
the sections of ``config_sections``, which holds the input's and the computation's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import field
from urllib.parse import urlsplit

from wattline.contract.errors import ConfigError
from wattline.ingest.config_schema import Duration, doc, with_ms_accessors
from wattline.ingest.config_sections import Section, must_exist, read_secret
from wattline.ingest.redact import configure_logging, redact_url

__all__ = ["DurabilitySettings", "InfluxSettings", "LoggingSettings", "MetricsSettings",
           "PipelineSettings", "StoreSettings"]

PASSWORD_ENV = "WATTLINE_INFLUX_PASSWORD"
"""Where the InfluxDB 1.x password may come from besides --influx-password-file."""
_V1_ONLY = ("influx_db", "influx_rp", "influx_user", "influx_password_file")


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class InfluxSettings(Section):
    """Where intensity points and alerts are written: the InfluxDB sink."""

    influx_url: str | None = field(default=None, metadata=doc(
        "InfluxDB to write energy_intensity and energy_alert points to, e.g. "
        "http://127.0.0.1:8086: InfluxDB 2/3 or any /api/v2/write server, or InfluxDB 1.x "
        "with --influx-api v1.",
        hint="http://127.0.0.1:8086"))
    influx_api: str = field(default="v2", metadata=doc(
        "Which write API the server speaks: v2 (/api/v2/write with --influx-org, "
        "--influx-bucket and a token: InfluxDB 2/3) or v1 (/write with --influx-db: "
        "InfluxDB 1.x).",
        choices=("v1", "v2")))
    influx_org: str | None = field(default=None, metadata=doc(
        "InfluxDB organisation (v2 API).",
        hint="plant"))
    influx_bucket: str | None = field(default=None, metadata=doc(
        "InfluxDB bucket (v2 API; required with --influx-url).",
        hint="energy"))
    influx_db: str | None = field(default=None, metadata=doc(
        "InfluxDB 1.x database (v1 API; required with --influx-url there). It must exist: "
        "CREATE DATABASE.",
        hint="energy"))
    influx_rp: str | None = field(default=None, metadata=doc(
        "InfluxDB 1.x retention policy to write to (v1 API).",
        default_help="the database's default",
        hint="autogen"))
    influx_user: str | None = field(default=None, metadata=doc(
        "InfluxDB 1.x user (v1 API), for a server with authentication; the password comes "
        "from --influx-password-file or the WATTLINE_INFLUX_PASSWORD environment variable, "
        "never from a flag.",
        hint="wattline"))
    influx_password_file: str | None = field(default=None, metadata=doc(
        "File holding the InfluxDB 1.x user's password (v1 API).",
        hint="/etc/wattline/influx.password"))
    influx_token: str | None = field(default=None, repr=False, metadata=doc(
        "InfluxDB API token. Prefer --influx-token-file or the WATTLINE_INFLUX_TOKEN "
        "environment variable: flags show up in process lists.",
        hint="..."))
    influx_token_file: str | None = field(default=None, metadata=doc(
        "File holding the InfluxDB API token.",
        hint="/etc/wattline/influx.token"))
    influx_timeout: Duration = field(default=Duration("10s"), metadata=doc(
        "How long one write may wait for InfluxDB's answer before it is retried. Writes "
        "run on their own thread: the pipeline never waits for them."))
    influx_health_timeout: Duration = field(default=Duration("2s"), metadata=doc(
        "How long connecting to InfluxDB and a /ping may take, and how long a write may go "
        "unanswered before the health check says the server is not answering and new "
        "batches go to the spool; at most --influx-timeout."))

    def resolved_influx_password(self) -> str | None:
        """The v1 user's password: from ``influx_password_file``, else from the
        WATTLINE_INFLUX_PASSWORD environment variable."""
        if self.influx_password_file:
            return read_secret(self.influx_password_file)
        return os.environ.get(PASSWORD_ENV) or None

    def resolved_influx_token(self) -> str | None:
        """The token itself, read from ``influx_token_file`` when that is given."""
        if self.influx_token_file:
            return read_secret(self.influx_token_file)
        return self.influx_token

    def check(self) -> None:
        if self.influx_url:
            check_http_url("influx_url", self.influx_url)
        if self.influx_api == "v1":
            self._check_v1()
        else:
            for key in _V1_ONLY:
                if getattr(self, key):
                    raise ConfigError(key, "is a setting of the v1 API (InfluxDB 1.x)",
                                      suggestion="add influx_api = \"v1\", or use "
                                      "influx_bucket, influx_org and a token for v2")
        if self.influx_api == "v2" and bool(self.influx_url) != bool(self.influx_bucket):
            raise ConfigError(
                "influx_url" if not self.influx_url else "influx_bucket",
                "influx_url and influx_bucket go together",
                suggestion="give both, or neither to write only the local store",
            )
        if self.influx_token and self.influx_token_file:
            raise ConfigError("influx_token_file",
                              "give influx_token or influx_token_file, not both")
        must_exist(self, "influx_token_file")
        if self.influx_timeout.ms <= 0:
            raise ConfigError("influx_timeout", "must be positive")
        if not 0 < self.influx_health_timeout.ms <= self.influx_timeout.ms:
            raise ConfigError("influx_health_timeout", "must be positive and at most "
                              f"influx_timeout ({self.influx_timeout})",
                              suggestion='e.g. influx_timeout = "10s", '
                              'influx_health_timeout = "2s"')

    def _check_v1(self) -> None:
        if bool(self.influx_url) != bool(self.influx_db):
            raise ConfigError("influx_url" if not self.influx_url else "influx_db",
                              "with influx_api v1, influx_url and influx_db go together",
                              suggestion="give both, or neither to write only the local store")
        for key in ("influx_org", "influx_bucket", "influx_token", "influx_token_file"):
            if getattr(self, key):
                raise ConfigError(key, "is a setting of the v2 API; InfluxDB 1.x (influx_api "
                                  "v1) takes influx_db, influx_rp and influx_user")
        if self.influx_url:
            parts = urlsplit(self.influx_url)
            if parts.username or parts.password:
                raise ConfigError("influx_url", "holds credentials; give the user with "
                                  "influx_user and the password with influx_password_file or "
                                  f"{PASSWORD_ENV}")
        must_exist(self, "influx_password_file")
        if self.influx_user and not self.resolved_influx_password():
            raise ConfigError("influx_user", "has no password",
                              suggestion=f"give influx_password_file, or set {PASSWORD_ENV}")
        if self.influx_password_file and not self.influx_user:
            raise ConfigError("influx_password_file", "needs influx_user")


def check_http_url(key: str, url: str) -> None:
    """``ConfigError`` unless ``url`` is http(s)://host[:port][/path] (shown without its
    password)."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f"expected http://host:port or https://host:port, got {shown!r}")
    try:
        _ = parts.port  # a bad port raises ValueError
    except ValueError as exc:
        raise ConfigError(key, f"bad port in {shown!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(key, f"no host in {shown!r}; expected http://host:port")


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
    summary_every: Duration = field(default=Duration("5m"), metadata=doc(
        "How often to log one summary line per line (readings taken, newest kgce/t per "
        "window) and one of the readings dropped by reason; 0 turns the summaries off."))

    def configure(self) -> None:
        """Send this process's log to stderr at ``log_level``, with credentials (a URL's
        password, a token) replaced by ``***`` in every line."""
        configure_logging(self.log_level)
