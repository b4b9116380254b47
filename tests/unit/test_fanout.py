"""The fan-out: every sink once per batch, with retries, counting and drops per sink name."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from wattline.contract.schemas import ALERT_SCHEMA, INTENSITY_SCHEMA
from wattline.ingest.metrics import CollectorMetrics
from wattline.ingest.sinks.base import IntensitySink, Sink, SinkError
from wattline.ingest.sinks.dead_letters import DeadLetters
from wattline.ingest.sinks.fanout import FanOut
from wattline.ingest.sinks.parquet_store import ParquetStore, read_store

ROW = {"site": "s", "line": "l", "window": "1h", "time_ms": 1, "energy_kgce": 1.0,
       "electricity_kwh": 1.0, "production_t": 1.0, "kgce_per_t": 1.0, "kwh_per_t": 1.0}
ALERT = {"site": "s", "line": "l", "rule": "spike", "time_ms": 1, "state": 1, "value": 2.0,
         "threshold": 1.0, "message": "m"}


def results(rows: int = 2) -> pa.Table:
    return pa.Table.from_pylist([ROW] * rows, schema=INTENSITY_SCHEMA)


def alerts(rows: int = 1) -> pa.Table:
    return pa.Table.from_pylist([ALERT] * rows, schema=ALERT_SCHEMA)


class Recorder:
    """A sink that fails as told: ``failures`` errors raised before each write succeeds."""

    def __init__(self, name: str, failures: list[SinkError] | None = None) -> None:
        self.name = name
        self.failures = list(failures or [])
        self.written: list[pa.Table] = []
        self.alerts: list[pa.Table] = []
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def write(self, table: pa.Table) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(table)

    def write_alerts(self, table: pa.Table) -> None:
        self.alerts.append(table)

    def close(self) -> None:
        self.closed += 1


class ResultsOnly:
    name = "results-only"

    def __init__(self) -> None:
        self.written: list[pa.Table] = []

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        self.written.append(table)

    def close(self) -> None:
        raise OSError("cannot close")


def sample(metrics: CollectorMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_every_sink_gets_the_batch_and_its_points_are_counted_per_sink() -> None:
    metrics = CollectorMetrics()
    a, b = Recorder("a"), ResultsOnly()
    fanout = FanOut([a, b], metrics)
    fanout.write(results(3))
    assert len(a.written) == len(b.written) == 1
    assert sample(metrics, "wattline_sink_points_written_total", sink="a") == 3
    assert sample(metrics, "wattline_sink_points_written_total", sink="results-only") == 3


def test_alerts_go_only_to_sinks_that_take_them() -> None:
    metrics = CollectorMetrics()
    a, b = Recorder("a"), ResultsOnly()
    assert isinstance(a, Sink) and not isinstance(b, Sink) and isinstance(b, IntensitySink)
    FanOut([a, b], metrics).write_alerts(alerts(2))
    assert [t.num_rows for t in a.alerts] == [2]
    assert sample(metrics, "wattline_sink_points_written_total", sink="a") == 2
    assert sample(metrics, "wattline_sink_points_written_total", sink="results-only") == 0


def test_a_retryable_failure_is_retried_counted_and_beats_the_heartbeat(monkeypatch) -> None:
    metrics = CollectorMetrics()
    waits: list[float] = []
    stopping = threading.Event()
    monkeypatch.setattr(stopping, "wait", lambda delay: waits.append(delay) or False)
    beats = []
    sink = Recorder("a", [SinkError("down", retryable=True),
                          SinkError("busy", retryable=True, retry_after_s=3.0)])
    FanOut([sink], metrics, stopping=stopping, on_wait=lambda: beats.append(1)).write(results())
    assert len(sink.written) == 1
    assert waits == [0.5, 3.0]  # backoff, then at least the server's Retry-After
    assert len(beats) == 2
    assert sample(metrics, "wattline_sink_write_errors_total", sink="a") == 2
    assert sample(metrics, "wattline_sink_write_retries_total", sink="a") == 2
    assert sample(metrics, "wattline_sink_points_written_total", sink="a") == 2


def test_a_refusal_for_good_drops_the_batch_for_that_sink_only() -> None:
    metrics = CollectorMetrics()
    refusing, other = Recorder("a", [SinkError("no", retryable=False)]), Recorder("b")
    FanOut([refusing, other], metrics).write(results(4))
    assert refusing.written == [] and len(other.written) == 1
    assert sample(metrics, "wattline_readings_dropped_total", reason="sink_rejected") == 4
    assert sample(metrics, "wattline_sink_write_retries_total", sink="a") == 0


def test_at_shutdown_a_sink_still_failing_after_a_long_wait_is_given_up() -> None:
    metrics = CollectorMetrics()
    stopping = threading.Event()
    stopping.set()  # every wait returns at once
    sink = Recorder("a", [SinkError("down", retryable=True)] * 20)
    FanOut([sink], metrics, stopping=stopping).write(results())
    assert sink.written == []
    # 0.5, 1, 2, 4, 8: given up at the first wait of 8 s or more.
    assert sample(metrics, "wattline_sink_write_retries_total", sink="a") == 5


def test_an_uncounted_sink_is_called_without_counting() -> None:
    metrics = CollectorMetrics()
    sink = Recorder("quiet")
    sink.counted = False  # type: ignore[attr-defined]
    fanout = FanOut([sink], metrics)
    fanout.write(results())
    fanout.write_alerts(alerts())
    assert len(sink.written) == len(sink.alerts) == 1
    families = {f.name: f.samples for f in metrics.registry.collect()}
    assert not [s for s in families["wattline_sink_points_written"]
                if s.labels.get("sink") == "quiet"]


def test_open_opens_all_and_a_failing_close_does_not_keep_the_others_open(caplog) -> None:
    a, b, c = Recorder("a"), ResultsOnly(), Recorder("c")
    fanout = FanOut([a, b, c], CollectorMetrics())
    fanout.open()
    fanout.close()
    assert (a.opened, a.closed, c.opened, c.closed) == (1, 1, 1, 1)
    assert "closing sink results-only failed" in caplog.text


@pytest.mark.parametrize("method", ["write", "write_alerts"])
def test_sinks_are_written_in_order(method: str) -> None:
    order: list[str] = []

    class Named(Recorder):
        def write(self, table: pa.Table) -> None:
            order.append(self.name)

        def write_alerts(self, table: pa.Table) -> None:
            order.append(self.name)

    fanout = FanOut([Named("first"), Named("second"), Named("third")], CollectorMetrics())
    getattr(fanout, method)(results() if method == "write" else alerts())
    assert order == ["first", "second", "third"]


def test_a_non_finite_row_is_dead_lettered_alone_and_the_rest_of_its_batch_written(
        tmp_path: Path) -> None:
    rows = [dict(ROW, time_ms=t) for t in range(1, 6)]
    rows[1]["kgce_per_t"] = float("nan")
    rows[3]["energy_kgce"] = float("inf")
    rows[4]["kwh_per_t"] = None  # an idle window's null is not a bad value
    metrics = CollectorMetrics()
    store, other = ParquetStore(tmp_path / "store"), Recorder("influxdb")
    fanout = FanOut([other, store], metrics, dead_letters=DeadLetters(tmp_path / "dead"))
    fanout.open()
    fanout.write(pa.Table.from_pylist(rows, schema=INTENSITY_SCHEMA))
    bad_alert = dict(ALERT, value=float("-inf"))
    fanout.write_alerts(pa.Table.from_pylist([ALERT, bad_alert], schema=ALERT_SCHEMA))

    assert [t["time_ms"].to_pylist() for t in other.written] == [[1, 3, 5]]
    assert read_store(tmp_path / "store")["time_ms"].to_pylist() == [1, 3, 5]
    assert [t.num_rows for t in other.alerts] == [1]
    assert sample(metrics, "wattline_readings_dropped_total", reason="non_finite_result") == 3
    assert sample(metrics, "wattline_sink_points_written_total", sink="parquet") == 3
    (dead,) = (tmp_path / "dead").glob("dead-*-intensity.arrow")
    assert ipc.open_file(str(dead)).read_all()["time_ms"].to_pylist() == [2, 4]
    reason = dead.with_suffix(".txt").read_text()
    assert "kgce_per_t=nan" in reason and "energy_kgce=inf" in reason
    assert len(list((tmp_path / "dead").glob("dead-*-alerts.arrow"))) == 1


def test_a_batch_of_only_non_finite_rows_reaches_no_sink_and_without_a_folder_is_counted() -> None:
    metrics = CollectorMetrics()
    sink = Recorder("a")
    FanOut([sink], metrics).write(
        pa.Table.from_pylist([dict(ROW, production_t=float("nan"))], schema=INTENSITY_SCHEMA))
    assert sink.written == []
    assert sample(metrics, "wattline_readings_dropped_total", reason="non_finite_result") == 1


def test_flush_asks_the_sinks_that_hold_batches() -> None:
    asked: list[float] = []

    class Holding(Recorder):
        def flush(self, wait_s: float) -> bool:
            asked.append(wait_s)
            return len(asked) > 1

    fanout = FanOut([Holding("a"), Recorder("b")], CollectorMetrics())
    assert fanout.flush(0.0) is False and fanout.flush(2.0) is True
    assert asked == [0.0, 2.0]
