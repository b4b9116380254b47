"""``InfluxV1Sink``: results batches to InfluxDB 1.x over its own API (``/write``).

The same points as ``InfluxSink`` (``line_protocol``, escaped as InfluxDB's parser
reads them), one gzipped request per batch to
``/write?db=DB&rp=RP&precision=ms``, with the user and password (when given) as HTTP
basic authentication, never in the URL. Answers map to ``SinkError`` as for the v2
writer: connection failures, timeouts, 408, 429 and 5xx are retryable (with the
server's ``Retry-After``), any other 4xx is a refusal for good with the server's message.

A partial write is InfluxDB 1.x's answer when it stored some points of a batch and
refused others (``400 partial write: field type conflict: ... dropped=N``; likewise
for unparsable points and points outside the retention policy). The answer does not
say which points, so the refused part is found by writing parts of the batch again:
the points carrying the conflicting field it names and the others, else halves, down
to single points where need be. A point written again carries the same values and
overwrites itself, so this changes nothing stored. The ``SinkError`` raised then names only the
refused rows (``rejected``), each with the server's message about it; the spool's
writer dead-letters those alone. A row whose tag value ends in a backslash, which
InfluxDB 1.x cannot read back, is refused the same way without being sent.

The health check is ``GET /ping`` (204), bounded by the health timeout.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
from collections.abc import Callable
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import urllib3

from wattline.ingest.redact import redact_text, redact_url
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

__all__ = ["InfluxV1Sink"]

log = logging.getLogger(__name__)

GZIP_LEVEL = 1

_HINTS = {
    400: "the server cannot parse or store these points; see its message",
    401: "check --influx-user and the password (--influx-password-file or "
         "WATTLINE_INFLUX_PASSWORD)",
    403: "the user may not write to this database",
    404: "check --influx-db: the database must exist (CREATE DATABASE)",
    413: "the batch is too large for the server; lower --batch-max-messages",
}
_DROPPED = re.compile(r"dropped=(\d+)")
_CONFLICT = re.compile(r'field type conflict: input field "([^"]+)"')

Answer = tuple[int, str, str | None]  # status, the server's message, Retry-After


class InfluxV1Sink:
    """Writes ``energy_intensity`` and ``energy_alert`` points to one InfluxDB 1.x database.

    Args:
        url: The server's base URL, ``http://host:8086``.
        database: The database (it must exist).
        retention_policy: Where in the database; ``None`` for its default.
        username, password: For a server with authentication; ``None`` for none.
        timeout_s, health_timeout_s, gzip: As for ``InfluxSink``.
    """

    name = "influxdb"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        health_timeout_s: float | None = None,
        gzip: bool = True,
    ) -> None:
        self.url = redact_url(url)
        self.database = database
        self.retention_policy = retention_policy
        self.timeout_s = timeout_s
        self.health_timeout_s = min(2.0, timeout_s) if health_timeout_s is None \
            else health_timeout_s
        self.gzip = gzip
        base = url.rstrip("/")
        params = {"db": database, "precision": "ms"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_url = f"{base}/write?{urlencode(params)}"
        self._ping_url = f"{base}/ping"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        if username:
            pair = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._secrets = [s for s in (password, self._headers.get("Authorization")) if s]
        self._pool = urllib3.PoolManager(retries=False, maxsize=2)
        self._write_timeout = urllib3.Timeout(connect=self.health_timeout_s, read=timeout_s)
        self._ping_timeout = urllib3.Timeout(total=self.health_timeout_s)

    def check(self) -> None:
        """``SinkError`` (retryable) unless the server answers ``/ping`` in time."""
        try:
            response = self._pool.request("GET", self._ping_url, headers=self._headers,
                                          timeout=self._ping_timeout)
            status = response.status
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            status, reason = 0, type(exc).__name__
        else:
            reason = f"HTTP {status}"
        if not 200 <= status < 300:
            raise SinkError(f"InfluxDB at {self.url} does not answer /ping within "
                            f"{self.health_timeout_s:g} s ({reason}); check that it runs and "
                            "that --influx-url names it", retryable=True)

    def open(self) -> None:
        """Check the server answers; a server that is down is logged, not fatal."""
        try:
            self.check()
        except SinkError as exc:
            log.warning("%s; writes will be retried with backoff until it does", exc)
        else:
            log.info("InfluxDB 1.x at %s answers; writing to database %r (retention "
                     "policy %s)", self.url, self.database,
                     repr(self.retention_policy) if self.retention_policy else "its default")

    def write(self, table: pa.Table) -> None:
        """Write one batch, or raise ``SinkError`` (naming the refused rows of a partial write)."""
        if table.num_rows:
            self._post(table, encode_intensity, TAGS)

    def write_alerts(self, table: pa.Table) -> None:
        """Write alert starts and ends as ``energy_alert`` points, like ``write``."""
        if table.num_rows:
            self._post(table, encode_alerts, ALERT_TAGS)

    def write_batches(self, table: pa.Table) -> None:
        """Write closed batches as ``energy_batch`` points, like ``write``."""
        if table.num_rows:
            self._post(table, encode_batches, BATCH_TAGS)

    def write_periods(self, table: pa.Table) -> None:
        """Write period rows as ``energy_period`` points, like ``write``."""
        if table.num_rows:
            self._post(table, encode_periods, PERIOD_TAGS)

    def close(self) -> None:
        self._pool.clear()

    # -- one batch ----------------------------------------------------------------------------

    def _post(self, table: pa.Table, encode: Callable[..., bytes],
              tags: tuple[str, ...]) -> None:
        rejected = unwritable_rows(table, tags)
        rows = np.array([i for i in range(table.num_rows) if i not in rejected],
                        dtype=np.int64) if rejected else None
        sent = table if rows is None else table.take(rows)
        if sent.num_rows:
            for index, reason in self._send_batch(sent, encode).items():
                rejected[index if rows is None else int(rows[index])] = reason
        if rejected:
            first = rejected[min(rejected)]
            raise SinkError(f"InfluxDB at {self.url} refused {len(rejected)} of "
                            f"{table.num_rows} point(s): {first}", retryable=False,
                            rejected=rejected)

    def _send_batch(self, table: pa.Table, encode: Callable[..., bytes]) -> dict[int, str]:
        """Write ``table``; the rows a partial write refused, with why (empty: all written)."""
        try:
            body = encode(table)
        except ValueError as exc:
            raise SinkError(f"cannot write this batch as line protocol: {exc}; such a batch "
                            "should never reach a sink, please report it",
                            retryable=False) from None
        answer = self._send(body)
        if answer[0] < 300:
            return {}
        if not _partial(answer):
            raise self._error(answer)
        lines = body.splitlines(keepends=True)
        if len(lines) != table.num_rows:  # never: one line per row
            raise self._error(answer)
        return self._refused_lines(lines, answer[1])

    def _refused_lines(self, lines: list[bytes], message: str) -> dict[int, str]:
        """Narrow a partially refused set of lines down to the lines refused, with why.

        A set whose answer names a conflicting field is split into the lines with that
        field and those without (one request each settles a whole conflict), any other
        set into halves. The answers' counts of dropped points spare requests: a set
        dropped whole is refused, and the second part holds what the first did not.
        """
        refused: dict[int, str] = {}
        todo = [(list(range(len(lines))), message)]
        while todo:
            rows, message = todo.pop()
            if len(rows) == 1 or _all_dropped(message, len(rows)):
                refused.update((i, message) for i in rows)
                continue
            first, second = _split(lines, rows, message)
            answer = self._send(b"".join(lines[i] for i in first))
            if answer[0] >= 300:
                if not (_partial(answer) or answer[0] == 400):
                    raise self._error(answer)
                todo.append((first, answer[1]))
            # Counted drops tell what the second part holds without asking again.
            left = _dropped(message) - (_dropped(answer[1]) if answer[0] >= 300 else 0)
            if left == len(second):
                refused.update((i, message) for i in second)
            elif left != 0:  # some, or (a count missing) unknown
                answer = self._send(b"".join(lines[i] for i in second))
                if answer[0] >= 300:
                    if not (_partial(answer) or answer[0] == 400):
                        raise self._error(answer)
                    todo.append((second, answer[1]))
        return refused

    def _send(self, body: bytes) -> Answer:
        """POST one body to /write; the answer, or a retryable ``SinkError`` when none."""
        data = gzip.compress(body, compresslevel=GZIP_LEVEL) if self.gzip else body
        try:
            response = self._pool.request("POST", self._write_url, body=data,
                                          headers=self._headers, timeout=self._write_timeout)
        except urllib3.exceptions.ReadTimeoutError:
            raise SinkError(f"InfluxDB at {self.url} did not answer within "
                            f"{self.timeout_s:g} s; it may be overloaded",
                            retryable=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkError(f"cannot reach InfluxDB at {self.url}: {self._hide(str(exc))}; "
                            "check that it runs and that --influx-url names it",
                            retryable=True) from None
        return response.status, _message(response.data), response.headers.get("Retry-After")

    def _error(self, answer: Answer) -> SinkError:
        status, message, retry_after = answer
        detail = f"InfluxDB at {self.url} answered HTTP {status}: {self._hide(message)}"
        if status in (408, 429) or status >= 500:
            if "retention policy not found" in message:
                detail += " (check --influx-rp)"
            return SinkError(detail, retryable=True, retry_after_s=_seconds(retry_after))
        hint = _HINTS.get(status, "the server refuses this data")
        return SinkError(f"{detail} ({hint})", retryable=False)

    def _hide(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_text(text)


def _message(body: bytes) -> str:
    """The ``error`` of InfluxDB's JSON answer, or the body as text."""
    text = body.decode(errors="replace").strip()
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    return (error if isinstance(error, str) else text)[:500] or "(no message)"


def _partial(answer: Answer) -> bool:
    return answer[0] == 400 and answer[1].startswith("partial write")


def _split(lines: list[bytes], rows: list[int], message: str) -> list[list[int]]:
    """``rows`` as the lines carrying the field the answer names and the others, or (when
    that does not split them) as two halves."""
    named = _CONFLICT.search(message)
    if named:
        field = named.group(1).encode()
        carrying = [i for i in rows if b" " + field + b"=" in lines[i]
                    or b"," + field + b"=" in lines[i]]
        if 0 < len(carrying) < len(rows):
            others = sorted(set(rows) - set(carrying))
            return [carrying, others]
    mid = len(rows) // 2
    return [rows[:mid], rows[mid:]]


def _dropped(message: str) -> int:
    """How many points the answer says were dropped; -1 where it does not say exactly
    (unparsable points are not counted)."""
    found = _DROPPED.search(message)
    if found is None or "unable to parse" in message:
        return -(1 << 40)
    return int(found.group(1))


def _all_dropped(message: str, lines: int) -> bool:
    """Whether the answer says every line was dropped."""
    return _dropped(message) == lines


def _seconds(retry_after: str | None) -> float | None:
    """A ``Retry-After`` in seconds; ``None`` for none, or for the HTTP-date form."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
