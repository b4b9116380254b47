"""Partition leases in a key-value bucket: which daemon consumes which partition.

Each daemon (a *member*) keeps a key ``member.<id>`` alive and holds the partitions
whose key ``partition.<n>`` names it. Every key lives ``lease_ttl`` after its last
write (the bucket's age limit, enforced by the server, so no two clocks are compared);
a member renews its keys every third of that. Every change is a compare-and-set on
the key's revision: ``create`` only succeeds on a missing key, ``update`` and ``delete``
only on the revision last seen, so two members never both believe they hold one
partition for longer than a renewal round.

``fair_share`` and ``plan`` are the pure decisions; ``Leases.round`` applies them to a
``LeaseBucket`` (the NATS key-value bucket, or a fake one in the tests).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LeaseBucket", "LeaseChanges", "LeaseTaken", "Leases", "fair_share", "member_key",
           "plan"]

log = logging.getLogger("wattline.leases")

MEMBER_PREFIX = "member."
PARTITION_PREFIX = "partition."


class LeaseTaken(Exception):
    """A compare-and-set failed: the key exists, or was changed since it was read."""


class LeaseBucket(Protocol):
    """The key-value operations leases need; each write returns the key's new revision."""

    async def entries(self) -> dict[str, tuple[str, int]]:
        """Every live key: its value and revision."""
        ...

    async def put(self, key: str, value: str) -> int: ...

    async def create(self, key: str, value: str) -> int:
        """Raise ``LeaseTaken`` if the key exists."""
        ...

    async def update(self, key: str, value: str, revision: int) -> int:
        """Raise ``LeaseTaken`` unless ``revision`` is the key's last one."""
        ...

    async def delete(self, key: str, revision: int) -> None:
        """Raise ``LeaseTaken`` unless ``revision`` is the key's last one."""
        ...


def member_key(member: str) -> str:
    """The bucket key of a member id (characters a key cannot hold become ``_``)."""
    return MEMBER_PREFIX + re.sub(r"[^A-Za-z0-9_=-]", "_", member)


def fair_share(partitions: int, members: Sequence[str], me: str) -> int:
    """How many partitions ``me`` should hold: an even split over the sorted members, the
    first ``partitions % len(members)`` of them one more."""
    ordered = sorted(set(members) | {me})
    whole, extra = divmod(partitions, len(ordered))
    return whole + (1 if ordered.index(me) < extra else 0)


def plan(partitions: int, members: Sequence[str], me: str,
         owners: dict[int, str]) -> tuple[list[int], list[int]]:
    """(take, give up): the free partitions ``me`` should take, lowest first, and the ones
    it holds beyond its fair share, highest first. ``owners`` maps each held partition to
    its holder; a partition another member holds is never taken from it."""
    mine = sorted(p for p, owner in owners.items() if owner == me)
    share = fair_share(partitions, members, me)
    if len(mine) > share:
        return [], sorted(mine[share:], reverse=True)
    free = [p for p in range(partitions) if p not in owners]
    return free[:share - len(mine)], []


@dataclass
class LeaseChanges:
    """What one round changed for this member."""

    acquired: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    """Held before, but renewing failed: another member has it now, or it expired."""


class Leases:
    """This member's leases over ``partitions`` in ``bucket``; ``held`` is what it may
    consume. Call ``round()`` every third of the TTL and ``release_all()`` when stopping."""

    def __init__(self, bucket: LeaseBucket, member: str, partitions: int,
                 before_release: Callable[[int], Awaitable[None]] | None = None) -> None:
        """``before_release(p)`` stops consuming ``p`` before its lease is given up."""
        self.bucket = bucket
        self.before_release = before_release
        self.member = member
        self.partitions = partitions
        self.held: dict[int, int] = {}
        """Partition -> revision of its key as last written by this member."""

    async def round(self) -> LeaseChanges:
        """Renew, then balance: give up what is beyond the fair share, take free ones."""
        changes = LeaseChanges()
        await self.bucket.put(member_key(self.member), self.member)
        for p, revision in sorted(self.held.items()):
            try:
                self.held[p] = await self.bucket.update(self._key(p), self.member, revision)
            except LeaseTaken:
                del self.held[p]
                changes.lost.append(p)
        entries = await self.bucket.entries()
        members = [value for key, (value, _) in entries.items() if key.startswith(MEMBER_PREFIX)]
        owners: dict[int, str] = {}
        for key, (value, _) in entries.items():
            if key.startswith(PARTITION_PREFIX):
                p = int(key[len(PARTITION_PREFIX):])
                if p < self.partitions:
                    owners[p] = value
        for p in self.held:  # what this member just renewed is its own, whatever was read
            owners[p] = self.member
        take, give_up = plan(self.partitions, members, self.member, owners)
        for p in give_up:
            await self._release(p)
            changes.released.append(p)
        for p in take:
            try:
                self.held[p] = await self.bucket.create(self._key(p), self.member)
                changes.acquired.append(p)
            except LeaseTaken:
                pass  # another member took it first; the next round sees it
        return changes

    async def release_all(self) -> list[int]:
        """Give up every partition and leave the group (a stopping daemon)."""
        released = sorted(self.held)
        for p in released:
            await self._release(p)
        try:
            entries = await self.bucket.entries()
            key = member_key(self.member)
            if key in entries:
                await self.bucket.delete(key, entries[key][1])
        except LeaseTaken:
            pass
        return released

    async def _release(self, p: int) -> None:
        if self.before_release is not None:
            await self.before_release(p)
        revision = self.held.pop(p)
        with contextlib.suppress(LeaseTaken):  # it had expired and been taken already
            await self.bucket.delete(self._key(p), revision)

    @staticmethod
    def _key(p: int) -> str:
        return f"{PARTITION_PREFIX}{p}"
