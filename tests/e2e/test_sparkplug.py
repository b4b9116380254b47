"""Sparkplug B: the decoder's session rules on hand-made payloads, and a daemon with
--sparkplug against a real broker (rebirth requests, unparseable payloads)."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pysparkplug as spb
import pytest

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.contract.errors import PayloadError
from wattline.ingest.sources.sparkplug import SparkplugDecoder

T = 1_732_406_400_000
MAX = 1 << 20


def metric(name: str | None, alias: int, value: float | None, ts: int = T) -> spb.Metric:
    return spb.Metric(timestamp=ts, name=name, datatype=spb.DataType.DOUBLE, alias=alias,
                      value=value, is_null=value is None)


def birth(seq: int = 0) -> bytes:
    return spb.NBirth(timestamp=T, seq=seq, metrics=(
        metric("energy/power", 1, 100.0), metric("production/steel", 2, 5.0),
        metric("Node Control/Rebirth", 3, 0.0))).encode()


def data(seq: int, *values: tuple[int, float | None], ts: int = T + 1000) -> bytes:
    return spb.NData(timestamp=ts, seq=seq,
                     metrics=tuple(metric(None, a, v, ts) for a, v in values)).encode()


def readings(result) -> dict[tuple[str, str], list[float]]:
    return {(r.kind, r.meter): r.value.tolist() for r in result.readings}


def test_birth_names_aliases_and_data_by_alias_becomes_readings() -> None:
    d = SparkplugDecoder()
    first = d.decode("spBv1.0/plant/NBIRTH/eaf-1", birth(), max_bytes=MAX)
    assert (first.site, first.line) == ("plant", "eaf-1")
    assert readings(first) == {("energy", "power"): [100.0], ("production", "steel"): [5.0]}
    assert first.events == ["birth"]
    then = d.decode("spBv1.0/plant/NDATA/eaf-1", data(1, (1, 104.5), (2, 5.5)), max_bytes=MAX)
    assert readings(then) == {("energy", "power"): [104.5], ("production", "steel"): [5.5]}
    assert then.rebirth is None and then.dropped == {}


def test_a_sequence_gap_asks_for_a_rebirth_once_and_keeps_the_data() -> None:
    d = SparkplugDecoder(clock=lambda: 0.0)
    d.decode("spBv1.0/plant/NBIRTH/eaf-1", birth(), max_bytes=MAX)
    gap = d.decode("spBv1.0/plant/NDATA/eaf-1", data(5, (1, 110.0)), max_bytes=MAX)
    assert gap.events == ["seq_gap", "rebirth_requested"]
    topic, payload = gap.rebirth
    assert topic == "spBv1.0/plant/NCMD/eaf-1"
    command = spb.NCmd.decode(payload)
    assert [(m.name, m.value) for m in command.metrics] == [("Node Control/Rebirth", True)]
    assert readings(gap) == {("energy", "power"): [110.0]}
    again = d.decode("spBv1.0/plant/NDATA/eaf-1", data(9, (1, 111.0)), max_bytes=MAX)
    assert again.events == ["seq_gap"] and again.rebirth is None  # not more than every 10 s


def test_sequence_numbers_wrap_at_256_without_a_gap() -> None:
    d = SparkplugDecoder()
    d.decode("spBv1.0/plant/NBIRTH/eaf-1", birth(), max_bytes=MAX)
    for seq in [*range(1, 256), 0, 1]:
        result = d.decode("spBv1.0/plant/NDATA/eaf-1", data(seq, (1, 1.0)), max_bytes=MAX)
        assert "seq_gap" not in result.events, seq


def test_data_before_any_birth_drops_its_aliases_and_asks_for_a_rebirth() -> None:
    d = SparkplugDecoder()
    result = d.decode("spBv1.0/plant/NDATA/eaf-1", data(3, (1, 1.0), (2, 2.0)), max_bytes=MAX)
    assert result.readings == [] and result.dropped == {"sparkplug_alias": 2}
    assert result.rebirth is not None


def test_a_death_forgets_the_birth() -> None:
    d = SparkplugDecoder()
    d.decode("spBv1.0/plant/NBIRTH/eaf-1", birth(), max_bytes=MAX)
    death = spb.NDeath(timestamp=T, bd_seq_metric=spb.Metric(
        timestamp=T, name="bdSeq", datatype=spb.DataType.INT64, value=0)).encode()
    assert d.decode("spBv1.0/plant/NDEATH/eaf-1", death, max_bytes=MAX).events == ["death"]
    after = d.decode("spBv1.0/plant/NDATA/eaf-1", data(1, (1, 1.0)), max_bytes=MAX)
    assert after.dropped == {"sparkplug_alias": 1}


def test_null_metrics_are_bad_quality_and_device_metrics_name_device_meters() -> None:
    d = SparkplugDecoder()
    dbirth = spb.DBirth(timestamp=T, seq=0, metrics=(metric("energy/gas", 7, 3.0),)).encode()
    result = d.decode("spBv1.0/plant/DBIRTH/kiln-1/burner", dbirth, max_bytes=MAX)
    assert readings(result) == {("energy", "burner.gas"): [3.0]}
    null = d.decode("spBv1.0/plant/DDATA/kiln-1/burner", data(1, (7, None)), max_bytes=MAX)
    assert null.dropped == {"quality": 1} and null.readings == []


@pytest.mark.parametrize(("kind", "payload"), [("NDATA", b"\xff\xfe not protobuf"),
                                             ("NBIRTH", b""), ("NBIRTH", b"\x08")])
def test_a_payload_that_does_not_parse_is_a_payload_error(kind: str, payload: bytes) -> None:
    with pytest.raises(PayloadError) as err:
        SparkplugDecoder().decode(f"spBv1.0/plant/{kind}/eaf-1", payload, max_bytes=MAX)
    assert err.value.reason == "sparkplug_invalid"


@pytest.mark.e2e
def test_the_daemon_asks_a_node_without_a_birth_for_one_and_counts_bad_payloads(
    mosquitto: Mosquitto, connected_daemon: Callable[..., Wattline], site: str,
) -> None:
    daemon = connected_daemon(["--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}",
                               "--sparkplug"])
    commands: list[tuple[str, bytes]] = []
    host, port = mosquitto.url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: commands.append((m.topic, m.payload))
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.subscribe(f"spBv1.0/{site}/NCMD/#", qos=1)
        time.sleep(0.5)
        now = int(time.time() * 1000)
        client.publish(f"spBv1.0/{site}/NDATA/eaf-1", data(4, (1, 1.0), ts=now),
                       qos=1).wait_for_publish(5)
        client.publish(f"spBv1.0/{site}/NDATA/eaf-1", b"garbage", qos=1).wait_for_publish(5)
        wait_until(lambda: commands, timeout_s=10, what="a rebirth request")
        topic, payload = commands[0]
        assert topic == f"spBv1.0/{site}/NCMD/eaf-1"
        assert [m.name for m in spb.NCmd.decode(payload).metrics] == ["Node Control/Rebirth"]
        wait_until(lambda: daemon.metric("wattline_payload_errors_total",
                                         {"reason": "sparkplug_invalid"}) == 1.0, timeout_s=10)
        assert daemon.metric("wattline_sparkplug_events_total",
                             {"event": "rebirth_requested"}) == 1.0
        assert daemon.metric("wattline_readings_dropped_total",
                             {"reason": "sparkplug_alias"}) == 1.0
    finally:
        client.disconnect()
        client.loop_stop()
