"""deploy/systemd: the unit file passes systemd's own checks, keeps its state private,
relies on the example config for a set-up that loses nothing across restarts (and that
config gives it), and the daemon speaks the notify protocol (ready, watchdog, stopping)
to a real datagram socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import Mosquitto, Wattline, wait_until
from wattline.ingest.app.systemd import notify, watchdog_interval_s
from wattline.ingest.config import check_config_file

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "wattline.service"
EXAMPLE = DEPLOY / "wattline.example.toml"


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


def test_unit_keeps_its_state_readable_by_the_service_only() -> None:
    unit = _unit_settings()
    assert unit["StateDirectoryMode"] == ["0700"]
    assert unit["UMask"] == ["0077"]


def test_the_example_config_is_the_no_loss_set_up_the_unit_relies_on() -> None:
    """QoS 1, a state folder (write-ahead log and checkpoints) and the store where the
    unit lets the service write, a persistent session, and a client id of this host's."""
    unit = _unit_settings()
    assert any("--config /etc/wattline/wattline.toml" in v for v in unit["ExecStart"])
    writable = Path("/var/lib") / unit["StateDirectory"][0]
    settings = check_config_file(str(EXAMPLE))
    raw = tomllib.loads(EXAMPLE.read_text())
    assert settings.qos >= 1 and settings.persistent_session
    assert settings.state_dir and Path(settings.state_dir).is_relative_to(writable)
    assert settings.store and Path(settings.store).is_relative_to(writable)
    assert "{host}" in raw["client_id"]
    assert settings.client_id == raw["client_id"].replace("{host}", socket.gethostname())
    assert "mqtt_share_group" not in raw


def test_the_daemon_on_the_example_config_holds_a_persistent_session_of_its_host(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
) -> None:
    """The example config as the unit runs it (its folders moved into the test's own):
    the broker sees a persistent session under wattline-<host name>."""
    broker = make_mosquitto()
    config = tmp_path / "wattline.toml"
    config.write_text(EXAMPLE.read_text().replace("/var/lib/wattline", str(tmp_path / "lib")))
    daemon = wattline_daemon(["--config", str(config), "--mqtt-url", broker.url])
    wait_until(lambda: daemon.metric("wattline_mqtt_connected") == 1.0, timeout_s=30,
               what="the daemon connected")
    assert "persistent session" in daemon.log_text()
    client_id = f"wattline-{socket.gethostname()}"
    wait_until(lambda: f"as {client_id} (" in broker.log_text(), timeout_s=10,
               what="the broker logging the daemon's client id")
    line = next(x for x in broker.log_text().splitlines() if f"as {client_id} (" in x)
    assert "c0" in line, line  # clean session off: the broker keeps what comes meanwhile
    assert daemon.stop() == 0
    assert (tmp_path / "lib" / "state" / "checkpoint.json").exists()


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
