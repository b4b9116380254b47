"""``wattline nats setup``: make the stream and lease bucket of the NATS source on a
server, and print the subject mapping its config file needs (docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import sys

import click

from wattline.contract.errors import ConfigError
from wattline.contract.topics import TopicTemplate
from wattline.ingest.config_nats import NatsSettings, parse_nats_url
from wattline.ingest.config_schema import Duration
from wattline.ingest.config_sections import MqttSettings
from wattline.ingest.sources.nats_layout import lease_bucket, server_config_block

__all__ = ["nats_group"]

_DEFAULTS = NatsSettings()
_MQTT = MqttSettings()


@click.group("nats")
def nats_group() -> None:
    """The NATS JetStream source of several daemons sharing the lines."""


@nats_group.command("setup")
@click.option("--server", default="nats://127.0.0.1:4222", show_default=True,
              help="NATS server to make the stream and bucket on.")
@click.option("--nats-stream", default=_DEFAULTS.nats_stream, show_default=True)
@click.option("--partitions", default=_DEFAULTS.partitions, show_default=True, type=int)
@click.option("--lease-ttl", default=str(_DEFAULTS.lease_ttl), show_default=True)
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 5),
              help="Copies of the stream and bucket (3 on a 3-server cluster).")
@click.option("--topic-prefix", default=_MQTT.topic_prefix, show_default=True)
@click.option("--topic-template", default=_MQTT.topic_template, show_default=True)
@click.option("--mappings-only", is_flag=True,
              help="Only print the server config's mappings block; connect to nothing.")
def setup(server: str, nats_stream: str, partitions: int, lease_ttl: str, replicas: int,
          topic_prefix: str, topic_template: str, mappings_only: bool) -> None:
    """Make the stream and the lease bucket when missing, then print the mappings block
    to put in the NATS server's config file (NATS 2.9 takes mappings from it only)."""
    try:
        settings = NatsSettings(source=server, nats_stream=nats_stream,
                                partitions=partitions, lease_ttl=Duration(lease_ttl))
        settings.check()
        template = TopicTemplate(topic_template, prefix=topic_prefix)
        if not mappings_only:
            made = asyncio.run(_setup(server, settings, replicas))
            names = (f"stream {nats_stream}", f"key-value bucket {lease_bucket(nats_stream)}")
            for what, was_made in zip(names, made, strict=True):
                click.echo(f"{what}: {'made' if was_made else 'already there'}")
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        click.echo(f"error: cannot set up {server}: {exc or type(exc).__name__}", err=True)
        sys.exit(1)
    click.echo("# in the NATS server config (then reload it: nats-server --signal reload):")
    click.echo(server_config_block(template, nats_stream, partitions), nl=False)


async def _setup(server: str, settings: NatsSettings, replicas: int) -> tuple[bool, bool]:
    import nats

    from wattline.ingest.sources.nats import ensure_layout

    nc = await nats.connect(parse_nats_url(server, "server").url, connect_timeout=5,
                            max_reconnect_attempts=0, allow_reconnect=False)
    try:
        return await ensure_layout(nc.jetstream(), settings.nats_stream, settings.partitions,
                                   settings.lease_ttl_ms / 1000, replicas)
    finally:
        await nc.close()
