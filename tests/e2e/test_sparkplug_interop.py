"""Sparkplug B against an implementation that is not wattline's: pysparkplug.

- wattline's schema has the field numbers, types and labels of pysparkplug's generated
  one (itself built from the specification's .proto), message by message;
- payloads pysparkplug encodes (every numeric datatype, births, data, deaths) decode
  to the same numbers, and pysparkplug reads what wattline encodes (the rebirth
  command, the simulator's births and data);
- end to end: pysparkplug's own ``EdgeNode`` and ``Device`` with their own MQTT client
  (paho-mqtt 1.x, in a virtual environment of their own) publish NBIRTH, DBIRTH,
  NDATA, DDATA and NDEATH through a real Mosquitto to a daemon with --sparkplug, which
  writes the right intensity under the group and edge node names exactly.

pysparkplug is a test-only peer (scripts/setup.sh installs it); wattline does not use it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.e2e.gateway import close_publisher, connect_publisher
from tests.e2e.real_names import ARGS, STEP_MS, TICK_MS, wait_subscribed
from tests.processes import Mosquitto, Stack, wait_until
from wattline.contract import sparkplug_b as ours
from wattline.ingest.sources.sparkplug import SparkplugDecoder, rebirth_request

REPO = Path(__file__).resolve().parents[2]
PEER_PYTHON = REPO / ".venv" / "peers" / "pysparkplug" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("sparkplug_peer.py")
T = 1_732_406_400_000
MAX = 1 << 20


def _need(what: str) -> None:
    message = f"{what} is not installed: run scripts/setup.sh (make setup)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def theirs():
    try:
        import pysparkplug
    except ImportError:
        _need("pysparkplug (test-only)")
    return pysparkplug


def test_our_schema_is_field_for_field_the_one_other_implementations_use(theirs) -> None:
    from pysparkplug import _protobuf

    theirs_by_message = ours.schema_fields(_protobuf.Payload.DESCRIPTOR)
    assert ours.schema_fields() == theirs_by_message
    assert len(theirs_by_message) == 15  # Payload and the 14 messages nested in it


NUMERIC = [("INT8", -100), ("INT16", -30_000), ("INT32", -2_000_000_000),
           ("INT64", -(2 ** 62)), ("UINT8", 200), ("UINT16", 60_000),
           ("UINT32", 4_000_000_000), ("UINT64", 2 ** 63 + 5), ("FLOAT", 0.5),
           ("DOUBLE", 123456.789)]


@pytest.mark.parametrize(("datatype", "value"), NUMERIC)
def test_their_numbers_of_every_datatype_read_the_same_here(theirs, datatype: str,
                                                            value: float) -> None:
    spb = theirs
    dt = getattr(spb.DataType, datatype)
    birth = spb.NBirth(timestamp=T, seq=0, metrics=(
        spb.Metric(timestamp=T, name="energy/m", datatype=dt, value=value, alias=5),
        spb.Metric(timestamp=T, name="bdSeq", datatype=spb.DataType.INT64, value=0)))
    data = spb.NData(timestamp=T + 1, seq=1, metrics=(
        spb.Metric(timestamp=T + 1, name=None, datatype=dt, value=value, alias=5),))
    decoder = SparkplugDecoder()
    first = decoder.decode("spBv1.0/Sparkplug B Devices/NBIRTH/EAF 1",
                           birth.encode(include_dtypes=True), max_bytes=MAX)
    then = decoder.decode("spBv1.0/Sparkplug B Devices/NDATA/EAF 1", data.encode(),
                          max_bytes=MAX)
    for result in (first, then):
        [r] = result.readings
        assert (r.kind, r.meter) == ("energy", "m") and result.dropped == {}
        assert r.value.tolist() == [float(value)]
    assert then.events == [] and then.rebirth is None


def test_their_devices_nulls_and_deaths_read_here_as_the_contract_says(theirs) -> None:
    spb = theirs
    d = SparkplugDecoder()
    d.decode("spBv1.0/g/NBIRTH/n", spb.NBirth(timestamp=T, seq=0, metrics=(
        spb.Metric(timestamp=T, name="bdSeq", datatype=spb.DataType.INT64, value=3),
    )).encode(include_dtypes=True), max_bytes=MAX)
    dbirth = spb.DBirth(timestamp=T, seq=1, metrics=(
        spb.Metric(timestamp=T, name="energy/gas", datatype=spb.DataType.DOUBLE, value=2.0),))
    assert [(r.meter, r.value.tolist()) for r in d.decode(
        "spBv1.0/g/DBIRTH/n/burner", dbirth.encode(), max_bytes=MAX).readings] == [
        ("burner.gas", [2.0])]
    null = spb.DData(T, seq=2, metrics=(spb.Metric(
        timestamp=T, name="energy/gas", datatype=spb.DataType.DOUBLE, is_null=True),))
    assert d.decode("spBv1.0/g/DDATA/n/burner", null.encode(include_dtypes=True),
                    max_bytes=MAX).dropped == {"quality": 1}
    ddeath = spb.DDeath(timestamp=T, seq=3)
    assert d.decode("spBv1.0/g/DDEATH/n/burner", ddeath.encode(),
                    max_bytes=MAX).events == ["death"]
    old_will = spb.NDeath(timestamp=T, bd_seq_metric=spb.Metric(
        timestamp=T, name="bdSeq", datatype=spb.DataType.INT64, value=2))
    assert d.decode("spBv1.0/g/NDEATH/n", old_will.encode(),
                    max_bytes=MAX).events == ["stale_death"]
    will = spb.NDeath(timestamp=T, bd_seq_metric=spb.Metric(
        timestamp=T, name="bdSeq", datatype=spb.DataType.INT64, value=3))
    assert d.decode("spBv1.0/g/NDEATH/n", will.encode(), max_bytes=MAX).events == ["death"]


@pytest.mark.parametrize(("datatype", "value"), NUMERIC)
def test_they_read_what_we_encode(theirs, datatype: str, value: float) -> None:
    payload = ours.encode([ours.Metric(name="energy/m", alias=1, timestamp=T,
                                       datatype=getattr(ours.DataType, datatype),
                                       value=value)], timestamp=T, seq=0)
    [metric] = theirs.NBirth.decode(payload).metrics
    assert (metric.name, metric.alias, metric.timestamp) == ("energy/m", 1, T)
    assert metric.value == pytest.approx(value, rel=1e-7)


def test_they_read_our_rebirth_command(theirs) -> None:
    [metric] = theirs.NCmd.decode(rebirth_request(T)).metrics
    assert (metric.name, metric.value, metric.datatype) == (
        "Node Control/Rebirth", True, theirs.DataType.BOOLEAN)


@pytest.mark.e2e
def test_their_edge_node_and_device_reach_the_daemon_through_mosquitto(
        make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    from wattline.ingest.sinks.parquet_store import read_store

    if not PEER_PYTHON.exists():
        _need(f"the Sparkplug peer environment {PEER_PYTHON.parent.parent}")
    group, node, device, steps = "Sparkplug B Devices", "EAF 1", "Pfanne 2", 45
    store = tmp_path / "store"
    stack = make_stack([*ARGS, "--sparkplug", "--store", str(store)])
    broker: Mosquitto = stack.broker
    client = connect_publisher(broker.port)
    try:
        wait_subscribed(stack.daemon, client)
    finally:
        close_publisher(client)
    start = (int(time.time() * 1000) - 10 * 60_000) // TICK_MS * TICK_MS
    spec = {"host": "127.0.0.1", "port": broker.port, "group": group, "node": node,
            "device": device, "start_ms": start, "steps": steps, "step_ms": STEP_MS}
    done = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]

    last_tick = start + steps * STEP_MS // TICK_MS * TICK_MS
    selector = f'energy_intensity_kwh_per_t{{site="{group}",line="{node}",window="1m"}}'
    wait_until(lambda: last_tick in stack.victoria.samples(selector), timeout_s=60,
               interval_s=0.5, what="the peer's last tick in VictoriaMetrics")
    # 4 kWh (node) + 1 kWh (device) per 0.25 t
    assert stack.victoria.samples(selector)[last_tick] == [20.0]
    daemon = stack.daemon
    # One NBIRTH and one DBIRTH; a peer whose session dropped on a loaded machine births
    # again on reconnect, which Sparkplug allows and which must change no figure.
    assert daemon.metric("wattline_sparkplug_events_total", {"event": "birth"}) >= 2.0
    assert daemon.metric_sum("wattline_sparkplug_events_total", {"event": "seq_gap"}) == 0
    # pysparkplug 0.6.1 sends the NDEATH of a clean disconnect with the bdSeq it has
    # already moved on to for its next session, not the one of its NBIRTH: a host
    # following the specification takes it for an older session's will.
    wait_until(lambda: daemon.metric_sum("wattline_sparkplug_events_total",
                                         {"event": "stale_death"}) == 1.0, timeout_s=10,
               what="the peer's NDEATH")
    assert daemon.metric_sum("wattline_sparkplug_events_total", {"event": "death"}) == 0
    assert daemon.metric_sum("wattline_readings_dropped_total") == 0
    assert daemon.metric_sum("wattline_payload_errors_total") == 0
    # node: 2 meters x (steps + 1) + 1 late one; device: steps + 1
    assert daemon.metric("wattline_readings_received_total") == 3 * (steps + 1) + 1
    wait_until(lambda: last_tick in read_store(store, site=group, line=node)["time_ms"]
               .to_pylist(), timeout_s=30, interval_s=0.5, what="the last tick in the store")
    assert {(r["site"], r["line"]) for r in read_store(store).to_pylist()} == {(group, node)}
