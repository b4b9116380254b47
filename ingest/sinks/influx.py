"""``InfluxSink``: results batches to InfluxDB 2/3 (or any ``/api/v2/write`` server).

Each batch is encoded once as line protocol (``line_protocol.encode_intensity``) and
written in one synchronous request with millisecond precision, so a batch is either
written or raises ``SinkError`` with what went wrong:

- connection refused, timeouts, HTTP 429 and 5xx: ``retryable`` (the pipeline backs off
  and tries the same batch again; ``Retry-After`` is passed on when the server sends it);
- any other 4xx: not retryable (the server refuses this data, e.g. a wrong token or an
  unknown bucket), with the server's own message.

The client does no retries of its own: one policy, the pipeline's, decides.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from wattline.ingest.sinks.base import SinkError
from wattline.ingest.sinks.line_protocol import encode_intensity

log = logging.getLogger(__name__)


class InfluxSink:
    """Writes ``energy_intensity`` points to one bucket."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        gzip: bool = True,
    ) -> None:
        self.url = url
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=gzip,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def open(self) -> None:
        """Check the server answers; a server that is down is logged, not fatal."""
        try:
            reachable = self._client.ping()
        except Exception:  # noqa: BLE001 - ping reports any failure as unreachable
            reachable = False
        if reachable:
            log.info("InfluxDB at %s answers; writing to bucket %r", self.url, self.bucket)
        else:
            log.warning("InfluxDB at %s does not answer yet; writes will be retried with "
                        "backoff until it does", self.url)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        body = encode_intensity(table)
        try:
            self._write_api.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.MS
            )
        except ApiException as exc:
            raise _api_error(self.url, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkError(f"cannot reach InfluxDB at {self.url}: {exc}", retryable=True) from None

    def close(self) -> None:
        self._write_api.close()
        self._client.close()


def _api_error(url: str, exc: ApiException) -> SinkError:
    status = int(exc.status or 0)
    body = (exc.body or b"")
    message = (body.decode(errors="replace") if isinstance(body, bytes) else str(body)).strip()
    detail = f"InfluxDB at {url} answered HTTP {status} {exc.reason or ''}: {message[:500]}"
    if status == 429 or status >= 500 or status == 0:
        retry_after = None
        headers = exc.headers or {}
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        if value is not None:
            try:
                retry_after = float(value)
            except ValueError:
                retry_after = None
        return SinkError(detail, retryable=True, retry_after_s=retry_after)
    hint = {
        401: "check the token (--influx-token-file)",
        403: "the token may not write to this bucket",
        404: "check --influx-org and --influx-bucket",
    }.get(status, "the server refuses this data")
    return SinkError(f"{detail} ({hint})", retryable=False)
