"""Credentials kept out of everything the daemon shows: log lines, the systemd status,
/metrics and error messages.

``redact_url`` is how a configured URL is shown: the password of its user
information becomes ``***`` (``mqtt://user:pass@host`` -> ``mqtt://user:***@host``),
and so does the value of a query parameter that carries a secret (``token``,
``password``, ``secret``, ``key``...). ``redact_text`` does the same to every URL in a
free text, and hides ``Token ...`` / ``Bearer ...`` authorization values; the log
formatter (``RedactingFormatter``, installed by ``configure_logging``) passes every
record through it, so a library that prints a URL it was given is covered too.

A URL whose password holds a ``/`` or ``@`` that is not percent-encoded
(``%2F``, ``%40``) is not a valid URL; ``redact_url`` still hides everything between
the user name and the last ``@``.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["MASK", "RedactingFormatter", "configure_logging", "redact_text", "redact_url"]

MASK = "***"

_SECRET_PARAMS = (r"token|access_token|auth|auth_token|password|passwd|pass|pwd|secret|"
                  r"api_key|apikey|key|sig|signature|credential|credentials")
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_SECRET_PARAMS})=)[^&;#\s'\"]*")
# scheme://, then the longest run up to an @ without white space, quotes or brackets.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s'\"<>()\[\]{}]*)@")
_AUTH_VALUE = re.compile(r"(?i)\b(token|bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}")


def _mask_userinfo(userinfo: str) -> str:
    """``user:pass`` -> ``user:***``; a user name alone is kept (it is not a secret)."""
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else user


def redact_url(url: str) -> str:
    """``url`` as it may be shown: no password, no secret query parameter."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        if "/" in userinfo and ":" not in userinfo.split("/", 1)[0]:
            # an @ in the path, after a host with no user information: nothing to hide there
            pass
        else:
            text = f"{scheme}://{_mask_userinfo(userinfo)}@{host}"
    return _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it, secret query parameters and
    ``Token``/``Bearer`` values replaced by ``***``."""
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{_mask_userinfo(m.group(2))}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
    return _AUTH_VALUE.sub(rf"\g<1>\g<2>{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, exception and stack) went through ``redact_text``."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send this process's log to stderr at ``level``, one redacted line per record.

    Like ``logging.basicConfig``, it does nothing when the root logger has a handler
    already (the first configuration of a process wins).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
