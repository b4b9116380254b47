"""Operating the daemon: start-up errors in one line, the metrics port it picked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import Wattline, free_port, wait_until

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
