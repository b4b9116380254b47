"""systemd integration: readiness and watchdog notifications (``Type=notify``).

systemd hands a service the datagram socket ``NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``) and, with ``WatchdogSec=``, the
interval ``WATCHDOG_USEC`` within which the service must send ``WATCHDOG=1``
or be restarted. Outside systemd the variables are unset and every call here
does nothing, so the daemon runs the same from a shell.

What is sent goes through ``redact_text`` first: a status naming the broker never
carries its password (``systemctl status`` shows it to every user).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from wattline.ingest.redact import redact_text


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, one per line) to systemd.

    Credentials in ``state`` (a URL's password, a token) are replaced by ``***``.
    Returns False when not running under a notify-aware service manager or when
    the socket cannot be reached; notification is best effort and never raises.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(redact_text(state).encode())
    except OSError:
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog period systemd expects pings within, in seconds; None if no watchdog.

    ``WATCHDOG_PID``, when set, must be this process (systemd's rule), so a child
    process does not feed its parent's watchdog.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
