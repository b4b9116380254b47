"""`wattline bench ingest --source nats` at a tiny size: the daemons sharing the stream
receive every reading (the bench fails otherwise), their shares add up, and the MQTT
baseline is measured on the same messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from wattline.ingest.app.broker import find_mosquitto


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("nats-server") is None or find_mosquitto() is None,
                    reason="nats-server or Mosquitto is not installed (make setup)")
def test_the_nats_bench_reports_each_daemon_all_together_and_the_mqtt_baseline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wattline.ingest", "bench", "ingest", "--source", "nats",
         "--messages", "3000", "--daemons", "2", "--partitions", "4", "--json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["messages"] == 3000 and figures["partitions"] == 4
    each = figures["nats_2_per_daemon_readings_per_s"]
    assert len(each) == 2 and all(x > 0 for x in each), "both daemons took a share"
    assert sum(each) == pytest.approx(figures["nats_2_readings_per_s"], rel=0.01)
    assert figures["mqtt_1_readings_per_s"] > 0
    assert "NATS, 2 daemon(s): each" in done.stdout
