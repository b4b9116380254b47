"""The bounded hand-off between the MQTT network thread and the pipeline thread.

One producer (paho's network thread) and one consumer (the pipeline thread). A
``queue.Queue`` takes a lock and signals a condition on every put and get, which was
a large share of the collector's per-message cost; here a put is a ``deque.append``
(atomic under the GIL) and the consumer takes whole batches at once. Neither side
signals the other on every message:

- the consumer, finding the buffer empty, says it is waiting and sleeps on an event
  for at most ``poll_s``; a producer that sees the flag wakes it. A wake-up missed in
  the race between the two costs at most ``poll_s`` of latency, never a message;
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
        if self._consumer_waiting:
            self._has_items.set()
        return True

    def take(self, max_items: int, wait_s: float) -> list[T]:
        """Up to ``max_items`` items, oldest first; waits up to ``wait_s`` for the first."""
        if not self._items and wait_s > 0:
            deadline = time.monotonic() + wait_s
            while not self._items:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._has_items.clear()
                self._consumer_waiting = True
                if not self._items:
                    self._has_items.wait(min(left, self._poll_s))
                self._consumer_waiting = False
        items = self._items
        n = min(max_items, len(items))
        taken = [items.popleft() for _ in range(n)]
        if taken and self._producer_waiting:
            self._has_room.set()
        return taken
