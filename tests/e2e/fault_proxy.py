"""A TCP proxy in front of a real server that misbehaves on demand, for database faults.

``FaultProxy(upstream_port)`` listens on a free port of 127.0.0.1 and forwards every
connection to the upstream port, in one of three modes, switched at any time with
``set_mode``:

- ``"pass"``: bytes go through as they come;
- ``"delay"``: every answer is held until ``delay_s`` after the request that asked
  for it (the first bytes the client sent since the last answer), as a server that
  answers just inside the client's timeout would;
- ``"hang"``: connections are accepted, what clients send is read and thrown away,
  and nothing ever comes back. A connection that hung once stays dead (its request
  was lost), so a client sees a server that never answers until it opens a new
  connection after the mode is back to ``"pass"``.

Switching to another mode releases the answers that ``"delay"`` is holding. Threads
only; ``close()`` stops everything.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, upstream_port: int, *, delay_s: float = 8.0) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.mode = "pass"
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        if mode not in ("pass", "delay", "hang"):
            raise ValueError(mode)
        self.mode = mode
        self._changed.set()  # wakes the held answers; they look at the mode again
        self._changed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self.set_mode("pass")
        with self._lock:
            sockets = list(self._sockets)
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        state = {"asked_s": None, "dead": False}
        threading.Thread(target=self._answers, args=(upstream, client, state),
                         daemon=True).start()
        try:
            while data := client.recv(65536):
                if state["dead"] or self.mode == "hang":
                    state["dead"] = True  # this request is lost: the connection stays mute
                    continue
                if state["asked_s"] is None:
                    state["asked_s"] = time.monotonic()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client, upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := upstream.recv(65536):
                while self.mode == "delay" and state["asked_s"] is not None:
                    left = state["asked_s"] + self.delay_s - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                if state["dead"]:
                    continue
                state["asked_s"] = None
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client, upstream)


def _shut(*socks: socket.socket) -> None:
    """End both directions of each socket, ignoring ones already gone."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
