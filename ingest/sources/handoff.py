"""The bounded hand-off between the MQTT network thread and the pipeline thread.

One producer (paho's network thread) and one consumer (the pipeline thread). A
``queue.Queue`` takes a lock and signals a condition on every put and get, which was
a large share of the collector's per-message cost; here a put is a ``deque.append``
(atomic under the GIL) and the consumer takes whole batches at once. Neither side
signals the other on every message:

- the consumer, finding too few items, says how many it is waiting for and sleeps on
  an event for at most ``poll_s``; a producer that sees the buffer reach that level
  wakes it. A wake-up missed in the race between the two costs at most ``poll_s`` of
  latency, never a message. Waiting for the first item of a batch, the level is one;
  filling a batch (``fill_s``), it is the batch size, so a consumer collecting a batch
  is not woken, and a producer does not signal, once per message;
- the producer, finding the buffer full, sleeps likewise until the consumer has
  taken some (back-pressure: paho stops reading the socket, the broker slows down).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """A bounded single-producer, single-consumer buffer; see the module doc."""

    def __init__(self, max_items: int, poll_s: float = 0.02) -> None:
        if max_items < 1:
            raise ValueError("the hand-off needs room for at least one item")
        self._items: deque[T] = deque()
        self._max = max_items
        self._poll_s = poll_s
        self._consumer_waiting = False
        self._wake_at = 1  # the buffer length at which a waiting consumer is woken
        self._producer_waiting = False
        self._has_items = threading.Event()
        self._has_room = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout_s: float) -> bool:
        """Add ``item``; wait up to ``timeout_s`` for room. False when there was none."""
        if len(self._items) >= self._max:
            deadline = time.monotonic() + timeout_s
            while len(self._items) >= self._max:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._has_room.clear()
                self._producer_waiting = True
                if len(self._items) >= self._max:
                    self._has_room.wait(min(left, self._poll_s))
                self._producer_waiting = False
        self._items.append(item)
        if self._consumer_waiting and len(self._items) >= self._wake_at:
            self._has_items.set()
        return True

    def take(self, max_items: int, wait_s: float, fill_s: float = 0.0) -> list[T]:
        """Up to ``max_items`` items, oldest first.

        Waits up to ``wait_s`` for the first item; then, with ``fill_s``, up to
        ``fill_s`` more for the buffer to hold ``max_items`` (a batch that fills
        sooner is returned at once).
        """
        if not self._items and wait_s > 0:
            self._wait_for(1, wait_s)
        if self._items and fill_s > 0 and len(self._items) < max_items:
            self._wait_for(max_items, fill_s)
        items = self._items
        n = min(max_items, len(items))
        taken = [items.popleft() for _ in range(n)]
        if taken and self._producer_waiting:
            self._has_room.set()
        return taken

    def _wait_for(self, level: int, wait_s: float) -> None:
        """Sleep until the buffer holds ``level`` items (or is full) or ``wait_s`` has
        passed. A full buffer ends the wait: its producer is waiting for room."""
        deadline = time.monotonic() + wait_s
        level = min(level, self._max)
        self._wake_at = level
        while len(self._items) < level:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._has_items.clear()
            self._consumer_waiting = True
            if len(self._items) < level:
                self._has_items.wait(min(left, self._poll_s))
            self._consumer_waiting = False
        self._wake_at = 1
