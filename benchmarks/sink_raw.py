"""The database's own limit for ``wattline bench sink``: pre-joined line protocol, one POST.

``RawPoster`` sends a body that is already line protocol to ``/api/v2/write`` over one
kept-alive ``http.client`` connection: no Arrow, no encoding, no client library. The
benchmark times it two ways (``benchmarks/sink.py``): gzipping each body at the
writer's level inside the timing (what any client must do at least to send the same
rows the same way: the writer's baseline), and posting bodies gzipped beforehand (the
server's share alone).
"""

from __future__ import annotations

import gzip
import http.client
import urllib.parse


class RawPoster:
    """POSTs line-protocol bodies, gzip-encoded, to one server's ``/api/v2/write``.

    Args:
        url: The server's base URL, ``http://host:port`` (no path).
        org, bucket, token: As for ``InfluxSink``; an empty token sends no header.
        level: The gzip level, the writer's (``InfluxSink``'s ``GZIP_LEVEL``).
    """

    def __init__(self, url: str, org: str, bucket: str, token: str, *, level: int,
                 timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        connection = (http.client.HTTPSConnection if parts.scheme == "https"
                      else http.client.HTTPConnection)
        self._connection = connection(parts.hostname, parts.port, timeout=timeout_s)
        query = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": "ms"})
        self._path = f"{parts.path.rstrip('/')}/api/v2/write?{query}"
        self._headers = {"Content-Encoding": "gzip",
                         "Content-Type": "text/plain; charset=utf-8"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self.level = level

    def post(self, gzipped: bytes) -> None:
        """One request; ``RuntimeError`` unless the server answers 2xx."""
        self._connection.request("POST", self._path, body=gzipped, headers=self._headers)
        response = self._connection.getresponse()
        answer = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"raw POST answered HTTP {response.status}: {answer[:300]!r}")

    def compress(self, body: bytes) -> bytes:
        return gzip.compress(body, compresslevel=self.level)

    def close(self) -> None:
        self._connection.close()
