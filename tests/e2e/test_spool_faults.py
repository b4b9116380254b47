"""Store-and-forward with real processes: the database is down and the spool fills up
(its cap drops the oldest batches, counted), or the spool's disk fills up (the
pipeline holds back and nothing is lost)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from tests.conftest import missing_component
from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    KERNEL_ARGS,
    LINE,
    TICK_MS,
    WINDOWS_MS,
    assert_every_expected_point,
    count_readings,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import publish_stream
from tests.processes import ComponentMissing, Stack, VictoriaMetrics, small_filesystem, wait_until
from wattline.ingest.sinks.parquet_store import read_store

DAEMON_ARGS = [*KERNEL_ARGS, "--batch-max-messages", "10", "--batch-max-wait", "50ms"]


def _rows_in_victoria(victoria: VictoriaMetrics, site: str) -> dict[str, dict[int, int]]:
    """Per window, how many points each tick has (production_t is in every point)."""
    out = {}
    for window in WINDOWS_MS:
        samples = victoria.samples(
            f'energy_intensity_production_t{{site="{site}",line="{LINE}",window="{window}"}}')
        out[window] = {t: len(v) for t, v in samples.items()}
    return out


@pytest.mark.e2e
def test_a_full_spool_drops_its_oldest_batches_counted_and_delivers_the_rest(
    make_stack: Callable[..., Stack],
    site: str,
    tmp_path: Path,
) -> None:
    # The database is down from the start: every batch goes to the spool.
    stack = make_stack(["--state-dir", str(tmp_path / "state"), "--spool-max-bytes", "40000",
                        *DAEMON_ARGS], database_up=False)
    broker, victoria, daemon = stack.broker, stack.victoria, stack.daemon
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    publish_stream(daemon, broker.port, site, messages)
    sent = count_readings(messages)
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= sent,
               timeout_s=30, what="every reading received")
    wait_until(lambda: daemon.metric_sum("wattline_spool_rows_total",
                                         {"kind": "intensity", "event": "dropped"}) > 0,
               timeout_s=30, what="the spool dropping its oldest batch")
    assert daemon.metric("wattline_spool_bytes") <= 40000 + 10000  # the newest may exceed alone
    assert daemon.metric("wattline_spool_segments") >= 1
    assert daemon.metric("wattline_spool_oldest_age_seconds") >= 0
    assert "over its cap" in daemon.log_text()

    victoria.start()
    wait_until(lambda: daemon.metric("wattline_spool_segments") == 0, timeout_s=60,
               what="the spool delivered")
    def spool_rows(event: str) -> float:
        return daemon.metric_sum("wattline_spool_rows_total", {"kind": "intensity",
                                                               "event": event})

    dropped, spooled, delivered = (spool_rows(e) for e in ("dropped", "spooled", "delivered"))
    assert spooled == dropped + delivered
    rows = _rows_in_victoria(victoria, site)
    assert sum(len(r) for r in rows.values()) == delivered  # each point once
    emitted = daemon.metric_sum("wattline_ticks_emitted_total") * len(WINDOWS_MS)
    assert emitted == spooled
    # What is missing is the oldest: every tick lost comes before every tick delivered.
    for window, by_tick in rows.items():
        first_kept = min(by_tick)
        ticks = range(first_kept, max(by_tick) + 1, TICK_MS)
        assert all(t in by_tick for t in ticks), f"{window}: a gap after the dropped part"
        assert first_kept > start_ms + CHECKED_TICKS_MS[0], "nothing was dropped?"


@pytest.mark.e2e
def test_a_full_spool_disk_holds_the_pipeline_back_and_loses_nothing(
    make_stack: Callable[..., Stack],
    site: str,
    tmp_path: Path,
) -> None:
    try:
        disk = small_filesystem(tmp_path / "spool", "16k")
        spool_dir = disk.__enter__()
    except ComponentMissing as err:
        missing_component(err)
    try:
        stack = make_stack(["--spool-dir", str(spool_dir), *DAEMON_ARGS], database_up=False)
        broker, victoria, daemon = stack.broker, stack.victoria, stack.daemon
        start_ms = recent_start_ms()
        messages = readings_messages(site, start_ms)
        publish_stream(daemon, broker.port, site, messages)
        wait_until(lambda: daemon.metric_sum("wattline_spool_errors_total") > 0,
                   timeout_s=30, what="the spool's disk filling up")
        assert daemon.running
        assert "holding the pipeline back" in daemon.log_text()
        assert daemon.metric("wattline_mqtt_connected") == 1.0

        victoria.start()
        last_tick = start_ms + CHECKED_TICKS_MS[-1]
        wait_until(lambda: last_tick in victoria.samples(
            f'energy_intensity_electricity_kwh{{site="{site}",line="{LINE}",window="2m"}}'),
            timeout_s=120, interval_s=1.0, what="the last tick once the database is back")
        assert_every_expected_point(victoria, site, start_ms)
        assert daemon.metric_sum("wattline_spool_rows_total", {"event": "dropped"}) == 0
        assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    finally:
        disk.__exit__(None, None, None)


@pytest.mark.e2e
def test_a_batch_the_server_refuses_for_good_goes_to_the_dead_letters_and_the_rest_flows(
    make_stack: Callable[..., Stack],
    site: str,
    tmp_path: Path,
) -> None:
    """A write path VictoriaMetrics does not serve answers HTTP 400 to every batch: each
    is kept in the dead-letter folder with the server's message, counted, not retried or
    spooled, and the Parquet store still gets every point."""
    stack = make_stack(["--state-dir", str(tmp_path / "state"),
                        "--store", str(tmp_path / "store"), *DAEMON_ARGS],
                       influx_path="/no-such-path")
    broker, daemon = stack.broker, stack.daemon
    start_ms = recent_start_ms()
    messages = readings_messages(site, start_ms)
    publish_stream(daemon, broker.port, site, messages)

    def emitted() -> float:
        return daemon.metric_sum("wattline_ticks_emitted_total") * len(WINDOWS_MS)

    dead = tmp_path / "state" / "dead-letter"

    def kept() -> int:  # intensity rows in the dead letters (alerts go there too)
        return sum(ipc.open_file(str(p)).read_all().num_rows
                   for p in dead.glob("dead-*-intensity.arrow"))

    sent = count_readings(messages)
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= sent,
               timeout_s=30, what="every reading received")
    time.sleep(0.5)  # the last batch through the kernels and the sinks
    wait_until(lambda: emitted() > 0 and kept() == emitted(), timeout_s=30,
               what="every point refused and dead-lettered")
    wait_until(lambda: len(list(dead.glob("dead-*.arrow")))
               == len(list(dead.glob("dead-*.txt"))), timeout_s=10,
               what="a message beside every dead letter")
    assert "unsupported path" in sorted(dead.glob("dead-*.txt"))[0].read_text()
    wait_until(lambda: daemon.metric_sum("wattline_dead_letter_rows_total",
                                         {"sink": "influxdb"}) >= emitted(), timeout_s=10,
               what="the dead-letter count")
    assert daemon.metric_sum("wattline_sink_write_retries_total") == 0
    assert daemon.metric_sum("wattline_spool_rows_total") == 0  # nothing spooled
    # Counted from the store's ticks: the Parquet sink's point count also holds the
    # period rows (and closed batches) it takes besides them.
    wait_until(lambda: read_store(tmp_path / "store", site=site).num_rows == emitted(),
               timeout_s=10, what="every point in the Parquet store")
    assert daemon.running
    assert daemon.log_text().count("refused") <= 2, "logged once, then counted"
