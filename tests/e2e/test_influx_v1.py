"""The daemon's InfluxDB 1.x writer (``--influx-api v1``) against a real InfluxDB 1.6.7.

The contract stream (tests/e2e/eaf_stream.py) written by ``wattline run`` and read
back with InfluxQL, field types included; a field-type conflict dead-letters the
refused points alone; names as plants write them round-trip through InfluxDB's own
line-protocol parser and cannot add a tag or a field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from tests.e2e import real_names
from tests.e2e.eaf_stream import (
    CHECKED_TICKS_MS,
    ENERGY_METER,
    FIELDS,
    FINAL_OFFSET_MS,
    KERNEL_ARGS,
    LINE,
    WINDOWS_MS,
    electricity_register,
    expected_point,
    readings_messages,
    recent_start_ms,
)
from tests.e2e.gateway import publish_all, wait_until_subscribed
from tests.e2e.real_names import LINE as PLANT_LINE
from tests.e2e.real_names import SITE as PLANT_SITE
from tests.processes import InfluxDB1, Mosquitto, Wattline, free_port, wait_until
from wattline.contract.schemas import ALERT_SCHEMA, INTENSITY_SCHEMA
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.influx_v1 import InfluxV1Sink
from wattline.ingest.sinks.line_protocol import FIELDS as INTENSITY_FIELDS
from wattline.ingest.sinks.parquet_store import read_store

DB = "wattline"
# Every field of energy_intensity, the carbon ones included, is a float for ever.
FLOAT_FIELDS = {name: "float" for name in INTENSITY_FIELDS}
ALERT_FIELDS = {"state": "integer", "message": "string"}


class V1Stack(NamedTuple):
    broker: Mosquitto
    influx: InfluxDB1
    daemon: Wattline


@pytest.fixture()
def v1_stack(make_mosquitto: Callable[..., Mosquitto], make_influxdb1: Callable[..., InfluxDB1],
             wattline_daemon: Callable[..., Wattline]) -> Callable[..., V1Stack]:
    """``v1_stack(args, before=..., admin=...)``: a broker, an InfluxDB 1.6.7
    (``before(influx)`` runs on it first) and ``wattline run --influx-api v1`` between them."""

    def make(args: Sequence[str] = (), before: Callable[[InfluxDB1], None] | None = None,
             admin: tuple[str, str] | None = None) -> V1Stack:
        broker, influx = make_mosquitto(), make_influxdb1(databases=(DB,), admin=admin)
        if before is not None:
            before(influx)
        daemon = wattline_daemon(["--mqtt-url", broker.url, "--influx-api", "v1",
                                  "--influx-url", influx.url, "--influx-db", DB, *args])
        return V1Stack(broker, influx, daemon)

    return make


def _stream(stack: V1Stack, publisher: mqtt.Client, site: str) -> int:
    """Publish the contract stream; wait until its last tick is in InfluxDB; its start."""
    start = recent_start_ms()
    wait_until_subscribed(stack.daemon, publisher, site, timeout_s=30)
    publish_all(publisher, readings_messages(site, start), timeout_s=30)
    last = start + CHECKED_TICKS_MS[-1]
    query = (f"SELECT count(electricity_kwh) FROM energy_intensity WHERE site = '{site}' "
             f"AND time = {last}ms GROUP BY window")

    def written() -> bool:
        assert stack.daemon.running, "the daemon exited"
        counts = [row["count"] for row in stack.influx.query(query, DB)]
        return counts == [1] * len(WINDOWS_MS)

    wait_until(written, timeout_s=60, interval_s=0.3, what="the stream's last tick in InfluxDB")
    return start


def _points(influx: InfluxDB1, site: str, start: int) -> dict[tuple[str, int], dict]:
    rows = influx.query(f"SELECT * FROM energy_intensity WHERE site = '{site}'", DB)
    return {(row["window"], row["time"] - start): {k: v for k, v in row.items()
                                                   if k in FIELDS and v is not None}
            for row in rows if CHECKED_TICKS_MS[0] <= row["time"] - start
            <= CHECKED_TICKS_MS[-1]}


def _field_types(influx: InfluxDB1, measurement: str) -> dict[str, str]:
    return {row["fieldKey"]: row["fieldType"]
            for row in influx.query(f"SHOW FIELD KEYS FROM {measurement}", DB)}


@pytest.mark.e2e
def test_the_contract_stream_and_its_alerts_read_back_from_influxdb1_with_their_types(
    v1_stack: Callable[..., V1Stack], make_publisher: Callable[..., mqtt.Client], site: str,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    stack = v1_stack([*KERNEL_ARGS, "--store", str(store), "--stale-after", "2s"])
    publisher = make_publisher(stack.broker)
    start = _stream(stack, publisher, site)

    points = _points(stack.influx, site, start)
    expected = {(w, t): expected_point(t, ms) for w, ms in WINDOWS_MS.items()
                for t in CHECKED_TICKS_MS}
    assert points.keys() == expected.keys()
    for key, fields in expected.items():
        assert points[key] == pytest.approx(fields, rel=1e-9), key
    assert any("kgce_per_t" not in f for f in points.values())  # idle windows, left out
    # Exactly what the daemon computed: its own Parquet store holds the same doubles.
    stored = {(r["window"], r["time_ms"] - start): {k: r[k] for k in FIELDS if r[k] is not None}
              for r in read_store(store, site=site).to_pylist()}
    assert all(points[key] == stored[key] for key in points)
    assert _field_types(stack.influx, "energy_intensity") == FLOAT_FIELDS

    # The line goes quiet: a stale alert starts; a reading ends it.
    alerts = f"SELECT * FROM energy_alert WHERE site = '{site}' AND rule = 'stale'"
    wait_until(lambda: stack.influx.query(alerts, DB), timeout_s=30, interval_s=0.3,
               what="the stale alert in InfluxDB")
    publisher.publish(f"factory/{site}/{LINE}/energy/{ENERGY_METER}", json.dumps(
        {"ts": start + FINAL_OFFSET_MS + 2_000, "v": electricity_register(120) + 8.0}),
        qos=1).wait_for_publish(10)
    rows = wait_until(lambda: (r := stack.influx.query(alerts, DB)) and len(r) == 2 and r,
                      timeout_s=30, interval_s=0.3, what="the stale alert's end")
    assert [row["state"] for row in rows] == [1, 0]
    assert all(type(row["state"]) is int and row["line"] == LINE for row in rows)
    assert all(isinstance(row["message"], str) and row["message"] for row in rows)
    types = _field_types(stack.influx, "energy_alert")
    assert {k: types[k] for k in ALERT_FIELDS} == ALERT_FIELDS
    assert set(types) <= {*ALERT_FIELDS, "value", "threshold"}
    assert all(types[k] == "float" for k in ("value", "threshold") if k in types)


def _keys(table: pa.Table, start: int) -> set[tuple[str, int]]:
    return {(r["window"], r["time_ms"] - start) for r in table.to_pylist()
            if CHECKED_TICKS_MS[0] <= r["time_ms"] - start <= CHECKED_TICKS_MS[-1]}


def _dead_letters(folder: Path) -> pa.Table:
    tables = [ipc.open_file(path).read_all() for path in sorted(folder.glob("dead-*.arrow"))]
    return pa.concat_tables(tables) if tables else INTENSITY_SCHEMA.empty_table()


@pytest.mark.e2e
def test_a_field_type_conflict_dead_letters_only_the_points_influxdb1_refused(
    v1_stack: Callable[..., V1Stack], make_publisher: Callable[..., mqtt.Client], site: str,
    tmp_path: Path,
) -> None:
    # InfluxDB 1.x keeps one type per field of a measurement (per shard): kwh_per_t as an
    # integer refuses every producing point of the stream, and takes the idle ones.
    def conflict(influx: InfluxDB1) -> None:
        status, body = influx.write(
            f"energy_intensity,site=other,line=x,window=1m kwh_per_t=1i {recent_start_ms()}",
            DB)
        assert status == 204, body

    state = tmp_path / "state"
    stack = v1_stack([*KERNEL_ARGS, "--state-dir", str(state)], before=conflict)
    start = _stream(stack, make_publisher(stack.broker), site)

    written = _points(stack.influx, site, start)
    expected = {(w, t): expected_point(t, ms) for w, ms in WINDOWS_MS.items()
                for t in CHECKED_TICKS_MS}
    idle = {key for key, fields in expected.items() if "kwh_per_t" not in fields}
    assert idle and sorted(idle - written.keys()) == [] and sorted(written.keys() - idle) == []
    # The points a batch took are in InfluxDB before its refused ones are found and kept.
    refused = expected.keys() - idle
    dead = wait_until(lambda: refused <= _keys(t := _dead_letters(state / "dead-letter"),
                                                start) and t,
                      timeout_s=10, what="the refused points in the dead letters")
    assert _keys(dead, start) == refused
    counted = stack.daemon.metric("wattline_dead_letter_rows_total", {"sink": "influxdb"})
    assert counted == dead.num_rows
    assert all(r["kwh_per_t"] is not None for r in dead.to_pylist())
    reasons = "".join(p.read_text() for p in (state / "dead-letter").glob("dead-*.txt"))
    assert "field type conflict" in reasons and 'input field "kwh_per_t"' in reasons
    assert _field_types(stack.influx, "energy_intensity")["kwh_per_t"] == "integer"


# Names as plants write them, and ones built to break out of a tag.
HOSTILE = [PLANT_SITE, PLANT_LINE, 'Ofen "Nord", Halle=3', "a\\b", "x\\,y", "e\\=q",
           "tab\there", "line=1 extra=2i", "Zürich 東京 🏭", "trail ", " lead", "a\\\\ b"]


def _row(site: str, line: str, t: int) -> dict:
    return {"site": site, "line": line, "window": "15m", "time_ms": t, "energy_kgce": 1.5,
            "electricity_kwh": 12.0, "production_t": 0.5, "kgce_per_t": 3.0, "kwh_per_t": 24.0,
            "co2_direct_t": 0.0, "co2_indirect_t": 0.006, "co2_per_t": 0.012}


@pytest.mark.e2e
def test_plant_names_round_trip_through_influxdb1_and_add_no_tag_or_field(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    influx = make_influxdb1(databases=(DB,))
    sink = InfluxV1Sink(influx.url, DB)
    rows = [_row(name, HOSTILE[-1 - i], 1_000 + i) for i, name in enumerate(HOSTILE)]
    sink.write(pa.Table.from_pylist(rows, schema=INTENSITY_SCHEMA))
    alert = {"site": PLANT_SITE, "line": PLANT_LINE, "rule": 'sp,ike = "1"', "time_ms": 5,
             "state": 1, "value": 2.5, "threshold": 1.0, "message": 'Ofen "A" \\ 1=2, x'}
    sink.write_alerts(pa.Table.from_pylist([alert], schema=ALERT_SCHEMA))

    read = influx.query("SELECT * FROM energy_intensity", DB)
    assert sorted((r["site"], r["line"], r["time"]) for r in read) == sorted(
        (r["site"], r["line"], r["time_ms"]) for r in rows)
    assert all(r["kwh_per_t"] == 24.0 and r["window"] == "15m" for r in read)
    keys = {r["tagKey"] for r in influx.query("SHOW TAG KEYS FROM energy_intensity", DB)}
    assert keys == {"site", "line", "window"}
    assert _field_types(influx, "energy_intensity") == FLOAT_FIELDS
    (got,) = influx.query("SELECT * FROM energy_alert", DB)
    assert {k: got[k] for k in ("site", "line", "rule", "message", "state")} == {
        k: alert[k] for k in ("site", "line", "rule", "message", "state")}
    sink.close()


@pytest.mark.e2e
def test_names_from_gateway_topics_reach_influxdb1_exactly(
    v1_stack: Callable[..., V1Stack], make_publisher: Callable[..., mqtt.Client],
) -> None:
    stack = v1_stack(real_names.ARGS)
    client = make_publisher(stack.broker)
    real_names.wait_subscribed(stack.daemon, client)
    start = real_names.start_ms()
    real_names.publish(client, real_names.json_readings(PLANT_SITE, PLANT_LINE, start))
    last = start + real_names.STEPS * real_names.STEP_MS // real_names.TICK_MS * \
        real_names.TICK_MS
    query = f"SELECT kwh_per_t FROM energy_intensity WHERE time = {last}ms AND window = '1m'"
    (row,) = wait_until(lambda: stack.influx.query(query + " GROUP BY *", DB), timeout_s=60,
                        interval_s=0.3, what="the last tick in InfluxDB")
    assert (row["site"], row["line"], row["kwh_per_t"]) == (PLANT_SITE, PLANT_LINE, 16.0)


@pytest.mark.e2e
def test_a_tag_ending_in_a_backslash_is_refused_alone_as_influxdb1_cannot_read_it(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    influx = make_influxdb1(databases=(DB,))
    sink = InfluxV1Sink(influx.url, DB)
    rows = [_row("ok", "L", 1), _row("C:\\plant\\", "L", 2), _row("ok", "L", 3)]
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist(rows, schema=INTENSITY_SCHEMA))
    assert not err.value.retryable and list(err.value.rejected or {}) == [1]
    assert "ending in a backslash" in str(err.value)
    assert [r["time"] for r in influx.query("SELECT * FROM energy_intensity", DB)] == [1, 3]
    sink.close()


def test_influxdb1_fixture_writes_and_reads_back_points_with_their_field_types(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    server = make_influxdb1(databases=("fixture",))
    status, body = server.write("m,site=a f=1.5,n=2i 1000", "fixture")
    assert status == 204, body
    assert server.query("SELECT * FROM m", "fixture") == [
        {"_measurement": "m", "time": 1000, "f": 1.5, "n": 2, "site": "a"}]
    assert server.query("SHOW FIELD KEYS FROM m", "fixture") == [
        {"_measurement": "m", "fieldKey": "f", "fieldType": "float"},
        {"_measurement": "m", "fieldKey": "n", "fieldType": "integer"}]



@pytest.mark.e2e
def test_a_password_from_a_file_writes_to_an_influxdb1_with_authentication(
    v1_stack: Callable[..., V1Stack], make_influxdb1: Callable[..., InfluxDB1],
    make_publisher: Callable[..., mqtt.Client], site: str, tmp_path: Path,
) -> None:
    password = tmp_path / "influx.password"
    password.write_text("s3cret-Pw\n")
    stack = v1_stack([*KERNEL_ARGS, "--influx-user", "wl", "--influx-password-file",
                      str(password)], admin=("wl", "s3cret-Pw"))
    _stream(stack, make_publisher(stack.broker), site)
    assert "s3cret" not in " ".join(stack.daemon.command()) + stack.daemon.log_text()


@pytest.mark.e2e
def test_a_wrong_password_is_refused_for_good_without_showing_it(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    influx = make_influxdb1(databases=(DB,), admin=("wl", "right-one"))
    sink = InfluxV1Sink(influx.url, DB, username="wl", password="wrong-one")
    sink.check()  # /ping needs no credentials
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("a", "b", 1)], schema=INTENSITY_SCHEMA))
    sink.close()
    assert not err.value.retryable and "HTTP 401" in str(err.value)
    assert "--influx-user" in str(err.value) and "wrong-one" not in str(err.value)


@pytest.mark.e2e
def test_a_missing_database_is_refused_and_named(make_influxdb1: Callable[..., InfluxDB1]) -> None:
    influx = make_influxdb1(databases=())
    sink = InfluxV1Sink(influx.url, "nowhere")
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("a", "b", 1)], schema=INTENSITY_SCHEMA))
    sink.close()
    assert not err.value.retryable
    assert 'database not found: "nowhere"' in str(err.value) and "--influx-db" in str(err.value)


@pytest.mark.e2e
def test_a_missing_retention_policy_is_retried_and_named(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    influx = make_influxdb1(databases=(DB,))
    sink = InfluxV1Sink(influx.url, DB, retention_policy="nope")
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("a", "b", 1)], schema=INTENSITY_SCHEMA))
    sink.close()
    assert err.value.retryable and "--influx-rp" in str(err.value)


@pytest.mark.parametrize("answering_server", [(503, {}), (500, {}), (408, {}),
                                              (429, {"Retry-After": "7"})], indirect=True)
def test_overload_and_server_errors_are_retryable_with_retry_after(
    answering_server: str,
) -> None:
    sink = InfluxV1Sink(answering_server, DB)
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("a", "b", 1)], schema=INTENSITY_SCHEMA))
    sink.close()
    assert err.value.retryable and "server says no" in str(err.value)
    assert err.value.retry_after_s == (7.0 if "HTTP 429" in str(err.value) else None)


def test_a_server_that_is_down_is_retryable_and_fails_the_health_check() -> None:
    sink = InfluxV1Sink(f"http://127.0.0.1:{free_port()}", DB, timeout_s=1)
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("a", "b", 1)], schema=INTENSITY_SCHEMA))
    assert err.value.retryable and "cannot reach InfluxDB" in str(err.value)
    with pytest.raises(SinkError, match="does not answer /ping"):
        sink.check()
    sink.close()


@pytest.mark.e2e
def test_points_refused_among_others_carrying_the_same_field_are_found_exactly(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    # Field types hold per shard (a week): an integer kwh_per_t in an old week refuses
    # the batch's points of that week alone, mixed in among points of this one.
    influx = make_influxdb1(databases=(DB,))
    old, now = 1_000_000_000_000, recent_start_ms()
    assert influx.write(f"energy_intensity,site=x,line=y,window=1m kwh_per_t=1i {old}", DB)[0] \
        == 204
    times = [now + i for i in range(40)]
    for i in (3, 17, 18, 31):
        times[i] = old + i
    sink = InfluxV1Sink(influx.url, DB)
    with pytest.raises(SinkError) as err:
        sink.write(pa.Table.from_pylist([_row("s", "L", t) for t in times],
                                        schema=INTENSITY_SCHEMA))
    sink.close()
    assert sorted(err.value.rejected or {}) == [3, 17, 18, 31]
    assert all("field type conflict" in why for why in (err.value.rejected or {}).values())
    read = influx.query("SELECT * FROM energy_intensity WHERE site = 's'", DB)
    assert sorted(r["time"] for r in read) == sorted(t for t in times if t > old + 100)
