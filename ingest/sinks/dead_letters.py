"""``DeadLetters``: the folder where rows that will never be written are kept, with why.

Two kinds of rows end up here: a batch a server refused for good (an HTTP 4xx other
than 408/429; ``SpooledSink``), and single rows with a NaN or infinite value, which
no sink can store (``FanOut``, before any sink sees them). Each call to ``keep``
writes one Arrow IPC file and a text file beside it holding the reason::

    DIR/dead-<ns>-<kind>.arrow     the rows (kind: intensity | alerts | batches)
    DIR/dead-<ns>-<kind>.txt       why, one line (or one line per row)

Both are written under a temporary name, fsynced and renamed. A spool segment that
cannot be read back is moved in as ``unreadable-<its name>``. Nothing here is deleted
or re-sent automatically. Without a folder (no --state-dir or --dead-letter-dir)
the rows are logged and dropped. Logging is once a minute at most, with how many
files were kept since; counting is the caller's (the metric depends on why).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import pyarrow as pa

from wattline.ingest.durable.files import private_dir, write_arrow_atomically, write_atomically

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class DeadLetters:
    """One dead-letter folder (or none); any thread may call it."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory else None
        self._lock = threading.Lock()
        self._logged_s = -math.inf
        self._since_log = 0

    def keep(self, table: pa.Table, kind: str, what: str, reason: str) -> Path | None:
        """Keep ``table``'s rows with ``reason``; ``what`` says in the log what they are
        ("influxdb refused 12 intensity row(s) for good"). Returns the Arrow file's path,
        ``None`` when there is no folder or it cannot be written (logged)."""
        if self.directory is None:
            if self._due():
                log.error("%s and there is no dead-letter folder (--state-dir or "
                          "--dead-letter-dir): they are dropped. Reason: %s", what, reason)
            return None
        stamp = f"{time.time_ns()}-{kind}"
        target = self.directory / f"dead-{stamp}.arrow"
        try:
            with self._lock:
                private_dir(self.directory)
                write_arrow_atomically(target, table)
                write_atomically(self.directory / f"dead-{stamp}.txt",
                                 lambda f: f.write(reason.encode() + b"\n"))
        except OSError as exc:
            log.error("cannot write dead letters to %s: %s (%s)", self.directory, exc, what)
            return None
        if self._due():
            log.error("%s; kept in %s (dead-%s.*), with %d more file(s) since the last such "
                      "message; further ones are counted and logged once a minute. Reason: %s",
                      what, self.directory, stamp, self._since_log, reason)
            self._since_log = 0
        else:
            self._since_log += 1
        return target

    def keep_file(self, path: Path, reason: str) -> None:
        """Move a file that cannot be read back (a spool segment) into the folder."""
        if self.directory is None:
            log.error("%s: %s; there is no dead-letter folder to keep it in", path, reason)
            return
        try:
            private_dir(self.directory)
            path.rename(self.directory / f"unreadable-{path.name}")
        except OSError as exc:
            log.error("cannot move %s to the dead letters: %s", path, exc)

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._logged_s >= 60.0:
            self._logged_s = now
            return True
        return False
