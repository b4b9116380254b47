"""Every file and folder the daemon creates is its own user's only (files 0600, folders
0700), when it runs under the usual umask 022: the state folder, the write-ahead log of
raw payloads, checkpoints, the spool, the dead letters and the Parquet store."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.eaf_stream import KERNEL_ARGS, readings_messages, recent_start_ms
from tests.e2e.gateway import publish_stream
from tests.processes import Mosquitto, VictoriaMetrics, Wattline, wait_until

pytestmark = pytest.mark.e2e

UMASK_022 = ["sh", "-c", 'umask 022 && exec "$0" "$@"', sys.executable, "-m",
             "wattline.ingest", "run"]


def modes(root: Path) -> dict[str, int]:
    """Permission bits of everything under ``root``, by path relative to it (files that
    vanish while it looks, such as a temporary file renamed into place, are skipped)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            try:
                found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
            except FileNotFoundError:
                continue
    return found


def not_private(root: Path) -> dict[str, str]:
    """What under ``root`` is not 0700 (folders) or 0600 (files), with its mode."""
    wrong = {}
    for path, mode in modes(root).items():
        wanted = 0o700 if (root / path).is_dir() else 0o600
        if mode != wanted and (root / path).exists():
            wrong[path] = f"{mode:04o}"
    return wrong


def test_everything_the_daemon_writes_is_private_under_umask_022(
    make_mosquitto: Callable[..., Mosquitto],
    make_victoria: Callable[[], VictoriaMetrics],
    wattline_daemon: Callable[..., Wattline],
    tmp_path: Path,
    site: str,
) -> None:
    """Two runs on one state folder whose parents do not exist yet, checkpoints every
    second: first InfluxDB refuses every batch (HTTP 400 on a path it does not serve: dead
    letters), then it is down (batches spooled)."""
    root = tmp_path / "wattline"
    state, store = root / "var" / "state", root / "var" / "store"
    broker = make_mosquitto()
    victoria = make_victoria()
    args = ["--mqtt-url", broker.url, "--influx-url", f"{victoria.url}/no-such-path",
            "--influx-org", "o", "--influx-bucket", "b", "--influx-token", "t",
            "--state-dir", str(state), "--store", str(store), "--checkpoint-every", "1s",
            "--batch-max-messages", "10", "--batch-max-wait", "50ms", *KERNEL_ARGS]
    seen: set[str] = set()
    wrong: dict[str, str] = {}

    for run, (line_site, database_up) in enumerate([(site, True), (f"{site}b", False)]):
        if not database_up:
            victoria.stop()
        daemon = wattline_daemon(args, program=UMASK_022)
        publish_stream(daemon, broker.port, line_site,
                       readings_messages(line_site, recent_start_ms()))
        wait_until(lambda: list(state.glob("state-*.npz")) and list(store.rglob("*.parquet")),
                   timeout_s=30, what="a checkpoint and a Parquet file")
        if database_up:
            wait_until(lambda: list((state / "dead-letter").glob("dead-*.txt")), timeout_s=30,
                       what="batches refused for good kept as dead letters")
        else:
            wait_until(lambda: list((state / "spool").glob("seg-*.arrow")), timeout_s=30,
                       what="batches spooled while InfluxDB is down")
        seen |= set(modes(root))
        wrong.update(not_private(root))
        assert daemon.stop() == 0, f"run {run + 1}: {daemon.log_tail()}"

    seen |= set(modes(root))
    wrong.update(not_private(root))
    assert wrong == {}
    for made in ("var", "var/state", "var/state/wal", "var/state/spool",
                 "var/state/dead-letter", "var/store", "var/state/checkpoint.json"):
        assert made in seen, sorted(seen)
    for suffix in (".log", ".npz", ".arrow", ".txt", ".parquet"):
        assert any(p.endswith(suffix) for p in seen), (suffix, sorted(seen))
