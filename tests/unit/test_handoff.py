"""The pipeline's hand-off buffer: order, bounds, back-pressure, no lost wake-up."""

from __future__ import annotations

import threading
import time

from wattline.ingest.sources.handoff import Handoff


def test_items_come_out_in_order_and_in_batches_of_at_most_the_asked_size() -> None:
    h: Handoff[int] = Handoff(100)
    for i in range(10):
        assert h.put(i, timeout_s=0)
    assert h.take(4, wait_s=0) == [0, 1, 2, 3]
    assert h.take(100, wait_s=0) == [4, 5, 6, 7, 8, 9]
    assert h.take(100, wait_s=0) == [] and len(h) == 0


def test_a_full_buffer_refuses_after_the_timeout_and_takes_again_once_drained() -> None:
    h: Handoff[int] = Handoff(2)
    assert h.put(1, timeout_s=0) and h.put(2, timeout_s=0)
    started = time.monotonic()
    assert not h.put(3, timeout_s=0.1)
    assert time.monotonic() - started >= 0.09
    assert h.take(1, wait_s=0) == [1]
    assert h.put(3, timeout_s=0) and h.take(5, wait_s=0) == [2, 3]


def test_an_empty_take_waits_no_longer_than_asked() -> None:
    h: Handoff[int] = Handoff(2)
    started = time.monotonic()
    assert h.take(1, wait_s=0.1) == []
    assert 0.09 <= time.monotonic() - started < 0.5


def test_a_producer_and_a_consumer_under_back_pressure_lose_and_reorder_nothing() -> None:
    h: Handoff[int] = Handoff(7)
    n = 50_000
    got: list[int] = []

    def produce() -> None:
        for i in range(n):
            while not h.put(i, timeout_s=1.0):
                pass

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        got += h.take(5, wait_s=0.05)
    producer.join(5)
    assert got == list(range(n))


def test_a_waiting_consumer_is_woken_by_a_put_well_before_its_timeout() -> None:
    h: Handoff[str] = Handoff(4, poll_s=5.0)
    threading.Timer(0.05, lambda: h.put("x", timeout_s=0)).start()
    started = time.monotonic()
    assert h.take(1, wait_s=2.0) == ["x"]
    assert time.monotonic() - started < 1.0


def test_filling_a_batch_waits_for_more_items_up_to_the_fill_time() -> None:
    h: Handoff[int] = Handoff(100)
    h.put(1, timeout_s=0)
    threading.Timer(0.05, lambda: h.put(2, timeout_s=0)).start()
    started = time.monotonic()
    assert h.take(10, wait_s=1.0, fill_s=0.3) == [1, 2]
    assert 0.25 <= time.monotonic() - started < 1.0


def test_a_batch_that_fills_is_returned_at_once_not_after_the_fill_time() -> None:
    h: Handoff[int] = Handoff(1000, poll_s=5.0)  # only a put's wake-up can end the wait early

    def produce() -> None:
        for i in range(100):
            h.put(i, timeout_s=1.0)

    threading.Timer(0.05, produce).start()
    started = time.monotonic()
    assert h.take(100, wait_s=2.0, fill_s=3.0) == list(range(100))
    assert time.monotonic() - started < 1.5


def test_a_producer_filling_a_batch_signals_the_consumer_once_not_per_item() -> None:
    h: Handoff[int] = Handoff(1000, poll_s=5.0)
    signals = 0
    original_set = h._has_items.set

    def counting_set() -> None:
        nonlocal signals
        signals += 1
        original_set()

    h._has_items.set = counting_set  # type: ignore[method-assign]
    h.put(0, timeout_s=0)

    def produce() -> None:
        for i in range(1, 50):
            h.put(i, timeout_s=1.0)

    threading.Timer(0.1, produce).start()
    assert h.take(50, wait_s=1.0, fill_s=3.0) == list(range(50))
    assert signals == 1


def test_a_batch_larger_than_the_buffer_is_returned_once_the_buffer_is_full() -> None:
    h: Handoff[int] = Handoff(10, poll_s=5.0)  # a producer blocks once 10 are queued

    def produce() -> None:
        for i in range(50):
            h.put(i, timeout_s=5.0)

    producer = threading.Thread(target=produce)
    producer.start()
    started = time.monotonic()
    got: list[int] = []
    while len(got) < 50 and time.monotonic() - started < 10:
        got += h.take(1000, wait_s=1.0, fill_s=3.0)
    producer.join(5)
    assert got == list(range(50))
    assert time.monotonic() - started < 2.0  # not one fill time per bufferful
