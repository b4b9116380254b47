"""The daemon's MQTT session options against a real Mosquitto: TLS with client
certificates, a password read from a file or given in the URL (and never shown: not in
the log, /metrics, the systemd status or an error), QoS 2 and MQTT 5 shared
subscriptions.

Each test publishes known readings and checks that the daemon counted every one
of them, so a session option that is parsed but not passed on to paho fails here.
Certificates and password files come from the fixtures of tests/e2e/conftest.py
(``certificates``, ``tls_mosquitto``, ``password_mosquitto``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.credentials import Certificates
from tests.e2e.eaf_stream import recent_start_ms
from tests.e2e.gateway import close_publisher, connect_publisher
from tests.processes import Mosquitto, Wattline, free_port, wait_until

pytestmark = pytest.mark.e2e

STEP_MS = 2_000
READINGS = 40


def reading_messages(site: str, count: int, line: str = "eaf-1") -> list[tuple[str, str]]:
    """``count`` one-reading messages of a rising electricity register, 2 s apart."""
    topic = f"factory/{site}/{line}/energy/incomer"
    start_ms = recent_start_ms()
    return [(topic, json.dumps({"ts": start_ms + k * STEP_MS, "v": 100.0 + k}))
            for k in range(count)]


def publish(client: mqtt.Client, messages: list[tuple[str, str]], qos: int = 1) -> None:
    """Publish and wait until the broker acknowledged every message."""
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published(), "the broker did not acknowledge every reading"


def publish_meta_until(
    client: mqtt.Client, site: str, received: Callable[[], bool], timeout_s: float = 30,
    lines: tuple[str, ...] = ("eaf-1",),
) -> int:
    """Publish the meter's meta (on each of ``lines``) until ``received()`` holds (the
    daemons have subscribed); how many meta messages went out."""
    topics = [f"factory/{site}/{line}/energy/incomer/meta" for line in lines]
    meta = json.dumps({"carrier": "electricity", "unit": "kWh", "mode": "counter"})
    deadline = time.monotonic() + timeout_s
    sent = 0
    while not received():
        assert time.monotonic() < deadline, "the daemon never received a message"
        for topic in topics:
            client.publish(topic, meta, qos=1).wait_for_publish(5)
        sent += 1
        time.sleep(0.2)
    return sent


def assert_readings_flow(daemon: Wattline, client: mqtt.Client, site: str, qos: int = 1) -> None:
    """The daemon is connected, subscribed, and counts every reading published."""
    publish_meta_until(client, site, lambda: daemon.metric_sum("wattline_messages_received_total")
                       >= 1)
    publish(client, reading_messages(site, READINGS), qos=qos)
    wait_until(lambda: daemon.metric_sum("wattline_readings_received_total") >= READINGS,
               timeout_s=15, what=f"{READINGS} readings received")
    assert daemon.metric("wattline_mqtt_connected") == 1.0


def test_readings_arrive_over_tls_with_a_client_certificate(
    tls_mosquitto: Callable[..., Mosquitto],
    certificates: Certificates,
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
) -> None:
    """The daemon checks the broker against the CA file and shows its own certificate."""
    certs = certificates
    broker = tls_mosquitto(certs, require_certificate=True)
    daemon = wattline_daemon([
        "--mqtt-url", f"mqtts://127.0.0.1:{broker.port}", "--client-id", f"wattline-{site}",
        "--mqtt-ca-file", str(certs.ca), "--mqtt-cert-file", str(certs.client_cert),
        "--mqtt-key-file", str(certs.client_key),
    ])
    client = make_publisher(broker, certificates=certs)
    assert_readings_flow(daemon, client, site)


def test_a_tls_broker_that_requires_a_client_certificate_refuses_the_daemon_without_one(
    tls_mosquitto: Callable[..., Mosquitto],
    certificates: Certificates,
    wattline_daemon: Callable[..., Wattline],
    site: str,
) -> None:
    """Without a client certificate the daemon never counts as connected, keeps running,
    and says in its log why it cannot connect."""
    certs = certificates
    broker = tls_mosquitto(certs, require_certificate=True)
    daemon = wattline_daemon([
        "--mqtt-url", f"mqtts://127.0.0.1:{broker.port}", "--client-id", f"wattline-{site}",
        "--mqtt-ca-file", str(certs.ca),
    ])
    # TLS 1.3: the handshake looks fine to the client; the broker's alert comes on first read.
    wait_until(lambda: "certificate required" in daemon.log_text().lower(), timeout_s=15,
               what="the daemon logging the missing certificate")
    assert daemon.running
    assert daemon.metric("wattline_mqtt_connected") == 0.0
    assert daemon.metric_sum("wattline_mqtt_connects_total") == 0


def test_a_broker_certificate_from_another_ca_is_refused_once_in_the_log(
    tls_mosquitto: Callable[..., Mosquitto],
    certificates: Certificates,
    make_certificates: Callable[[], Certificates],
    wattline_daemon: Callable[..., Wattline],
    site: str,
) -> None:
    """A CA file that did not sign the broker's certificate: the verification error is
    logged once, not on every retry, and the daemon keeps trying."""
    certs = certificates
    stranger = make_certificates()
    broker = tls_mosquitto(certs, require_certificate=False)
    daemon = wattline_daemon([
        "--mqtt-url", f"mqtts://127.0.0.1:{broker.port}", "--client-id", f"wattline-{site}",
        "--mqtt-ca-file", str(stranger.ca),
    ])
    wait_until(lambda: "certificate verify failed" in daemon.log_text(), timeout_s=15,
               what="the daemon logging the failed verification")
    time.sleep(3.5)  # at least two more attempts (1 s, then up to 2 s)
    assert daemon.log_text().count("certificate verify failed") == 1
    assert "Client is not connected" not in daemon.log_text()
    assert daemon.running and daemon.metric("wattline_mqtt_connected") == 0.0


def test_readings_arrive_with_a_password_read_from_a_file(
    password_mosquitto: Callable[[str, str], Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    tmp_path: Path,
    site: str,
) -> None:
    """The username comes from the URL, the password from ``--mqtt-password-file``."""
    password = f"pw-{uuid.uuid4().hex}"
    broker = password_mosquitto("gateway", password)
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    daemon = wattline_daemon([
        "--mqtt-url", f"mqtt://gateway@127.0.0.1:{broker.port}",
        "--mqtt-password-file", str(secret), "--client-id", f"wattline-{site}",
    ])
    client = make_publisher(broker, credentials=("gateway", password))
    assert_readings_flow(daemon, client, site)
    assert password not in daemon.log_text()


def test_a_wrong_password_is_refused_and_logged_without_the_password(
    password_mosquitto: Callable[[str, str], Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
    site: str,
) -> None:
    """The broker's refusal shows in the log and on /metrics; the password never does."""
    broker = password_mosquitto("gateway", f"pw-{uuid.uuid4().hex}")
    wrong = f"wrong-{uuid.uuid4().hex}"
    secret = tmp_path / "mqtt-password"
    secret.write_text(wrong + "\n")
    daemon = wattline_daemon([
        "--mqtt-url", f"mqtt://gateway@127.0.0.1:{broker.port}",
        "--mqtt-password-file", str(secret), "--client-id", f"wattline-{site}",
    ])
    wait_until(lambda: "refused the connection" in daemon.log_text(), timeout_s=15,
               what="the daemon logging the refusal")
    assert "not authori" in daemon.log_text().lower()
    assert daemon.running
    assert daemon.metric("wattline_mqtt_connected") == 0.0
    assert wrong not in daemon.log_text()
    assert wrong not in daemon.scrape()


