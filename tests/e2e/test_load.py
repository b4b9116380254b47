"""simulate's load mode: several publisher processes at a target rate, the rate they
achieved reported honestly, and every message delivered to a real broker."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from tests.processes import Mosquitto, wait_until
from wattline.simulators.load import line_names, run_load


def test_line_names_cycle_through_the_models() -> None:
    assert line_names(["eaf", "kiln"], 5) == ["eaf-1", "kiln-1", "eaf-2", "kiln-2", "eaf-3"]


@pytest.mark.e2e
def test_load_mode_reaches_its_target_and_every_message_arrives(
        mosquitto: Mosquitto, site: str) -> None:
    received = 0
    lock = threading.Lock()

    def count(client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        if not message.topic.endswith("/meta"):
            with lock:
                received += 1

    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscriber.on_message = count
    subscriber.connect("127.0.0.1", mosquitto.port)
    subscriber.subscribe(f"factory/{site}/#", qos=1)
    subscriber.loop_start()
    try:
        result = run_load(mosquitto.url, line_names(["kiln", "potline"], 8),
                          target_msgs_per_s=400, processes=2, duration_s=3, site=site)
        assert result.processes == 2 and len(result.per_process_msgs_per_s) == 2
        assert result.messages == result.readings  # one reading per message
        assert 0.8 * 400 <= result.achieved_msgs_per_s <= 1.2 * 400, str(result)
        wait_until(lambda: received == result.messages, timeout_s=10,
                   what=f"all {result.messages} messages at the subscriber")
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
