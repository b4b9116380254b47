"""``OncePerMinute`` keeps a repeating failure to one log line per minute; ``Outage`` words
a failure that lasts: when it starts, once a minute while it lasts, when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["OncePerMinute", "Outage"]


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


class Outage:
    """A failure that repeats until it ends (a broker, a database): its log lines are
    one when it starts, one at most every ``period_s`` while it lasts, one when it ends.

    The caller words the lines; ``failed`` says which one is due.
    """

    def __init__(self, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period_s
        self._clock = clock
        self.since: float | None = None
        """When the outage began (``clock`` time), None while all is well."""
        self.failures = 0
        self._logged = 0.0

    @property
    def lasted_s(self) -> float:
        """How long the current outage has lasted (0 when there is none)."""
        return 0.0 if self.since is None else self._clock() - self.since

    def failed(self) -> str | None:
        """Count one failure: ``"start"`` for an outage's first, ``"still"`` when a reminder
        line is due, None when the failure is only counted."""
        now = self._clock()
        self.failures += 1
        if self.since is None:
            self.since = self._logged = now
            return "start"
        if now - self._logged >= self._period:
            self._logged = now
            return "still"
        return None

    def recovered(self) -> tuple[float, int] | None:
        """End the outage, if there is one: (seconds it lasted, failures it counted)."""
        if self.since is None:
            return None
        ended = (self._clock() - self.since, self.failures)
        self.since, self.failures = None, 0
        return ended
