"""Fixtures of the end-to-end tests, on top of the component fixtures of tests/conftest.py.

- ``make_stack``: a broker, a VictoriaMetrics and a daemon between them;
- ``connected_daemon``: a daemon that has connected to its broker;
- ``make_publisher``: gateway stand-ins (tests/e2e/gateway.py), closed after the test;
- ``answering_server``: an HTTP server answering every write with one status and
  headers (``indirect`` parametrization), for a writer's error mapping;
- ``make_certificates`` / ``certificates`` and ``tls_mosquitto``: a broker with a TLS
  listener; ``password_mosquitto``: a broker that wants a username and password.

Every component they start is owned by the test and stopped after it.
"""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.credentials import Certificates, issue_certificates, write_password_file
from tests.e2e.gateway import close_publisher, connect_publisher
from tests.processes import Mosquitto, Stack, VictoriaMetrics, Wattline, wait_until


@pytest.fixture()
def make_stack(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
) -> Callable[..., Stack]:
    """Factory: ``make_stack(args)`` starts a broker and a VictoriaMetrics of the test's
    own, then a daemon reading the one and writing to the other over /api/v2/write
    (placeholder org, bucket and token: VictoriaMetrics ignores them), with ``args``
    added to its command line.

    ``database_up=False`` stops VictoriaMetrics before the daemon starts (``start()``
    it later); ``influx_path`` is appended to the write URL the daemon is given.
    """

    def make(args: Sequence[str] = (), *, database_up: bool = True,
             influx_path: str = "") -> Stack:
        broker = make_mosquitto()
        victoria = make_victoria()
        if not database_up:
            victoria.stop()
        daemon = wattline_daemon([
            "--mqtt-url", broker.url, "--influx-url", f"{victoria.url}{influx_path}",
            "--influx-org", "o", "--influx-bucket", "b", "--influx-token", "t", *args,
        ])
        return Stack(broker, victoria, daemon)

    return make


@pytest.fixture()
def connected_daemon(wattline_daemon: Callable[..., Wattline]) -> Callable[..., Wattline]:
    """Factory like ``wattline_daemon`` whose daemon has connected to its broker.

    It returns half a second after the connected gauge turns 1, as the subscription
    goes out just after the connection. Tests that must not lose their first message
    make sure with ``gateway.wait_until_subscribed`` instead.
    """

    def make(args: Sequence[str] = (), **options: Any) -> Wattline:
        daemon = wattline_daemon(args, **options)
        wait_until(lambda: daemon.metric("wattline_mqtt_connected") == 1.0, timeout_s=30,
                   what="the daemon connected to its broker")
        time.sleep(0.5)
        return daemon

    return make


@pytest.fixture()
def make_publisher() -> Iterator[Callable[..., mqtt.Client]]:
    """Factory of publishing clients, ``make_publisher(broker)``, closed after the test;
    keywords (``certificates``, ``credentials``) go to ``gateway.connect_publisher``."""
    clients: list[mqtt.Client] = []

    def make(broker: Mosquitto, **options: Any) -> mqtt.Client:
        client = connect_publisher(broker.port, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        close_publisher(client)


@pytest.fixture()
def broker_files() -> Iterator[Path]:
    """A folder the broker can read after dropping to the ``mosquitto`` user
    (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="wattline-test-broker-files-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _broker_subfolder(broker_files: Path, prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=broker_files))
    folder.chmod(0o755)
    return folder


@pytest.fixture()
def make_certificates(broker_files: Path) -> Callable[[], Certificates]:
    """Factory: each call makes a new throwaway CA with its server and client
    certificates (``credentials.issue_certificates``), in ``broker_files``."""
    return lambda: issue_certificates(_broker_subfolder(broker_files, "ca-"))


@pytest.fixture()
def certificates(make_certificates: Callable[[], Certificates]) -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 signed by it, and a client one."""
    return make_certificates()


@pytest.fixture()
def tls_mosquitto(make_mosquitto: Callable[..., Mosquitto]) -> Callable[..., Mosquitto]:
    """Factory of brokers owned by one test whose one listener speaks TLS:
    ``tls_mosquitto(certificates, require_certificate=True)``.

    The broker shows ``certificates.server_cert``; with ``require_certificate`` it
    refuses clients without a certificate signed by ``certificates.ca``. The daemon
    reaches it at ``mqtts://127.0.0.1:{broker.port}``.
    """

    def make(certs: Certificates, *, require_certificate: bool) -> Mosquitto:
        config = [f"cafile {certs.ca}", f"certfile {certs.server_cert}",
                  f"keyfile {certs.server_key}"]
        if require_certificate:
            config += ["require_certificate true", "use_identity_as_username false"]
        return make_mosquitto(extra_config=config)

    return make


@pytest.fixture()
def password_mosquitto(
    make_mosquitto: Callable[..., Mosquitto], broker_files: Path
) -> Callable[[str, str], Mosquitto]:
    """Factory of brokers owned by one test that refuse anonymous clients and know one
    user: ``password_mosquitto(user, password)``."""

    def make(user: str, password: str) -> Mosquitto:
        passwords = write_password_file(_broker_subfolder(broker_files, "passwords-"), user,
                                        password)
        return make_mosquitto(allow_anonymous=False, extra_config=[f"password_file {passwords}"])

    return make


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 500
    headers_out: ClassVar[dict[str, str]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        for key, value in self.headers_out.items():
            self.send_header(key, value)
        body = b'{"code":"x","message":"server says no"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def answering_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server answering every write with the status and headers of ``request.param``."""
    status, headers = request.param
    handler = type("Handler", (_Answer,), {"status": status, "headers_out": headers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
