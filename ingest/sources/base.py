"""The interface every source of messages implements (the MQTT session is the one today).

Lifecycle, driven by the collector (``wattline.ingest.app.daemon``), which builds
and starts the pipeline before any source, so whatever a source hands over can be
taken at once:

1. The source is built with ``submit``, the pipeline's ``submit(topic, payload, ack)``.
   Building connects to nothing.
2. ``start()`` once. It returns at once; the connection is made in the background,
   and a source that cannot reach its server keeps trying with backoff on its own
   (it never raises for a server that is down). After every connection it calls
   each of ``on_connect`` (on its own thread), which is where the collector
   publishes what a restarted broker may have forgotten.
3. While running, the source calls ``submit`` from one thread of its own, one
   message at a time, never two at once. ``submit`` blocks while the pipeline's
   queue is full; the source must let it, so the upstream server is slowed down
   instead of messages being dropped.
4. ``ack``: with acknowledgements left to the pipeline, each message comes with a
   token (``None`` for one that needs none, such as QoS 0) and the source confirms
   it upstream only when ``ack(token)`` is called, from the pipeline thread, once
   the message is durable. A token from before a reconnect may be ignored: the
   server sends an unconfirmed message again after a reconnect. Without such
   acknowledgements the token is ``None`` and the source confirms on receipt.
5. ``stop()`` once, before the pipeline stops: no ``submit`` starts after it
   returns, and the connection is closed. Messages not yet confirmed stay with the
   upstream server (a persistent session keeps them for the next start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Source", "Submit"]


class Submit(Protocol):
    """How a source hands a message to the pipeline; see step 3 of the module doc."""

    def __call__(self, topic: str, payload: bytes, ack: Any = None) -> None: ...


@runtime_checkable
class Source(Protocol):
    """A source of messages for the pipeline; see the module doc for its lifecycle."""

    on_connect: list[Callable[[], None]]
    """Called on the source's thread after every (re)connection."""

    def start(self) -> None:
        """Connect in the background, reconnecting with backoff; returns at once."""
        ...

    def stop(self) -> None:
        """Stop handing over messages and close the connection."""
        ...

    def ack(self, token: Any) -> None:
        """Confirm upstream the message ``token`` came with (any thread; ``None`` is a
        no-op, a stale token is ignored)."""
        ...
