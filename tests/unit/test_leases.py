"""Partition leases (ingest/sources/leases.py) over a fake key-value bucket with a fake
clock: compare-and-set on revisions, keys that age out at the TTL, fair shares."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.ingest.sources.leases import Leases, LeaseTaken, fair_share, plan

TTL_S = 15.0


class FakeBucket:
    """A key-value bucket whose keys live TTL_S after their last write, as NATS's does."""

    def __init__(self) -> None:
        self.now = 0.0
        self.revision = 0
        self.keys: dict[str, tuple[str, int, float]] = {}  # value, revision, written at

    def _live(self, key: str) -> tuple[str, int, float] | None:
        entry = self.keys.get(key)
        if entry is not None and self.now - entry[2] >= TTL_S:
            del self.keys[key]
            return None
        return entry

    def _write(self, key: str, value: str) -> int:
        self.revision += 1
        self.keys[key] = (value, self.revision, self.now)
        return self.revision

    async def entries(self) -> dict[str, tuple[str, int]]:
        return {k: (e[0], e[1]) for k in list(self.keys) if (e := self._live(k)) is not None}

    async def put(self, key: str, value: str) -> int:
        return self._write(key, value)

    async def create(self, key: str, value: str) -> int:
        if self._live(key) is not None:
            raise LeaseTaken(key)
        return self._write(key, value)

    async def update(self, key: str, value: str, revision: int) -> int:
        entry = self._live(key)
        if entry is None or entry[1] != revision:
            raise LeaseTaken(key)
        return self._write(key, value)

    async def delete(self, key: str, revision: int) -> None:
        entry = self._live(key)
        if entry is None or entry[1] != revision:
            raise LeaseTaken(key)
        del self.keys[key]


def _rounds(bucket: FakeBucket, members: list[Leases], n: int = 3) -> None:
    """``n`` renewal rounds of every member, a third of the TTL apart."""
    for _ in range(n):
        for member in members:
            asyncio.run(member.round())
        bucket.now += TTL_S / 3


def _holders(members: list[Leases]) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for member in members:
        for p in member.held:
            held.setdefault(p, []).append(member.member)
    return held


@given(st.integers(1, 64), st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_fair_shares_add_up_to_the_partitions_and_differ_by_at_most_one(
        partitions: int, n: int) -> None:
    members = [f"d{i}" for i in range(n)]
    shares = [fair_share(partitions, members, m) for m in members]
    assert sum(shares) == partitions
    assert max(shares) - min(shares) <= 1


def test_a_plan_never_takes_a_partition_another_member_holds() -> None:
    take, give_up = plan(4, ["a", "b"], "b", {0: "a", 1: "a", 2: "a"})
    assert take == [3] and give_up == []


def test_a_member_beyond_its_share_gives_up_its_highest_partitions() -> None:
    take, give_up = plan(4, ["a", "b"], "a", {0: "a", 1: "a", 2: "a", 3: "a"})
    assert take == [] and give_up == [3, 2]


def test_a_lone_daemon_takes_every_partition() -> None:
    bucket = FakeBucket()
    a = Leases(bucket, "a", 8)
    _rounds(bucket, [a], 1)
    assert sorted(a.held) == list(range(8))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_daemons_joining_one_by_one_end_with_a_fair_share_each_and_one_holder_per_partition(
        n: int) -> None:
    bucket = FakeBucket()
    members: list[Leases] = []
    for i in range(n):
        members.append(Leases(bucket, f"d{i}", 8))
        _rounds(bucket, members)
    held = _holders(members)
    assert sorted(held) == list(range(8))
    assert all(len(holders) == 1 for holders in held.values()), held
    assert sorted(len(m.held) for m in members) == sorted(
        fair_share(8, [m.member for m in members], m.member) for m in members)


def test_a_stopping_daemon_releases_at_once_and_the_other_takes_over_next_round() -> None:
    bucket = FakeBucket()
    a, b = Leases(bucket, "a", 4), Leases(bucket, "b", 4)
    _rounds(bucket, [a, b])
    released = asyncio.run(a.release_all())
    assert len(released) == 2 and not a.held
    asyncio.run(b.round())  # no time passes: nothing had to expire
    assert sorted(b.held) == [0, 1, 2, 3]


def test_a_killed_daemons_partitions_are_taken_only_once_its_leases_expire() -> None:
    bucket = FakeBucket()
    a, b = Leases(bucket, "a", 4), Leases(bucket, "b", 4)
    _rounds(bucket, [a, b])
    a_had = sorted(a.held)
    # a is killed: it renews nothing from here on.
    bucket.now += TTL_S / 3
    asyncio.run(b.round())
    assert sorted(b.held) == sorted(set(range(4)) - set(a_had)), "taken before the TTL"
    bucket.now += TTL_S
    asyncio.run(b.round())
    assert sorted(b.held) == [0, 1, 2, 3]


def test_a_daemon_that_missed_its_renewals_finds_its_leases_lost() -> None:
    bucket = FakeBucket()
    a, b = Leases(bucket, "a", 2), Leases(bucket, "b", 2)
    _rounds(bucket, [a, b])
    a_had = sorted(a.held)
    bucket.now += TTL_S  # a paused past its TTL (a long GC, a cut network)
    asyncio.run(b.round())
    changes = asyncio.run(a.round())
    assert changes.lost == a_had
    assert not set(a.held) & set(b.held)


def test_a_release_stops_consuming_before_the_lease_is_given_up() -> None:
    bucket = FakeBucket()
    order: list[tuple[str, int]] = []

    async def stop_consuming(p: int) -> None:
        assert f"partition.{p}" in bucket.keys, "the lease went first"
        order.append(("stopped", p))

    a = Leases(bucket, "a", 2, before_release=stop_consuming)
    _rounds(bucket, [a], 1)
    asyncio.run(a.release_all())
    assert order == [("stopped", 0), ("stopped", 1)]
    assert not [k for k in bucket.keys if k.startswith("partition.")]
