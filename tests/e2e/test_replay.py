"""Captures: file formats, recording what ``simulate`` would publish, replaying to a broker."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from tests.processes import Mosquitto, wait_until
from wattline.ingest.app.cli import main
from wattline.simulators import replay as replay_module
from wattline.simulators.publisher import readings_per_message, schedule
from wattline.simulators.replay import (
    CapturedMessage,
    CaptureError,
    ReplaySummary,
    read_capture,
    record_schedule,
    replay,
    write_capture,
)

FORMATS = ("capture.jsonl", "capture.jsonl.gz", "capture.parquet")
NOW_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


def awkward_messages() -> list[CapturedMessage]:
    """Messages whose payloads are not all text: invalid UTF-8, NUL bytes, empty."""
    return [
        CapturedMessage(NOW_MS, "factory/s/eaf-1/energy/main/meta", b'{"unit":"kWh"}', True, 1),
        CapturedMessage(NOW_MS + 10, "factory/s/eaf-1/energy/main", b"\xff\xfe\x00raw", False, 0),
        CapturedMessage(NOW_MS + 10, "factory/s/eaf-1/energy/main", b"", False, 2),
        CapturedMessage(NOW_MS - 5, "factory/s/\u00e9t\u00e9/x", bytes(range(256)), False, 1),
    ]


@pytest.mark.parametrize("name", FORMATS)
def test_a_capture_reads_back_byte_for_byte(tmp_path: Path, name: str) -> None:
    messages = awkward_messages()
    path = tmp_path / name
    assert write_capture(path, iter(messages)) == len(messages)
    assert read_capture(path) == messages
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_the_gzip_capture_is_compressed_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    write_capture(path, awkward_messages())
    first = gzip.decompress(path.read_bytes()).splitlines()[0]
    assert first.startswith(b'{"t_ms":1767225600000,"topic":"factory/s/eaf-1/energy/main/meta"')


def test_the_parquet_capture_has_the_documented_columns(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    write_capture(path, awkward_messages())
    schema = pq.read_schema(path)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("t_ms", "int64"), ("topic", "string"), ("payload", "binary"), ("retain", "bool"),
        ("qos", "int8"),
    ]


@pytest.mark.parametrize("name", ["capture.json", "capture.csv", "capture", "capture.gz"])
def test_an_unknown_extension_names_the_accepted_ones(tmp_path: Path, name: str) -> None:
    with pytest.raises(CaptureError, match=r"\.jsonl, \.jsonl\.gz, \.parquet"):
        write_capture(tmp_path / name, [])
    with pytest.raises(CaptureError, match=r"\.jsonl, \.jsonl\.gz, \.parquet"):
        read_capture(tmp_path / name)


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        (b"{not json", "not a captured message"),
        (b'{"t_ms": 1, "topic": "a", "retain": false, "qos": 1}', "missing payload_b64"),
        (b'{"t_ms": 1, "topic": "a", "payload_b64": "@@", "retain": false, "qos": 1}',
         "base64"),
        (b'{"t_ms": 1, "topic": "a", "payload_b64": "", "retain": false, "qos": 3}', "qos"),
        (b'{"t_ms": "1", "topic": "a", "payload_b64": "", "retain": false, "qos": 1}', "t_ms"),
        (b"[1, 2]", "object"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_number(
    tmp_path: Path, bad_line: bytes, why: str
) -> None:
    path = tmp_path / "c.jsonl"
    write_capture(path, awkward_messages()[:2])
    path.write_bytes(path.read_bytes() + b"\n" + bad_line + b"\n")
    with pytest.raises(CaptureError, match=rf"c\.jsonl, line 4: .*{why}"):
        read_capture(path)


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CaptureError, match="not a Parquet capture"):
        read_capture(path)


def test_record_writes_what_simulate_would_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "_now_ms", lambda: NOW_MS)
    path = tmp_path / "run.jsonl.gz"
    result = CliRunner().invoke(main, [
        "simulate", "--lines", "eaf-1,kiln-1", "--site", "rec", "--rate", "5",
        "--duration", "30", "--speed", "40", "--seed", "7",
        "--spike", "kiln-1@5m+2mx3", "--record", str(path),
    ])
    assert result.exit_code == 0, result.output
    captured = read_capture(path)
    from wattline.simulators.events import parse_spike

    expected = list(schedule(
        ["eaf-1", "kiln-1"], site="rec", start_ms=NOW_MS - 1_200_000, plant_s=1200.0,
        rate_s=5.0, seed=7, readings_per_message=readings_per_message(40.0, 5.0),
        events=[parse_spike("kiln-1@5m+2mx3")],
    ))
    assert result.output.strip() == f"wrote {len(expected):,} messages to {path}"
    assert captured == [
        CapturedMessage(m.due_ms, m.topic, m.payload, m.retain, 1) for m in expected
    ]
    assert sum(m.retain for m in captured) == 6


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replay", "missing.jsonl"], "there is no capture file 'missing.jsonl'"),
        (["--replay", "capture.txt"], "must end in .jsonl, .jsonl.gz, .parquet"),
        (["--record", "out.csv"], "e.g. --record run.jsonl.gz"),
        (["--record", "out.jsonl", "--duration", "0"], "a recording needs a length"),
        (["--record", "out.jsonl", "--speed", "0"], "positive number of plant seconds"),
        (["--record", "a.jsonl", "--replay", "b.jsonl"], "cannot be combined"),
        (["--record", "out.jsonl", "--lines", "mill-1"], "mill"),
    ],
)
def test_simulate_says_what_to_do_about_bad_capture_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())


def test_replaying_a_malformed_capture_is_a_click_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t_ms": 1}\n')
    result = CliRunner().invoke(main, ["simulate", "--replay", str(path)])
    assert result.exit_code == 1
    assert "bad.jsonl, line 1" in result.output
    assert "wattline simulate --record" in result.output


class RetainSubscriber:
    """An MQTT 5 subscriber that sees the retain flag as published (retain-as-published)."""

    def __init__(self, broker: Mosquitto, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool, int]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        options = mqtt.SubscribeOptions(qos=2, retainAsPublished=True)
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, options=options)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.e2e
def test_replay_publishes_the_capture_unchanged(
    mosquitto: Mosquitto, site: str, tmp_path: Path
) -> None:
    path = tmp_path / "small.parquet"
    written = record_schedule(path, ["eaf-1", "kiln-1"], site=site, duration_s=1.0, speed=60.0,
                              seed=3)
    capture = read_capture(path)
    assert written == len(capture) > 6
    sub = RetainSubscriber(mosquitto, f"factory/{site}/#")
    reports: list[tuple[int, int]] = []
    try:
        summary = replay(mosquitto.url, path, speed=120.0, progress=lambda *a: reports.append(a))
        wait_until(lambda: sub.count() >= len(capture), 10, what="the replayed messages")
        time.sleep(0.2)
    finally:
        sub.close()
    assert isinstance(summary, ReplaySummary)
    assert (summary.messages, summary.retained, summary.stopped) == (len(capture), 6, False)
    # Every message arrived in capture order, with its topic, payload bytes and retain flag.
    assert sub.messages == [(m.topic, m.payload, m.retain, m.qos) for m in capture]
    assert all(retain == topic.endswith("/meta") for topic, _, retain, _ in sub.messages)
    # 60 recorded seconds at x120 take about half a second.
    assert summary.recorded_span_s == pytest.approx(60.0, abs=10.0)
    assert 0.4 <= summary.wall_s <= 3.0
    assert summary.messages_per_s > 0 and "replayed" in str(summary)
    assert reports[-1] == (len(capture), len(capture))


@pytest.mark.e2e
def test_replay_at_speed_zero_has_no_pauses_and_stop_ends_it(
    mosquitto: Mosquitto, site: str, tmp_path: Path
) -> None:
    path = tmp_path / "long.jsonl"
    record_schedule(path, ["potline-1"], site=site, duration_s=3600.0, speed=1.0, rate_s=60.0)
    summary = replay(mosquitto.url, path, speed=0)
    assert summary.messages == len(read_capture(path))
    assert summary.wall_s < 5.0 and "as fast as possible" in str(summary)
    stop = threading.Event()
    stop.set()
    stopped = replay(mosquitto.url, path, speed=1.0, stop=stop)
    assert stopped.stopped and stopped.messages == 0
