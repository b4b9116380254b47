"""Files 0600 and folders 0700 whatever the umask: the helpers of ingest/durable/files.py
and every writer that uses them (write-ahead log, checkpoints, spool, Parquet store),
each run in a child process whose umask is set first (the umask is per process)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wattline.ingest.durable.files import DIR_MODE, FILE_MODE, private_dir, private_file

WRITERS = r"""
import os, sys
from pathlib import Path
import numpy as np
import pyarrow as pa

os.umask(int(sys.argv[2], 8))
root = Path(sys.argv[1])

from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.durable.checkpoint import save_checkpoint
from wattline.ingest.durable.spool import Spool
from wattline.ingest.durable.wal import WalRecord, WriteAheadLog
from wattline.ingest.sinks.parquet_store import ParquetStore
from wattline.kernels import KernelConfig, new_state

with WriteAheadLog(root / "new" / "state" / "wal", 0) as wal:
    wal.append([WalRecord(1.0, "factory/s/l/energy/m", b'{"ts": 1, "v": 1}')])
    wal.rotate(1)
config = KernelConfig(emit_every_ms=10_000, windows_ms=(60_000,), allowed_lateness_ms=0)
save_checkpoint(root / "new" / "state", new_state(config, 1, 1), {"meters": []}, config, 1,
                alerts={"a": np.zeros(2)})
Spool(root / "new" / "spool", 1 << 20).append(pa.table({"x": [1, 2]}), "intensity")
store = ParquetStore(root / "new" / "store")
store.open()
row = {f.name: [None if f.nullable else ("x" if pa.types.is_string(f.type) else 1)]
       for f in INTENSITY_SCHEMA}
row["time_ms"] = [1_700_000_000_000]
store.write(pa.table(row).cast(INTENSITY_SCHEMA))
"""


def _modes(root: Path) -> dict[str, int]:
    """The permission bits of everything under ``root`` (not ``root`` itself)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _run_writers(root: Path, umask: int) -> None:
    done = subprocess.run([sys.executable, "-c", WRITERS, str(root), f"{umask:o}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], ids=["022", "000", "277"])
def test_every_file_and_folder_a_writer_makes_is_private(tmp_path: Path, umask: int) -> None:
    _run_writers(tmp_path, umask)
    modes = _modes(tmp_path)
    kinds = {p.split("/")[1] for p in modes if "/" in p}
    assert kinds == {"state", "spool", "store"}, modes
    assert any(p.endswith(".log") for p in modes) and any(p.endswith(".parquet") for p in modes)
    assert any(p.endswith(".npz") for p in modes) and any(p.endswith(".arrow") for p in modes)
    for path, mode in modes.items():
        wanted = DIR_MODE if (tmp_path / path).is_dir() else FILE_MODE
        assert mode == wanted, f"{path}: {mode:o}, umask {umask:03o}"


def test_a_folder_that_exists_keeps_its_mode_and_an_old_file_is_made_private(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    old = shared / "wal-000000000000.log"
    old.write_bytes(b"")
    old.chmod(0o644)
    assert private_dir(shared) == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750
    os.close(private_file(old, os.O_WRONLY))
    assert stat.S_IMODE(old.stat().st_mode) == FILE_MODE


def test_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(FileExistsError):
        private_dir(tmp_path / "taken" / "below")
