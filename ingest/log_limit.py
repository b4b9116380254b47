"""``OncePerMinute``: keeps a repeating failure to one log line per minute."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["OncePerMinute"]


class OncePerMinute:
    """Lets a log line through once per key per minute; the key set is bounded."""

    def __init__(self, period_s: float = 60.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period_s
        self._max = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._clock = clock

    def __call__(self, reason: str, topic: str) -> bool:
        now = self._clock()
        key = (reason, topic)
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            return False
        if len(self._last) >= self._max:
            self._last = {k: t for k, t in self._last.items() if now - t < self._period}
            if len(self._last) >= self._max:
                return False
        self._last[key] = now
        return True
