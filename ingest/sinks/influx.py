"""``InfluxSink``: results batches to InfluxDB 2/3 (or any ``/api/v2/write`` server).

Each batch is encoded once as line protocol (``line_protocol.encode_intensity``, and
``encode_alerts`` for the ``energy_alert`` points of ``write_alerts``) and
written in one synchronous request with millisecond precision (gzipped at level 1
unless told not to), so a batch is either written or raises ``SinkError`` saying what went wrong:

- connection refused, timeouts, HTTP 408, 429 and 5xx: ``retryable``; the pipeline
  backs off and tries the same batch again, and ``Retry-After`` is passed on when
  the server sends one;
- any other 4xx: not retryable (the server refuses this data, a token or a bucket),
  with the server's own message and a hint at the setting to check;
- a batch line protocol cannot carry (a tag with a line break, a non-finite value):
  not retryable, without a request;
- rows with a tag value ending in a backslash, which InfluxDB cannot read back
  (``line_protocol.unwritable_rows``): the others are written, then a ``SinkError``
  names these alone (``rejected``), so the spool's writer dead-letters only them.

The client does no retries of its own: one policy, the pipeline's, decides.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable

import pyarrow as pa
import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.ping_service import PingService
from influxdb_client.service.write_service import WriteService

from wattline.ingest.redact import redact_url
from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.line_protocol import (
    ALERT_TAGS,
    BATCH_TAGS,
    PERIOD_TAGS,
    TAGS,
    encode_alerts,
    encode_batches,
    encode_intensity,
    encode_periods,
    unwritable_rows,
)

log = logging.getLogger(__name__)

GZIP_LEVEL = 1

_HINTS = {
    400: "the server cannot parse or store these points; see its message",
    401: "check the token (--influx-token or --influx-token-file)",
    403: "the token may not write to this bucket",
    404: "check --influx-org and --influx-bucket",
    413: "the batch is too large for the server; lower --batch-max-messages",
}


class InfluxSink:
    """Writes ``energy_intensity`` points to one bucket of one server.

    Args:
        url: The server's base URL, ``http://host:8086``.
        org: The organisation owning ``bucket`` (InfluxDB 2); others ignore it.
        bucket: Where the points go (a database on InfluxDB 1.8 and 3).
        token: The API token; empty for a server that asks for none.
        timeout_s: How long a write may wait for the server's answer.
        health_timeout_s: How long connecting, and a ``/ping`` (``check``), may take; shorter
            than ``timeout_s``, so a server that accepts connections and never answers is
            noticed in this time by the health check (default: ``min(2, timeout_s)``).
        gzip: Whether to compress request bodies (they shrink to about 30 %).
    """

    name = "influxdb"

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        health_timeout_s: float | None = None,
        gzip: bool = True,
    ) -> None:
        self.url = redact_url(url)  # as messages show it: no password, no token
        self.org = org
        self.bucket = bucket
        self.timeout_s = timeout_s
        self.health_timeout_s = min(2.0, timeout_s) if health_timeout_s is None \
            else health_timeout_s
        # urllib3's (connect, read) timeouts, in milliseconds as the client wants them.
        health_ms = self.health_timeout_s * 1000
        self._write_timeout = (health_ms, timeout_s * 1000)
        self._ping_timeout = (health_ms, health_ms)
        self.gzip = gzip
        # Bodies are gzipped here at level 1 rather than by the client at level 9: on a
        # 5,000-row batch (1.06 MB of line protocol) level 1 took 42 ms against 136 ms,
        # for a body 16 % larger (307 kB against 264 kB).
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=False,
            retries=False,
        )
        self._write_service = WriteService(self._client.api_client)
        self._ping_service = PingService(self._client.api_client)

    def check(self) -> None:
        """The health check: ``SinkError`` (retryable) unless the server answers ``/ping``
        within ``health_timeout_s``."""
        try:
            self._ping_service.get_ping(_request_timeout=self._ping_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means: not answering
            raise SinkError(
                f"InfluxDB at {self.url} does not answer /ping within "
                f"{self.health_timeout_s:g} s ({type(exc).__name__}); check that it runs and "
                "that --influx-url names it", retryable=True) from None

    def open(self) -> None:
        """Check the server answers; a server that is down is logged, not fatal."""
        try:
            self.check()
        except SinkError as exc:
            log.warning("%s; writes will be retried with backoff until it does", exc)
        else:
            log.info("InfluxDB at %s answers; writing to bucket %r", self.url, self.bucket)

    def write(self, table: pa.Table) -> None:
        """Write one batch in one request, or raise ``SinkError``."""
        if table.num_rows:
            self._post(table, encode_intensity, TAGS)

    def write_alerts(self, table: pa.Table) -> None:
        """Write alert starts and ends (``ALERT_SCHEMA``) as ``energy_alert`` points."""
        if table.num_rows:
            self._post(table, encode_alerts, ALERT_TAGS)

    def write_batches(self, table: pa.Table) -> None:
        """Write closed batches (``BATCH_SCHEMA``) as ``energy_batch`` points."""
        if table.num_rows:
            self._post(table, encode_batches, BATCH_TAGS)

    def write_periods(self, table: pa.Table) -> None:
        """Write period rows as ``energy_period`` points."""
        if table.num_rows:
            self._post(table, encode_periods, PERIOD_TAGS)

    def _post(self, table: pa.Table, encode: Callable[[pa.Table], bytes],
              tags: tuple[str, ...]) -> None:
        rejected = unwritable_rows(table, tags)
        if rejected:
            kept = [i for i in range(table.num_rows) if i not in rejected]
            if kept:
                self._send(table.take(kept), encode)
            first = rejected[min(rejected)]
            raise SinkError(f"InfluxDB at {self.url} cannot take {len(rejected)} of "
                            f"{table.num_rows} point(s): {first}", retryable=False,
                            rejected=rejected)
        self._send(table, encode)

    def _send(self, table: pa.Table, encode: Callable[[pa.Table], bytes]) -> None:
        try:
            body = encode(table)
        except ValueError as exc:
            raise SinkError(f"cannot write this batch as line protocol: {exc}; such a batch "
                            "should never reach a sink, please report it",
                            retryable=False) from None
        try:
            self._write_service.post_write(
                org=self.org, bucket=self.bucket, precision=WritePrecision.MS,
                body=gzip.compress(body, compresslevel=GZIP_LEVEL) if self.gzip else body,
                content_encoding="gzip" if self.gzip else "identity",
                content_type="text/plain; charset=utf-8",
                _request_timeout=self._write_timeout,
            )
        except ApiException as exc:
            raise _api_error(self.url, exc) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise SinkError(f"InfluxDB at {self.url} did not answer within "
                            f"{self.timeout_s:g} s ({exc}); it may be overloaded",
                            retryable=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkError(f"cannot reach InfluxDB at {self.url}: {exc}; check that it "
                            "runs and that --influx-url names it", retryable=True) from None

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _api_error(url: str, exc: ApiException) -> SinkError:
    """The ``SinkError`` for an HTTP answer that is not 2xx (or a TLS failure, status 0)."""
    status = int(exc.status or 0)
    message = exc.message if isinstance(exc.message, str) else exc.body
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    message = str(message or "").strip()[:500] or "(no message)"
    detail = f"InfluxDB at {url} answered HTTP {status} {exc.reason or ''}".rstrip()
    detail = f"{detail}: {message}"
    if status == 0:
        return SinkError(f"cannot talk to InfluxDB at {url}: {exc.reason}; check the "
                         "URL's scheme and the server's certificate", retryable=True)
    if status in (408, 429) or status >= 500:
        return SinkError(detail, retryable=True, retry_after_s=_seconds(exc.retry_after))
    hint = _HINTS.get(status, "the server refuses this data")
    return SinkError(f"{detail} ({hint})", retryable=False)


def _seconds(retry_after: str | None) -> float | None:
    """A ``Retry-After`` in seconds; ``None`` for none, or for the HTTP-date form."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
