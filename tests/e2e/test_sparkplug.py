"""Sparkplug B: the decoder's session rules on hand-made payloads, and a daemon with
--sparkplug against a real broker (rebirth requests, unparseable payloads)."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.contract import sparkplug_b as spb
from wattline.contract.errors import PayloadError, TopicError
from wattline.ingest.sources.sparkplug import SparkplugDecoder

T = 1_732_406_400_000
MAX = 1 << 20
DOUBLE = spb.DataType.DOUBLE


def metric(name: str | None, alias: int, value: float | None, ts: int = T,
           datatype: int | None = DOUBLE) -> spb.Metric:
    return spb.Metric(name=name, alias=alias, timestamp=ts, datatype=datatype, value=value,
                      is_null=value is None)


def birth(seq: int = 0, bd_seq: int = 0) -> bytes:
    return spb.encode([
        metric("energy/power", 1, 100.0), metric("production/steel", 2, 5.0),
        metric("Node Control/Rebirth", 3, 0.0),
        metric("bdSeq", 4, bd_seq, datatype=spb.DataType.INT64)], timestamp=T, seq=seq)


def data(seq: int, *values: tuple[int, float | None], ts: int = T + 1000) -> bytes:
    return spb.encode([metric(None, a, v, ts, datatype=None) for a, v in values],
                      timestamp=ts, seq=seq)


def death(bd_seq: int = 0) -> bytes:
    return spb.encode([metric("bdSeq", 0, bd_seq, datatype=spb.DataType.INT64)], timestamp=T)


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
    command = spb.Payload.FromString(payload)
    assert [(m.name, m.datatype, m.boolean_value) for m in command.metrics] == [
        ("Node Control/Rebirth", spb.DataType.BOOLEAN, True)]
    assert command.HasField("timestamp") and not command.HasField("seq")
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
    assert d.decode("spBv1.0/plant/NDEATH/eaf-1", death(), max_bytes=MAX).events == ["death"]
    after = d.decode("spBv1.0/plant/NDATA/eaf-1", data(1, (1, 1.0)), max_bytes=MAX)
    assert after.dropped == {"sparkplug_alias": 1}


def test_the_late_will_of_an_earlier_session_does_not_forget_the_new_birth() -> None:
    d = SparkplugDecoder()
    d.decode("spBv1.0/plant/NBIRTH/eaf-1", birth(bd_seq=7), max_bytes=MAX)
    stale = d.decode("spBv1.0/plant/NDEATH/eaf-1", death(bd_seq=6), max_bytes=MAX)
    assert stale.events == ["stale_death"]
    after = d.decode("spBv1.0/plant/NDATA/eaf-1", data(1, (1, 104.0)), max_bytes=MAX)
    assert readings(after) == {("energy", "power"): [104.0]} and after.dropped == {}
    assert d.decode("spBv1.0/plant/NDEATH/eaf-1", death(bd_seq=7),
                    max_bytes=MAX).events == ["death"]


def test_null_metrics_are_bad_quality_and_device_metrics_name_device_meters() -> None:
    d = SparkplugDecoder()
    dbirth = spb.encode([metric("energy/gas", 7, 3.0)], timestamp=T, seq=0)
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


def test_names_with_spaces_are_ids_and_ids_that_are_no_names_are_topic_name() -> None:
    d = SparkplugDecoder()
    ok = d.decode("spBv1.0/Sparkplug B Devices/NBIRTH/EAF 1", birth(), max_bytes=MAX)
    assert (ok.site, ok.line) == ("Sparkplug B Devices", "EAF 1")
    dbirth = spb.encode([metric("energy/Öfen-3", 9, 1.0)], timestamp=T, seq=1)
    dev = d.decode("spBv1.0/Sparkplug B Devices/DBIRTH/EAF 1/Pfanne 2", dbirth, max_bytes=MAX)
    assert readings(dev) == {("energy", "Pfanne 2.Öfen-3"): [1.0]}
    for topic in ("spBv1.0/ Plant/NBIRTH/eaf-1", "spBv1.0/plant/NBIRTH/..",
                  "spBv1.0/plant/DBIRTH/eaf-1/dev ", "spBv1.0/plant/NBIRTH/a\tb"):
        with pytest.raises(TopicError) as err:
            d.decode(topic, birth(), max_bytes=MAX)
        assert err.value.reason == "topic_name"


@pytest.mark.parametrize(("datatype", "value", "expected"), [
    (spb.DataType.INT8, -5, -5.0), (spb.DataType.INT16, -300, -300.0),
    (spb.DataType.INT32, -70_000, -70_000.0), (spb.DataType.INT64, -(2 ** 40), -(2.0 ** 40)),
    (spb.DataType.UINT8, 250, 250.0), (spb.DataType.UINT32, 4_000_000_000, 4e9),
    (spb.DataType.UINT64, 2 ** 63, 2.0 ** 63), (spb.DataType.FLOAT, 1.5, 1.5),
    (spb.DataType.DOUBLE, 0.1, 0.1)])
def test_numbers_of_every_numeric_datatype_are_readings(datatype: int, value: float,
                                                       expected: float) -> None:
    d = SparkplugDecoder()
    payload = spb.encode([metric("energy/m", 1, value, datatype=datatype)], timestamp=T, seq=0)
    assert readings(d.decode("spBv1.0/p/NBIRTH/l", payload, max_bytes=MAX)) == {
        ("energy", "m"): [expected]}
    # DATA by alias, without a datatype: the BIRTH's datatype says how to read it.
    message = spb.Payload()
    message.timestamp, message.seq = T + 1, 1
    written = spb.Payload.FromString(payload).metrics[0]
    m = message.metrics.add(alias=1)
    setattr(m, written.WhichOneof("value"), getattr(written, written.WhichOneof("value")))
    later = d.decode("spBv1.0/p/NDATA/l", message.SerializeToString(), max_bytes=MAX)
    assert readings(later) == {("energy", "m"): [expected]}


def test_an_int8_sign_extended_to_32_bits_reads_as_the_same_number() -> None:
    message = spb.Payload()
    message.timestamp, message.seq = T, 0
    m = message.metrics.add(name="energy/m", datatype=spb.DataType.INT8)
    m.int_value = 0xFFFF_FFFB  # -5, as some encoders write it
    result = SparkplugDecoder().decode("spBv1.0/p/NBIRTH/l", message.SerializeToString(),
                                       max_bytes=MAX)
    assert readings(result) == {("energy", "m"): [-5.0]}


@pytest.mark.parametrize(("datatype", "value"), [
    (spb.DataType.BOOLEAN, True), (spb.DataType.STRING, "12.5"),
    (spb.DataType.DATETIME, T)])
def test_values_that_are_not_numbers_are_value_type(datatype: int, value: object) -> None:
    payload = spb.encode([metric("energy/m", 1, value, datatype=datatype)], timestamp=T, seq=0)
    result = SparkplugDecoder().decode("spBv1.0/p/NBIRTH/l", payload, max_bytes=MAX)
    assert result.readings == [] and result.dropped == {"value_type": 1}


@pytest.mark.parametrize(("quality", "kept"), [(192, True), (0, False), (500, False)])
def test_a_quality_property_other_than_good_drops_the_reading(quality: int,
                                                              kept: bool) -> None:
    message = spb.Payload()
    message.timestamp, message.seq = T, 0
    m = message.metrics.add(name="energy/m", datatype=DOUBLE, double_value=3.0)
    m.properties.keys.append("Quality")
    m.properties.values.add(type=spb.DataType.INT32, int_value=quality)
    result = SparkplugDecoder().decode("spBv1.0/p/NBIRTH/l", message.SerializeToString(),
                                       max_bytes=MAX)
    assert (readings(result) == {("energy", "m"): [3.0]}) is kept
    assert result.dropped == ({} if kept else {"quality": 1})


def test_data_by_name_uses_the_births_datatype_and_unknown_aliases_ask_for_a_rebirth(
        ) -> None:
    d = SparkplugDecoder(clock=lambda: 0.0)
    d.decode("spBv1.0/p/NBIRTH/l", spb.encode(
        [metric("energy/m", 1, 1, datatype=spb.DataType.INT16)], timestamp=T, seq=0),
        max_bytes=MAX)
    by_name = d.decode("spBv1.0/p/NDATA/l", spb.encode(
        [metric("energy/m", 1, -2, datatype=spb.DataType.INT16)._replace(alias=None),
         metric(None, 99, 5.0)], timestamp=T + 1, seq=1), max_bytes=MAX)
    assert readings(by_name) == {("energy", "m"): [-2.0]}
    assert by_name.dropped == {"sparkplug_alias": 1} and by_name.rebirth is not None


def test_a_birth_without_a_sequence_number_is_refused() -> None:
    with pytest.raises(PayloadError) as err:
        SparkplugDecoder().decode("spBv1.0/p/NBIRTH/l", spb.encode(
            [metric("energy/m", 1, 1.0)], timestamp=T), max_bytes=MAX)
    assert err.value.reason == "sparkplug_invalid"


def test_without_protobuf_the_decoder_says_in_one_line_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from wattline.contract.errors import ConfigError

    monkeypatch.setitem(sys.modules, "wattline.contract.sparkplug_b", None)
    with pytest.raises(ConfigError) as err:
        SparkplugDecoder()
    assert "pip install 'protobuf" in str(err.value) and "\n" not in str(err.value)


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
        assert [m.name for m in spb.Payload.FromString(payload).metrics] == [
            "Node Control/Rebirth"]
        wait_until(lambda: daemon.metric("wattline_payload_errors_total",
                                         {"reason": "sparkplug_invalid"}) == 1.0, timeout_s=10)
        assert daemon.metric("wattline_sparkplug_events_total",
                             {"event": "rebirth_requested"}) == 1.0
        assert daemon.metric("wattline_readings_dropped_total",
                             {"reason": "sparkplug_alias"}) == 1.0
    finally:
        client.disconnect()
        client.loop_stop()
