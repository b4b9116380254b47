"""The NATS JetStream source: readings from a partitioned stream, only from the
partitions this daemon holds a lease on (docs/scale-out.md). A
``wattline.ingest.sources.base.Source``, like the MQTT one.

One asyncio loop on a thread of its own runs the NATS client: the lease rounds
(``leases.Leases``, every third of the TTL) and one pull consumer per held partition.
Messages go to ``submit`` on one more thread, one batch at a time, so a full pipeline
queue slows the consumers down without holding back the lease renewals. With
acknowledgements left to the pipeline (``manual_ack``) each message's token is the
JetStream message, acknowledged once ``ack(token)`` is called; without, a batch is
acknowledged once handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)

from wattline.ingest.config_nats import NatsUrl
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sources.leases import LeaseChanges, Leases, LeaseTaken
from wattline.ingest.sources.nats_layout import (
    consumer_name,
    lease_bucket,
    partition_subject,
    topic_of_subject,
)

__all__ = ["NatsSource", "ensure_layout"]

log = logging.getLogger("wattline.nats")

FETCH_BATCH = 512
MAX_ACK_PENDING = 20_000
ACK_WAIT_S = 30.0
FETCH_TIMEOUT_S = 2.0
RELEASE_WAIT_S = 3.0


async def ensure_layout(js: Any, stream: str, partitions: int, lease_ttl_s: float,
                        replicas: int = 1) -> tuple[bool, bool]:
    """Create the stream and the lease bucket when missing; (stream made, bucket made)."""
    made_stream = made_bucket = False
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=[f"{stream}.*.>"], num_replicas=replicas,
                            storage=api.StorageType.FILE)
        made_stream = True
    try:
        await js.key_value(lease_bucket(stream))
    except BucketNotFoundError:
        await js.create_key_value(bucket=lease_bucket(stream), history=1, ttl=lease_ttl_s,
                                  replicas=replicas)
        made_bucket = True
    return made_stream, made_bucket


class _KvBucket:
    """``leases.LeaseBucket`` on a NATS key-value bucket."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def entries(self) -> dict[str, tuple[str, int]]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return {}
        result = {}
        for key in keys:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue  # expired or deleted since listed
            result[key] = ((entry.value or b"").decode(), int(entry.revision))
        return result

    async def put(self, key: str, value: str) -> int:
        return int(await self.kv.put(key, value.encode()))

    async def create(self, key: str, value: str) -> int:
        try:
            return int(await self.kv.create(key, value.encode()))
        except KeyWrongLastSequenceError:
            raise LeaseTaken(key) from None

    async def update(self, key: str, value: str, revision: int) -> int:
        try:
            return int(await self.kv.update(key, value.encode(), last=revision))
        except KeyWrongLastSequenceError:
            raise LeaseTaken(key) from None

    async def delete(self, key: str, revision: int) -> None:
        try:
            await self.kv.delete(key, last=revision)
        except KeyWrongLastSequenceError:
            raise LeaseTaken(key) from None


