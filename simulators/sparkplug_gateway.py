"""A line's gateway as a Sparkplug B edge node: the same registers, other payloads.

The edge node is the line and its group the site (the mapping ``wattline run
--sparkplug`` reads, ``wattline.ingest.sources.sparkplug``). It sends an NBIRTH first (every
meter as a metric named ``<kind>/<meter>``, with an alias, the DOUBLE datatype and its
first reading, sequence number 0), then one NDATA per message with the meters' later
readings by alias only, each with its own timestamp, the sequence number counting up
modulo 256. Registers, wraps and dropouts behave exactly as for the JSON gateway
(``MeterRegister``); the meters' carriers still come from the retained JSON ``meta``
messages the publisher sends on the contract's topics.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence

from wattline.contract import sparkplug_b as spb
from wattline.simulators.gateway import GatewaySpec, MeterRegister, OutgoingMessage
from wattline.simulators.plant import MeterSpec

__all__ = ["SparkplugEdgeNode", "metric_name"]

NAMESPACE = "spBv1.0"


def metric_name(meter: MeterSpec) -> str:
    return f"{meter.kind}/{meter.meter}"


class SparkplugEdgeNode:
    """One line's gateway speaking Sparkplug B.

    Args:
        site: the Sparkplug group id.
        line: the edge node id.
        meters: the line's meters, in the model's order.
        specs: ``GatewaySpec`` per meter, same order.
        contract_topics: each meter's JSON reading topic, to label the readings
            (``OutgoingMessage.by_topic``) for the ground truth.
        readings_per_message: polls per NDATA.
        seed_key: names this gateway's random streams (registers).
    """

    def __init__(self, site: str, line: str, meters: Sequence[MeterSpec],
                 specs: Sequence[GatewaySpec], contract_topics: Sequence[str], *,
                 readings_per_message: int, seed_key: str) -> None:
        self.topic_birth = f"{NAMESPACE}/{site}/NBIRTH/{line}"
        self.topic_data = f"{NAMESPACE}/{site}/NDATA/{line}"
        self.meters = list(meters)
        self.contract_topics = list(contract_topics)
        self.per_message = readings_per_message
        self.registers = [MeterRegister(spec, random.Random(f"{seed_key}/{i}/register"))
                          for i, spec in enumerate(specs)]
        self._seq = 0

    def messages(self, polls: Iterable[tuple[int, Sequence[float]]]
                 ) -> Iterator[OutgoingMessage]:
        """NBIRTH at the first poll, then NDATA every ``readings_per_message`` polls."""
        group: list[list[tuple[int, float]]] = [[] for _ in self.meters]
        n = 0
        born = False
        for ts, totals in polls:
            for readings, register, total in zip(group, self.registers, totals, strict=True):
                value = register.poll(total)
                if value is not None:
                    readings.append((ts, value))
            if not born:
                yield self._birth(ts, group)
                born = True
                group = [[] for _ in self.meters]
                continue
            n += 1
            if n < self.per_message:
                continue
            if any(group):
                yield self._data(ts, group)
            group = [[] for _ in self.meters]
            n = 0
        if any(group):
            yield self._data(max(ts for r in group for ts, _ in r), group)

    def _birth(self, ts: int, group: list[list[tuple[int, float]]]) -> OutgoingMessage:
        metrics = [
            spb.Metric(name=metric_name(meter), alias=i, datatype=spb.DataType.DOUBLE,
                       timestamp=readings[0][0] if readings else ts,
                       value=readings[0][1] if readings else None, is_null=not readings)
            for i, (meter, readings) in enumerate(zip(self.meters, group, strict=True))
        ]
        self._seq = 0
        payload = spb.encode(metrics, timestamp=ts, seq=0)
        return self._message(ts, self.topic_birth, payload, group)

    def _data(self, ts: int, group: list[list[tuple[int, float]]]) -> OutgoingMessage:
        # By alias only, without the datatype (the NBIRTH gave it): a double_value each.
        metrics = [spb.Metric(alias=i, timestamp=t, value=float(v))
                   for i, readings in enumerate(group) for t, v in readings]
        self._seq = (self._seq + 1) % 256
        payload = spb.encode(metrics, timestamp=ts, seq=self._seq)
        return self._message(ts, self.topic_data, payload, group)

    def _message(self, ts: int, topic: str, payload: bytes,
                 group: list[list[tuple[int, float]]]) -> OutgoingMessage:
        """The message, with its readings flat and per contract topic (for the truth)."""
        by_topic = tuple((t, tuple(readings))
                         for t, readings in zip(self.contract_topics, group, strict=True)
                         if readings)
        flat = tuple(r for _, readings in by_topic for r in readings)
        return OutgoingMessage(ts, topic, payload, flat, by_topic=by_topic)
