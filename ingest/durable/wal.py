"""Write-ahead log of received MQTT messages, for replay after a crash.

The daemon appends each batch of received messages here and acknowledges a QoS 1
message to the broker only once ``WriteAheadLog.append`` has returned: the message is
then on disk. After a crash (SIGKILL, power loss) the daemon loads kernel checkpoint
``N`` and replays ``read_wal(directory, N)``, the messages received since that
checkpoint. Generation 0 means "no checkpoint yet".

Files: the log that follows checkpoint ``N`` is ``wal-<N:012d>.log`` in the WAL
directory. It is a plain sequence of records, with no file header. It holds raw
payloads, so it is readable by the daemon's user only (mode 0600, in a 0700 folder when
the daemon makes it).

Record format (little-endian)::

    header  struct "<IIdI", 20 bytes:
            body_length   uint32   len(topic bytes) + len(payload)
            crc           uint32   zlib.crc32 of the covered bytes, see below
            received_s    float64  time.time() when the message was received
            topic_length  uint32   len(topic bytes)
    body    topic (UTF-8) followed by the payload, body_length bytes

The CRC covers every header field except itself, and the body, in this order::

    struct "<IdI" (body_length, received_s, topic_length) + body

so a torn or damaged header is caught as surely as a damaged body.

Reading stops at the first record that is not whole and sound: fewer than 20 bytes
left for a header, a body_length that runs past the end of the file, a topic_length
larger than body_length, a CRC mismatch, or a topic that is not valid UTF-8. That
point and everything after it is the "torn tail": readers ignore it, and opening the
log for append cuts the file back to just before it. A header that was only partly
written, and a tail of zero bytes (which some file systems leave after power loss),
both end the read this way: an all-zero header does not match its CRC.

Crash safety of ``rotate(N)``, called once checkpoint ``N`` is durable:

1. create ``wal-N.log`` and fsync it;
2. fsync the directory, so the new name survives;
3. delete the logs of generations older than ``N``.

A crash before step 2 completes may lose ``wal-N.log``: ``read_wal`` then returns
``[]``, which is right, since nothing was appended to it yet. A crash before step 3
leaves older logs behind; the daemon never reads them (it replays ``wal-N`` only) and
the next ``rotate`` deletes them.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wattline.ingest.durable.files import fsync_dir, private_dir, private_file

HEADER = struct.Struct("<IIdI")
"""Record header: body length, CRC, received_s, topic length."""

CHECKED_FIELDS = struct.Struct("<IdI")
"""The header fields covered by the CRC: body length, received_s, topic length."""

_WAL_NAME = re.compile(r"wal-(\d+)\.log")


@dataclass(frozen=True)
class WalRecord:
    """One received MQTT message as the log keeps it."""

    received_s: float  # time.time() at receipt
    topic: str
    payload: bytes


def wal_path(directory: str | os.PathLike[str], generation: int) -> Path:
    """The path of the log that follows checkpoint ``generation``."""
    return Path(directory) / f"wal-{generation:012d}.log"


def wal_files(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The logs in ``directory`` as (generation, path), oldest generation first.

    Files whose names are not ``wal-<digits>.log`` are left out. A missing directory
    holds no logs.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _WAL_NAME.fullmatch(path.name)
        if match is not None and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _checksum(body_length: int, received_s: float, topic_length: int, body: bytes) -> int:
    """The CRC of one record: its header fields other than the CRC, then its body."""
    checked = CHECKED_FIELDS.pack(body_length, received_s, topic_length)
    return zlib.crc32(body, zlib.crc32(checked))


def encode_record(record: WalRecord) -> bytes:
    """The bytes of one record: header, then body.

    Raises ``UnicodeEncodeError`` for a topic that is not encodable as UTF-8 and
    ``struct.error`` for a body of 4 GiB or more.
    """
    topic = record.topic.encode("utf-8")
    body = topic + record.payload
    crc = _checksum(len(body), record.received_s, len(topic), body)
    return HEADER.pack(len(body), crc, record.received_s, len(topic)) + body


def _sound_records(file: BinaryIO, size: int) -> Iterator[tuple[WalRecord, int]]:
    """Each whole and sound record of ``file`` in order, with the offset where it ends.

    Reads from the current position (the start) of ``file``, whose length is ``size``
    bytes, and stops silently at the torn tail (see the module docstring).
    """
    offset = 0
    while size - offset >= HEADER.size:
        header = file.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        body_length, crc, received_s, topic_length = HEADER.unpack(header)
        end = offset + HEADER.size + body_length
        if end > size or topic_length > body_length:
            return
        body = file.read(body_length)
        if len(body) < body_length:
            return
        if _checksum(body_length, received_s, topic_length, body) != crc:
            return
        try:
            topic = body[:topic_length].decode("utf-8")
        except UnicodeDecodeError:
            return
        yield WalRecord(received_s, topic, body[topic_length:]), end
        offset = end


def read_wal(directory: str | os.PathLike[str], generation: int) -> list[WalRecord]:
    """The records of the log that follows checkpoint ``generation``, in order.

    A missing file gives an empty list. A torn or corrupt tail ends the read without
    an error, and everything before it is returned. Raises ``OSError`` only when the
    file exists but cannot be read.
    """
    path = wal_path(directory, generation)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            return [record for record, _ in _sound_records(file, size)]
    except FileNotFoundError:
        return []


def _sound_length(path: Path) -> int:
    """How many leading bytes of the log at ``path`` are whole, sound records."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        length = 0
        for _, end in _sound_records(file, size):
            length = end
        return length


