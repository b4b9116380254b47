"""The NATS side of scale-out, in one place: subject names, the server's subject mapping
that partitions readings by site and line, the stream, the lease bucket and the
per-partition consumers (docs/scale-out.md).

Gateways publish MQTT topics ``factory/<site>/<line>/<kind>/<meter>`` to the server's
MQTT listener, which makes them subjects ``factory.<site>.<line>.<kind>.<meter>``; the
mapping rewrites each to ``<stream>.<partition>.factory.<site>...``, the partition a
hash of the site and line tokens, so one line always lands on one partition.
"""

from __future__ import annotations

from wattline.contract.topics import TopicTemplate

__all__ = ["consumer_name", "lease_bucket", "partition_subject", "server_config_block",
           "server_mappings",
           "topic_of_subject"]


def lease_bucket(stream: str) -> str:
    """The key-value bucket holding the stream's partition leases."""
    return f"{stream}-leases"


def consumer_name(stream: str, partition: int) -> str:
    """The durable consumer of one partition, shared by whichever daemon holds it."""
    return f"{stream}-p{partition}"


def partition_subject(stream: str, partition: int) -> str:
    return f"{stream}.{partition}.>"


def topic_of_subject(subject: str) -> str:
    """The MQTT topic a partitioned subject carries (NATS writes a topic's ``.`` as ``//``)."""
    topic = subject.split(".", 2)[2]
    return topic.replace("//", "\0").replace(".", "/").replace("\0", ".")


def server_mappings(template: TopicTemplate, stream: str, partitions: int) -> dict[str, str]:
    """The ``mappings`` block of the NATS server config: readings and meta subjects, each
    to its partition by the site and line levels of ``template``."""
    levels = template.topic("\0site", "\0line", "\0kind", "\0meter").split("/")
    wild = [i for i, level in enumerate(levels) if level.startswith("\0")]
    site, line = (wild.index(levels.index(f"\0{n}")) + 1 for n in ("site", "line"))
    result: dict[str, str] = {}
    for suffix in ("", ".meta"):
        source = ".".join("*" if lv.startswith("\0") else lv for lv in levels) + suffix
        n = 0
        parts = []
        for lv in levels:
            if lv.startswith("\0"):
                n += 1
                parts.append(f"{{{{wildcard({n})}}}}")
            else:
                parts.append(lv)
        result[source] = (f"{stream}.{{{{partition({partitions},{site},{line})}}}}."
                          + ".".join(parts) + suffix)
    return result


def server_config_block(template: TopicTemplate, stream: str, partitions: int) -> str:
    """``server_mappings`` as the text to paste into the NATS server's config file."""
    rows = "".join(f'  "{src}": "{dst}"\n'
                   for src, dst in server_mappings(template, stream, partitions).items())
    return "mappings = {\n" + rows + "}\n"
