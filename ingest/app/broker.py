"""An MQTT broker for the demo and benchmarks when the user gives none.

Mosquitto from PATH when there is one (fast, the real thing); otherwise amqtt,
a pure-Python broker run in-process (about 7 k messages/s: enough for a demo).
Both listen on 127.0.0.1 and a free port, and stop with ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Protocol


class EmbeddedBroker(Protocol):
    url: str
    kind: str

    def stop(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout_s: float, alive: object = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the broker did not open port {port} within {timeout_s:.0f} s")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )


class MosquittoBroker:
    """``mosquitto -c FILE`` as a child process."""

    kind = "mosquitto"

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="wattline-mosquitto-")
        conf = os.path.join(self._dir.name, "mosquitto.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\nlog_dest none\n"
            )
        self._proc = subprocess.Popen(
            [binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_for_port(self.port, 10)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._dir.cleanup()


class AmqttBroker:
    """amqtt's broker on its own event loop thread."""

    kind = "amqtt (in-process)"

    def __init__(self, port: int | None = None) -> None:
        from amqtt.broker import Broker

        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}}
        started = threading.Event()
        self._broker: Broker | None = None

        def serve() -> None:
            asyncio.set_event_loop(self._loop)

            async def start() -> None:
                self._broker = Broker(config)
                await self._broker.start()

            self._loop.run_until_complete(start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not started.wait(15):
            raise RuntimeError("the in-process broker (amqtt) did not start within 15 s")
        _wait_for_port(self.port, 10)

    def stop(self) -> None:
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def start_embedded_broker(prefer_mosquitto: bool = True) -> EmbeddedBroker:
    """Mosquitto if it is installed, else amqtt."""
    binary = find_mosquitto() if prefer_mosquitto else None
    if binary:
        return MosquittoBroker(binary)
    return AmqttBroker()