class NatsSource:
    """Consumes the partitions this member holds; see the module doc."""

    def __init__(
        self,
        url: NatsUrl,
        on_message: Callable[..., None],
        *,
        stream: str,
        partitions: int,
        member: str,
        lease_ttl_s: float,
        metrics: CollectorMetrics | None = None,
        manual_ack: bool = False,
    ) -> None:
        self._url = url
        self._on_message = on_message
        self._stream = stream
        self._partitions = partitions
        self._member = member
        self._ttl_s = lease_ttl_s
        self._metrics = metrics
        self._manual_ack = manual_ack
        self.on_connect: list[Callable[[], None]] = []
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats",
                                        daemon=True)
        self._handover = ThreadPoolExecutor(1, thread_name_prefix="nats-submit")
        self._stopping = False
        self._nc: Any = None
        self._js: Any = None
        self._leases: Leases | None = None
        self._consumers: dict[int, asyncio.Task[None]] = {}
        self._subscriptions: dict[int, Any] = {}
        self._main: Any = None
        self._main_task: asyncio.Task[Any] | None = None
        self._acks: list[Any] = []
        self._acks_lock = threading.Lock()

    @property
    def owned(self) -> list[int]:
        """The partitions this member holds now."""
        return sorted(self._leases.held) if self._leases else []

    def start(self) -> None:
        log.info("connecting to %s (stream %s, %d partitions, member %s)", self._url.url,
                 self._stream, self._partitions, self._member)
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def stop(self) -> None:
        """Stop consuming, give up every lease at once, and close the connection."""
        self._stopping = True
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            done.result(timeout=10)
        except Exception as exc:  # noqa: BLE001 - a failed shutdown must not stop the drain
            log.warning("leaving NATS: %s", exc)
        self._handover.shutdown(wait=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.connected.clear()

    def ack(self, token: Any) -> None:
        if token is None:
            return
        with self._acks_lock:
            first = not self._acks
            self._acks.append(token)
        if first:
            # Once stopped, the stream sends what was not acknowledged again.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(
                    lambda: self._loop.create_task(self._flush_acks()))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish on the NATS connection (any thread); NATS keeps nothing retained."""
        if self._nc is None or not self.connected.is_set():
            return
        subject = topic.replace(".", "//").replace("/", ".")
        asyncio.run_coroutine_threadsafe(self._nc.publish(subject, payload), self._loop)

    # -- on the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        self._main_task = asyncio.current_task()
        delay = 1.0
        while not self._stopping:
            try:
                self._nc = await nats.connect(
                    self._url.url, name=self._member, max_reconnect_attempts=-1,
                    reconnected_cb=self._reconnected, disconnected_cb=self._disconnected,
                    allow_reconnect=True, connect_timeout=5)
                break
            except Exception as exc:  # noqa: BLE001 - any connect failure is retried
                log.warning("cannot connect to %s: %s; retrying in %.0f s", self._url.url,
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if self._stopping:
            return
        self._js = self._nc.jetstream()
        made = await ensure_layout(self._js, self._stream, self._partitions, self._ttl_s)
        if any(made):
            log.warning("made the missing %s on %s (one replica; `wattline nats setup` "
                        "chooses replicas)", " and ".join(
                            n for n, m in zip(("stream", "lease bucket"), made, strict=False) if m),
                        self._url.url)
        kv = await self._js.key_value(lease_bucket(self._stream))
        self._leases = Leases(_KvBucket(kv), self._member, self._partitions,
                              before_release=self._stop_consuming)
        log.info("connected to %s", self._url.url)
        self.connected.set()
        self._call_on_connect()
        while not self._stopping:
            try:
                changes = await self._leases.round()
                await self._apply(changes)
                await self._report_lag()
            except Exception as exc:  # noqa: BLE001 - a failed round is retried next time
                log.warning("lease round failed: %s", exc)
            await asyncio.sleep(self._ttl_s / 3)

    async def _apply(self, changes: LeaseChanges) -> None:
        for p in changes.lost:
            await self._stop_consuming(p)
        for p in changes.acquired:
            self._consumers[p] = self._loop.create_task(self._consume(p))
        if changes.acquired or changes.released or changes.lost:
            log.info("partitions held: %s (acquired %s, released %s, lost %s)",
                     self.owned, changes.acquired, changes.released, changes.lost)
        if self._metrics:
            m = self._metrics
            m.nats_partitions_owned.set(len(self.owned))
            for change in ("acquired", "released", "lost"):
                n = len(getattr(changes, change))
                if n:
                    m.nats_lease_changes.labels(change).inc(n)

    async def _report_lag(self) -> None:
        if not self._metrics:
            return
        for p, sub in list(self._subscriptions.items()):
            try:
                info = await sub.consumer_info()
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            self._metrics.nats_consumer_lag.labels(str(p)).set(info.num_pending)

    async def _stop_consuming(self, p: int) -> None:
        task = self._consumers.pop(p, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        sub = self._subscriptions.pop(p, None)
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()
        if self._metrics:
            with contextlib.suppress(KeyError):
                self._metrics.nats_consumer_lag.remove(str(p))

    async def _consume(self, p: int) -> None:
        sub = await self._subscribe(p)
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except NatsTimeout:
                sub = await self._renew_if_stalled(p, sub)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnecting; try again
                log.debug("fetch from partition %d: %s", p, exc)
                await asyncio.sleep(0.5)
                continue
            await loop.run_in_executor(self._handover, self._hand_over, msgs)
            if not self._manual_ack:
                for msg in msgs:
                    with contextlib.suppress(Exception):  # sent again if not acknowledged
                        await msg.ack()

    async def _subscribe(self, p: int) -> Any:
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                                    max_ack_pending=MAX_ACK_PENDING,
                                    deliver_policy=api.DeliverPolicy.ALL)
        sub = await self._js.pull_subscribe(partition_subject(self._stream, p),
                                            durable=consumer_name(self._stream, p),
                                            stream=self._stream, config=config)
        self._subscriptions[p] = sub
        return sub

    async def _renew_if_stalled(self, p: int, sub: Any) -> Any:
        """A fetch that timed out while the partition has messages waiting: the client's
        pull request was lost (it can outlive the client's timeout on the server and take
        what follows); a subscription of its own inbox starts clean."""
        try:
            info = await sub.consumer_info()
        except Exception:  # noqa: BLE001 - reconnecting; the next fetch tries again
            return sub
        if info.num_pending == 0:
            return sub
        log.info("partition %d: %d messages waiting but none delivered; subscribing again",
                 p, info.num_pending)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        return await self._subscribe(p)

    def _hand_over(self, msgs: list[Any]) -> None:
        for msg in msgs:
            if self._stopping:
                return
            topic = topic_of_subject(msg.subject)
            if self._manual_ack:
                self._on_message(topic, msg.data, msg)
            else:
                self._on_message(topic, msg.data)

    async def _flush_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        for msg in acks:
            with contextlib.suppress(Exception):  # unacknowledged: the stream sends it again
                await msg.ack()

    async def _shutdown(self) -> None:
        task = self._main_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for p in list(self._consumers):
            await self._stop_consuming(p)
        if self._leases is not None and self._nc is not None and self._nc.is_connected:
            held = sorted(self._leases.held)
            try:
                released = await asyncio.wait_for(self._leases.release_all(), RELEASE_WAIT_S)
                log.info("released partitions %s", released)
            except Exception as exc:  # noqa: BLE001 - they expire at the TTL instead
                released = []
                log.warning("could not give up partitions %s (%s): they pass to the others "
                            "when their leases expire", held, exc or type(exc).__name__)
            if self._metrics:
                self._metrics.nats_partitions_owned.set(0)
                if released:
                    self._metrics.nats_lease_changes.labels("released").inc(len(released))
        with contextlib.suppress(Exception):  # unacknowledged: the stream sends them again
            await asyncio.wait_for(self._flush_acks(), RELEASE_WAIT_S)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), RELEASE_WAIT_S)

    def _call_on_connect(self) -> None:
        for callback in self.on_connect:
            self._loop.run_in_executor(None, callback)

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS")
        self.connected.set()
        self._call_on_connect()

    async def _disconnected(self) -> None:
        if not self._stopping:
            log.warning("disconnected from NATS; reconnecting")
        self.connected.clear()
