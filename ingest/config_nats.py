"""The NATS JetStream source's settings: where readings come from when several
daemons share a plant's lines (docs/scale-out.md).

``source`` is ``mqtt`` (the default: the MQTT settings apply) or a ``nats://host:port``
URL; the other keys say which stream, how many partitions and how long a lease lives.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import field
from urllib.parse import urlsplit

from wattline.contract.errors import ConfigError
from wattline.ingest.config_schema import Duration, doc, with_ms_accessors
from wattline.ingest.config_sections import Section

__all__ = ["NatsSettings", "NatsUrl", "parse_nats_url"]


@dataclasses.dataclass(frozen=True)
class NatsUrl:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


def parse_nats_url(url: str, key: str = "source") -> NatsUrl:
    """``nats://host:port`` (port 4222 by default)."""
    parts = urlsplit(url)
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(key, f"expected mqtt or nats://host:port, got {url!r}")
    if parts.username or parts.path not in ("", "/"):
        raise ConfigError(key, f"expected nats://host:port without user or path, got {url!r}")
    try:
        port = parts.port or 4222
    except ValueError as exc:
        raise ConfigError(key, f"bad port in {url!r}: {exc}") from None
    return NatsUrl(parts.hostname, port)


@with_ms_accessors
@dataclasses.dataclass(frozen=True)
class NatsSettings(Section):
    """Readings from a NATS JetStream stream, partitioned by site and line, each partition
    consumed by the one daemon that holds its lease."""

    source: str = field(default="mqtt", metadata=doc(
        "Where readings come from: mqtt (the broker of --mqtt-url) or nats://host:port, a "
        "NATS server whose JetStream stream holds the readings gateways publish over MQTT, "
        "partitioned by site and line; the daemons sharing it each take a fair share of "
        "the partitions (docs/scale-out.md).",
        example="mqtt"))
    nats_stream: str = field(default="wattline", metadata=doc(
        "JetStream stream of the partitioned readings; its subjects are "
        "<stream>.<partition>.<MQTT topic with . for />; `wattline nats setup` makes it."))
    partitions: int = field(default=8, metadata=doc(
        "Partitions of the stream (as the server's subject mapping makes them): at most "
        "this many daemons share the work.",
        positive=True))
    lease_ttl: Duration = field(default=Duration("15s"), metadata=doc(
        "How long a daemon that stopped renewing (killed, cut off) keeps its partitions; "
        "leases are renewed every third of it."))

    @property
    def nats_url(self) -> NatsUrl | None:
        """The NATS server, or None when the source is MQTT."""
        return None if self.source == "mqtt" else parse_nats_url(self.source)

    def check(self) -> None:
        if self.source != "mqtt":
            parse_nats_url(self.source)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", self.nats_stream):
            raise ConfigError("nats_stream", "use 1-32 of A-Z a-z 0-9 _ -")
        if self.partitions > 1024:
            raise ConfigError("partitions", "at most 1024")
        if self.lease_ttl.ms < 3000:
            raise ConfigError("lease_ttl", "at least 3s (leases are renewed every third)")
