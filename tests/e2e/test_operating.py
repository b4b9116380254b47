"""Operating the daemon: start-up errors in one line, the metrics port it picked, what the
log says while data flows and when the broker comes back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.eaf_stream import ENERGY_METER, LINE
from tests.e2e.gateway import publish_stream
from tests.processes import Mosquitto, Stack, Wattline, free_port, wait_until

pytestmark = pytest.mark.e2e


def _run(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTLINE_")}
    return subprocess.run(
        [sys.executable, "-m", "wattline.ingest", "run", "--metrics-port", "0",
         "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}", *args],
        capture_output=True, text=True, timeout=timeout_s, env=env, check=False)


def _error_lines(stderr: str) -> list[str]:
    """The lines that are not ordinary log records."""
    return [line for line in stderr.splitlines()
            if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ", line)]


@pytest.mark.parametrize("flag", ["--state-dir", "--store"])
def test_a_folder_that_cannot_be_created_is_one_line_naming_its_flag(
    tmp_path: Path, flag: str
) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    done = _run(flag, str(not_a_folder / "sub"))
    assert done.returncode == 1
    lines = _error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in done.stderr
    assert str(not_a_folder) in lines[0] and flag in lines[0]


def test_debug_adds_the_traceback_to_the_one_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    done = _run("--state-dir", str(not_a_folder / "sub"), "--debug")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("Error: cannot start: ")


def test_a_metrics_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("--metrics-port", str(port))
    assert done.returncode == 1
    lines = _error_lines(done.stderr)
    assert lines == [lines[0]] and f"127.0.0.1:{port}" in lines[0], done.stderr
    assert "--metrics-port" in lines[0]


def test_a_bad_influx_url_is_refused_before_anything_starts() -> None:
    done = _run("--influx-url", "htp://127.0.0.1:8086", "--influx-bucket", "b")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: influx_url: expected http://host:port or https://host:port, "
        "got 'htp://127.0.0.1:8086'"]


def test_metrics_port_zero_logs_the_port_it_listens_on(tmp_path: Path) -> None:
    daemon = Wattline(tmp_path, ["--mqtt-url", f"mqtt://127.0.0.1:{free_port()}"])
    daemon.metrics_port = 0
    daemon.start()
    try:
        found: list[str] = []

        def logged() -> bool:
            found[:] = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                                  daemon.log_text())
            return bool(found)

        wait_until(logged, timeout_s=60, what="the metrics line in the log")
        assert found[0] != "0"
        daemon.metrics_port = int(found[0])
        daemon.wait_ready(10)  # /metrics answers on the port the log gave
    finally:
        daemon.stop()


def test_the_log_says_the_first_reading_of_a_line_and_meter_then_a_summary_of_it(
    mosquitto: Mosquitto, connected_daemon: Callable[..., Wattline], site: str,
) -> None:
    daemon = connected_daemon(["--mqtt-url", mosquitto.url, "--summary-every", "1s"])
    now_ms = int(time.time() * 1000)
    topic = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    publish_stream(daemon, mosquitto.port, site,
                   [(topic, {"ts": now_ms - 1000 * k, "v": 100.0 - k}) for k in range(5)])
    quiet = re.compile(rf"line {site}/{LINE}, last \d+ s: 0 readings")
    wait_until(lambda: quiet.search(daemon.log_text()), timeout_s=30,
               what="a summary after the readings")
    text = daemon.log_text()
    assert text.count(f"INFO wattline.pipeline: first reading of line {site}/{LINE}\n") == 1
    assert text.count(f"first reading of meter {site}/{LINE}/energy/{ENERGY_METER}\n") == 1
    summaries = re.findall(rf"line {site}/{LINE}, last \d+ s: (\d+) readings", text)
    assert sum(int(n) for n in summaries) == 5  # every reading counted once


def test_a_broker_back_after_a_restart_is_logged_with_how_long_it_was_gone(
    make_mosquitto: Callable[..., Mosquitto], connected_daemon: Callable[..., Wattline],
) -> None:
    broker = make_mosquitto()
    daemon = connected_daemon(["--mqtt-url", broker.url])
    broker.stop()
    wait_until(lambda: "cannot connect to" in daemon.log_text(), timeout_s=30,
               what="the daemon's first failed reconnect")
    broker.start()
    wait_until(lambda: "is back after" in daemon.log_text(), timeout_s=60,
               what="the line saying the broker is back")
    back = [line for line in daemon.log_text().splitlines() if "is back after" in line]
    assert len(back) == 1 and f"broker 127.0.0.1:{broker.port} is back after" in back[0]


@pytest.mark.parametrize("spooled", [False, True], ids=["queued", "spooled"])
def test_a_database_back_after_an_outage_is_logged_with_how_long_it_was_gone(
    make_stack: Callable[..., Stack], tmp_path: Path, site: str, spooled: bool,
) -> None:
    args = ["--emit-every", "1s", "--windows", "10s,1m", "--allowed-lateness", "0s"]
    if spooled:
        args += ["--state-dir", str(tmp_path / "state")]
    stack = make_stack(args, database_up=False)
    now_ms = int(time.time() * 1000)
    topic = f"factory/{site}/{LINE}/energy/{ENERGY_METER}"
    publish_stream(stack.daemon, stack.broker.port, site,
                   [(topic, {"ts": now_ms - 1000 * (30 - k), "v": 100.0 + k}) for k in range(30)])
    wait_until(lambda: stack.daemon.metric_sum("wattline_sink_write_errors_total") > 0,
               timeout_s=60, what="a failed write")
    stack.victoria.start()
    back = "answers again after" if spooled else "is back after"
    wait_until(lambda: back in stack.daemon.log_text(), timeout_s=90,
               what="the line saying the database is back")
    lines = [line for line in stack.daemon.log_text().splitlines() if back in line]
    assert len(lines) == 1 and re.search(r"after \d+ s \(\d+ failed writes\)", lines[0])
