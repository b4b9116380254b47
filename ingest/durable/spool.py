"""The on-disk spool: result batches a sink could not deliver, kept in order until it can.

A spool is a folder of Arrow IPC files, one per batch, named so that they sort in
the order they were spooled::

    DIR/seg-<sequence, 16 digits>-<kind>.arrow        kind: intensity | alerts | batches | periods

Each segment is written under a hidden name, fsynced, renamed into place and its
folder fsynced (``wattline.ingest.durable.files.write_arrow_atomically``), so a crash leaves whole
segments only; a leftover hidden file is removed on open. The spool keeps its total
size under ``max_bytes``: when a new segment takes it over, the oldest segments are
deleted until it fits again (the newest is always kept), and every deleted segment's
rows are counted in ``dropped_rows`` and logged. Nothing is dropped silently.

The spool itself is not thread-safe; ``SpooledSink`` guards it with a lock.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from wattline.ingest.durable.files import fsync_dir, private_dir, write_arrow_atomically

log = logging.getLogger(__name__)

KINDS = ("intensity", "alerts", "batches", "periods")
_SEGMENT = re.compile(r"^seg-(\d{16})-(intensity|alerts|batches|periods)\.arrow$")


@dataclass(frozen=True)
class Segment:
    sequence: int
    kind: str
    path: Path
    size: int
    mtime_s: float


class SpoolError(OSError):
    """A segment could not be written or read (disk full, read-only, corrupt file)."""


class Spool:
    """Arrow IPC segments in ``directory``, oldest first; see the module doc."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the spool needs a positive size cap, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.dropped_rows = dict.fromkeys(KINDS, 0)
        self.dropped_segments = 0
        private_dir(self.directory)
        for leftover in self.directory.glob(".seg-*"):
            leftover.unlink(missing_ok=True)
        self._segments = self._scan()
        self._next = self._segments[-1].sequence + 1 if self._segments else 0

    def _scan(self) -> list[Segment]:
        found = []
        for path in self.directory.iterdir():
            m = _SEGMENT.match(path.name)
            if m:
                st = path.stat()
                found.append(Segment(int(m.group(1)), m.group(2), path, st.st_size, st.st_mtime))
        return sorted(found, key=lambda s: s.sequence)

    # -- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def oldest_age_s(self, now_s: float | None = None) -> float:
        """Seconds since the oldest segment was spooled; 0 when the spool is empty."""
        if not self._segments:
            return 0.0
        return max(0.0, (time.time() if now_s is None else now_s) - self._segments[0].mtime_s)

    # -- writing and reading -----------------------------------------------------------------

    def append(self, table: pa.Table, kind: str) -> Segment:
        """Spool one batch durably, then enforce the size cap; ``SpoolError`` if it cannot."""
        if kind not in KINDS:
            raise ValueError(f"unknown spool kind {kind!r}")
        path = self.directory / f"seg-{self._next:016d}-{kind}.arrow"
        try:
            write_arrow_atomically(path, table)
            size = path.stat().st_size
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot spool to {self.directory}: {exc.strerror or exc}"
                             ) from None
        segment = Segment(self._next, kind, path, size, time.time())
        self._next += 1
        self._segments.append(segment)
        self._enforce_cap()
        return segment

    def _enforce_cap(self) -> None:
        while self.bytes > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments[0]
            try:
                rows = self.read(oldest).num_rows
            except SpoolError:
                rows = 0
            self.remove(oldest)
            self.dropped_rows[oldest.kind] += rows
            self.dropped_segments += 1
            log.error("spool %s is over its cap of %d bytes: dropped its oldest segment %s "
                      "(%d %s rows); raise --spool-max-bytes or fix the sink", self.directory,
                      self.max_bytes, oldest.path.name, rows, oldest.kind)

    def oldest(self) -> Segment | None:
        return self._segments[0] if self._segments else None

    def read(self, segment: Segment) -> pa.Table:
        try:
            with pa.memory_map(str(segment.path)) as source:
                return ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise SpoolError(getattr(exc, "errno", None) or 0,
                             f"cannot read spool segment {segment.path}: {exc}") from None

    def remove(self, segment: Segment) -> None:
        """Delete a delivered (or dropped) segment."""
        segment.path.unlink(missing_ok=True)
        self._segments = [s for s in self._segments if s.sequence != segment.sequence]
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            log.warning("cannot fsync %s after removing %s: %s", self.directory,
                        segment.path.name, exc)