def _open_for_append(path: Path) -> tuple[BinaryIO, int]:
    """Open the log at ``path`` for append, creating it if it does not exist.

    An existing log is first cut back to its sound records, so appends follow them
    rather than a torn tail. The file and its directory are then fsynced, so the file
    and its name survive a crash. The file, and a folder made for it, are private to
    the daemon's user (``files.private_file``, ``files.private_dir``). Returns the open
    file (unbuffered, so a failed write leaves nothing waiting to be written later) and
    its length in bytes.
    """
    private_dir(path.parent)
    length = _sound_length(path) if path.exists() else 0
    fd = private_file(path, os.O_WRONLY | os.O_APPEND)
    file = open(fd, "ab", buffering=0)  # noqa: SIM115 - returned open to the caller
    try:
        if os.fstat(file.fileno()).st_size != length:
            file.truncate(length)
        os.fsync(file.fileno())
        fsync_dir(path.parent)
    except BaseException:
        file.close()
        raise
    return file, length


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to the unbuffered ``file``, however many writes it takes."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written:]


class WriteAheadLog:
    """The log of messages received since the latest checkpoint, open for append.

    Not safe for use from several threads at once.
    """

    def __init__(self, directory: str | os.PathLike[str], generation: int) -> None:
        """Open (create if needed) the log that follows checkpoint ``generation``.

        That is the file ``wal-<generation:012d>.log`` in ``directory``; the directory
        is created, with its parents, if needed. Appends go to the end of the file. A
        file left by a crash is first cut back to its sound records (a torn last
        record, or anything after a corrupt one, is removed), so appends follow them.
        """
        self.directory = Path(directory)
        self.generation = generation
        self._path = wal_path(self.directory, generation)
        self._broken = False
        self._file: BinaryIO | None
        self._file, self._length = _open_for_append(self._path)

    @property
    def path(self) -> Path:
        """The file that appends go to now."""
        return self._path

    @property
    def bytes(self) -> int:
        """The size in bytes of the current file: its sound records."""
        return self._length

    def _open_file(self) -> BinaryIO:
        """The current file, or ``ValueError`` when the log is closed."""
        if self._file is None:
            raise ValueError(f"write-ahead log {self._path} is closed")
        return self._file

    def _appendable_file(self) -> BinaryIO:
        """The current file, or an error saying why the log cannot take appends."""
        file = self._open_file()
        if self._broken:
            raise OSError(f"write-ahead log {self._path} failed to recover from a failed "
                          "append; open it again to cut its torn tail")
        return file

    def append(self, records: Sequence[WalRecord]) -> None:
        """Write ``records`` in order, flush and fsync once; then they survive a crash.

        All records are encoded before anything is written, so a topic that cannot be
        encoded raises before the file changes. On a failed write or fsync (disk
        full, read-only file system) this raises ``OSError``; the records written
        are not usable: the file is cut back to its length before this call, and if
        even that fails, the torn tail is left for readers to ignore and the log
        refuses further appends until it is opened again.
        """
        file = self._appendable_file()
        if not records:
            return
        data = b"".join(encode_record(record) for record in records)
        try:
            _write_all(file, data)
            os.fsync(file.fileno())
        except OSError:
            self._cut_back()
            raise
        self._length += len(data)

    def _cut_back(self) -> None:
        """After a failed append, cut the file back to its sound records, if possible."""
        assert self._file is not None
        try:
            self._file.truncate(self._length)
            os.fsync(self._file.fileno())
        except OSError:
            self._broken = True

    def rotate(self, generation: int) -> None:
        """Start the log that follows checkpoint ``generation``; call once it is durable.

        Later appends go to ``wal-<generation:012d>.log``: it is created (or, if left
        by an earlier run, cut back to its sound records) and fsynced, then the
        directory is fsynced, then the logs of all older generations are deleted.

        The caller must append nothing between taking the state for checkpoint
        ``generation`` and this call: such records would go to the old log, which
        this call deletes.

        Raises ``ValueError`` when ``generation`` is not newer than the current one.
        On ``OSError`` while creating the new log, appends still go to the old one.
        An ``OSError`` while deleting an older log comes after the switch: appends go
        to the new log, and the next rotate tries the deletion again. Rotating also
        ends the refusal that follows an append that could not be cut back, since the
        old log is deleted.
        """
        old = self._open_file()
        if generation <= self.generation:
            raise ValueError(f"cannot rotate write-ahead log from generation "
                             f"{self.generation} to {generation}: not newer")
        path = wal_path(self.directory, generation)
        file, length = _open_for_append(path)  # fsyncs the file, then the directory
        old.close()
        self._file, self._length = file, length
        self._path, self.generation = path, generation
        self._broken = False
        self._delete_older()

    def _delete_older(self) -> None:
        """Delete the logs of generations older than the current one."""
        for generation, path in wal_files(self.directory):
            if generation < self.generation:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file. Records already appended stay on disk; closing twice is fine."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
