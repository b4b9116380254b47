"""deploy/systemd: the unit file passes systemd's own checks, and the daemon speaks the
notify protocol (ready, watchdog, stopping) to a real datagram socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import Mosquitto, Wattline
from wattline.ingest.app.systemd import notify, watchdog_interval_s

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "wattline.service"


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify insists that ExecStart exists: point it at this environment's wattline.
    here = Path(sys.executable).parent / "wattline"
    unit = tmp_path / "wattline.service"
    unit.write_text(UNIT.read_text().replace("/opt/wattline/bin/wattline", str(here)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if str(unit) in line or "wattline.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_unit_runs_unprivileged_hardened_and_watched() -> None:
    unit = _unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["StateDirectory"] == ["wattline"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert "WatchdogSec" in unit
    # Numba's JIT needs writable, then executable, memory.
    assert "MemoryDenyWriteExecute" not in unit


@pytest.fixture()
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    yield sock, path
    sock.close()


def test_notify_sends_the_state_to_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notify_outside_systemd_does_nothing() -> None:
    assert notify("READY=1", {}) is False


def test_notify_to_a_missing_socket_is_not_an_error(tmp_path: Path) -> None:
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_watchdog_interval_comes_from_watchdog_usec() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "90000000"}) == 90.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "bogus"}) is None


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    other = str(os.getpid() + 1)
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": other}) is None


def _collect(sock: socket.socket, until: Callable[[list[str]], bool], timeout_s: float
             ) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(seen):
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return seen


def test_daemon_reports_ready_feeds_the_watchdog_and_says_stopping(
    mosquitto: Mosquitto,
    wattline_daemon: Callable[..., Wattline],
    notify_socket: tuple[socket.socket, str],
    tmp_path: Path,
) -> None:
    sock, path = notify_socket
    daemon = wattline_daemon(
        ["--mqtt-url", mosquitto.url, "--store", str(tmp_path / "store")],
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"},
    )
    seen = _collect(sock, lambda s: sum(m == "WATCHDOG=1" for m in s) >= 3, timeout_s=30)
    assert seen and seen[0].startswith("READY=1"), seen
    assert sum(m == "WATCHDOG=1" for m in seen) >= 3, seen
    daemon.stop()
    rest = _collect(sock, lambda s: "STOPPING=1" in s, timeout_s=10)
    assert "STOPPING=1" in rest