@pytest.fixture()
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET (in a short folder: a
    socket path has at most 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="wl-notify-")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def notifications(sock: socket.socket) -> list[str]:
    """Every notification waiting on ``sock``."""
    seen = []
    while True:
        try:
            seen.append(sock.recv(65536).decode())
        except TimeoutError:
            return seen


def files_holding(folder: Path, secret: str) -> list[Path]:
    """The files under ``folder`` whose bytes contain ``secret``."""
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_passwords_in_the_urls_never_show_in_the_log_metrics_status_or_state(
    password_mosquitto: Callable[[str, str], Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    notify_socket: tuple[socket.socket, str],
    tmp_path: Path,
    site: str,
) -> None:
    """The broker password in WATTLINE_MQTT_URL, an InfluxDB URL with user information
    (a server that is down, so the log names it on every failure) and a token: the daemon
    connects and counts every reading, names both URLs with *** for the password, and
    none of the secrets is in its log, on /metrics, in a systemd notification or in a file
    it wrote."""
    password = f"pw-{uuid.uuid4().hex}"
    influx_password = f"ipw-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    broker = password_mosquitto("gateway", password)
    sock, path = notify_socket
    daemon = wattline_daemon(
        ["--client-id", f"wattline-{site}", "--state-dir", str(tmp_path / "state"),
         "--store", str(tmp_path / "store"), "--influx-org", "o", "--influx-bucket", "b"],
        env={"NOTIFY_SOCKET": path,
             "WATTLINE_MQTT_URL": f"mqtt://gateway:{password}@127.0.0.1:{broker.port}",
             "WATTLINE_INFLUX_URL": f"http://writer:{influx_password}@127.0.0.1:{free_port()}",
             "WATTLINE_INFLUX_TOKEN": token})
    client = make_publisher(broker, credentials=("gateway", password))
    assert_readings_flow(daemon, client, site)
    wait_until(lambda: "http://writer:***@127.0.0.1" in daemon.log_text(), timeout_s=30,
               what="the daemon naming the InfluxDB server it cannot reach")
    scraped = daemon.scrape()
    assert daemon.stop() == 0
    status = notifications(sock)
    assert any(f"STATUS=collecting from mqtt://gateway:***@127.0.0.1:{broker.port}" in n
               for n in status), status
    shown = "\n".join([daemon.log_text(), scraped, *status])
    for secret in (password, influx_password, token):
        assert secret not in shown
        assert files_holding(tmp_path, secret) == []


def test_a_wrong_password_in_the_url_is_refused_and_never_shown(
    password_mosquitto: Callable[[str, str], Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    notify_socket: tuple[socket.socket, str],
    site: str,
) -> None:
    """The broker refuses the login: the log says so and the daemon keeps trying, and the
    wrong password is in neither the log, /metrics nor the systemd status."""
    broker = password_mosquitto("gateway", f"pw-{uuid.uuid4().hex}")
    wrong = f"wrong-{uuid.uuid4().hex}"
    sock, path = notify_socket
    daemon = wattline_daemon(
        ["--client-id", f"wattline-{site}"],
        env={"NOTIFY_SOCKET": path,
             "WATTLINE_MQTT_URL": f"mqtt://gateway:{wrong}@127.0.0.1:{broker.port}"})
    wait_until(lambda: "refused the connection" in daemon.log_text(), timeout_s=15,
               what="the daemon logging the refusal")
    assert "not authori" in daemon.log_text().lower()
    assert daemon.running and daemon.metric("wattline_mqtt_connected") == 0.0
    scraped = daemon.scrape()
    daemon.stop()
    status = notifications(sock)
    assert any("STATUS=collecting from mqtt://gateway:***@" in n for n in status), status
    assert wrong not in "\n".join([daemon.log_text(), scraped, *status])


@pytest.mark.parametrize("url", [
    "mqtt://gateway:{pw}@127.0.0.1:99999",       # port out of range
    "mqtt://gateway:{pw}/x@127.0.0.1:1883",      # a bare / in the password
    "http://gateway:{pw}@127.0.0.1:1883",        # not an MQTT URL
])
def test_a_bad_url_with_a_password_is_refused_at_start_without_it(url: str) -> None:
    """`wattline run` refuses the URL, naming the key; the error shows *** where the
    password was."""
    password = f"pw{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTLINE_")}
    env["WATTLINE_MQTT_URL"] = url.format(pw=password)
    done = subprocess.run([sys.executable, "-m", "wattline.ingest", "run",
                           "--metrics-port", "0"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "mqtt_url" in done.stderr and "gateway:***@" in done.stderr, done.stderr
    assert password not in done.stdout + done.stderr


def test_a_qos_2_subscription_receives_every_reading_exactly_once(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
) -> None:
    """Subscribed at QoS 2 (the broker logs the granted level), readings published at
    QoS 2 are all counted, and none twice."""
    # Mosquitto 2.0.11 (Debian's) stops sending QoS 2 messages to a subscriber once its
    # inflight window (20) has filled and emptied again; the rest then trickle out one per
    # new PUBLISH (seen with a plain paho subscriber too). No window sidesteps that here.
    broker = make_mosquitto(extra_config=["log_type subscribe", "max_inflight_messages 0"])
    daemon = wattline_daemon(["--mqtt-url", broker.url, "--client-id", f"wattline-{site}",
                              "--qos", "2"])
    client = connect_publisher(broker.port)
    try:
        assert_readings_flow(daemon, client, site, qos=2)
    finally:
        close_publisher(client)
    time.sleep(1.0)  # a duplicate would be counted by now
    assert daemon.metric_sum("wattline_readings_received_total") == READINGS
    assert f"wattline-{site} 2 factory/+/+/+/+" in broker.log_text()


def test_a_share_group_over_every_line_is_refused_at_start(
    wattline_daemon: Callable[..., Wattline],
) -> None:
    """Without subscribe_lines naming its lines, a share group would split a line's meters
    between collectors: the daemon refuses to start, in one line naming the key."""
    daemon = wattline_daemon(["--mqtt-url", "mqtt://127.0.0.1:1", "--mqtt-protocol", "5",
                              "--mqtt-share-group", "g1", "--subscribe-lines", "plant/+"],
                             ready_timeout_s=None)
    assert daemon.wait(timeout_s=120) != 0
    refusal = [line for line in daemon.log_text().splitlines() if "mqtt_share_group" in line]
    assert len(refusal) == 1 and "partial energy_intensity" in refusal[0], daemon.log_text()


def test_a_share_group_of_collectors_each_on_its_own_line_loses_and_splits_nothing(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    site: str,
) -> None:
    """Two MQTT 5 daemons in one share group, each subscribed to one line of the site: each
    gets every message of its own line and none of the other's."""
    broker = make_mosquitto()
    lines = ("eaf-1", "eaf-2")
    daemons = [
        wattline_daemon(["--mqtt-url", broker.url, "--mqtt-protocol", "5",
                         "--mqtt-share-group", "g1", "--subscribe-lines", f"{site}/{line}",
                         "--client-id", f"wattline-{site}-{line}"])
        for line in lines
    ]

    def received(daemon: Wattline, kind: str) -> float:
        return daemon.metric_sum("wattline_messages_received_total", {"topic_kind": kind})

    client = connect_publisher(broker.port)
    try:
        publish_meta_until(client, site, lambda: all(received(d, "meta") >= 1 for d in daemons),
                           lines=lines)
        for line in lines:
            publish(client, reading_messages(site, READINGS, line))
        wait_until(lambda: all(received(d, "reading") >= READINGS for d in daemons),
                   timeout_s=15, what=f"{READINGS} messages at each daemon")
    finally:
        close_publisher(client)
    time.sleep(1.0)  # a message of the other line would be counted by now
    assert [received(d, "reading") for d in daemons] == [READINGS, READINGS]
    assert [d.metric_sum("wattline_readings_received_total") for d in daemons] == \
        [READINGS, READINGS]
