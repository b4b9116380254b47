"""Kernel checkpoints: what a restarted daemon needs to resume its windows exactly.

A checkpoint is two files in the state directory:

- ``state-<generation>.npz``: the kernel's ``StreamState`` (per-meter last readings
  and pending readings, per-line watermarks, next ticks, window buckets and sums);
- ``alerts-<generation>.npz``: the alert rules' state (active alerts, runs, surge
  bands), since alerts exist;
- ``periods-<generation>.npz``: the periods kernel's state (per meter the readings not
  yet settled, per line its open shift, day and month), since periods exist;
- ``checkpoint.json``: the generation, the kernel settings it was made with, and the
  meter registry (meters in index order, with their meta), which the state's array
  indices refer to.

The state file is written first and the JSON, which names it, second, each atomically
(temporary file, fsync, rename), so a crash at any point leaves the previous complete
checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wattline.contract.errors import ConfigError
from wattline.ingest.durable.files import private_dir, write_atomically
from wattline.kernels import KernelConfig, StreamState, state_arrays, state_from_arrays

CHECKPOINT_FILE = "checkpoint.json"
FORMAT = 1


@dataclass
class Checkpoint:
    state: StreamState
    registry: dict[str, Any]
    generation: int
    alerts: dict[str, np.ndarray] | None = None  # the alert rules' state, when saved
    periods: dict[str, np.ndarray] | None = None  # the periods kernel's state, when saved


def save_state(state: StreamState, path: str | os.PathLike[str]) -> None:
    """Write ``state``'s arrays to ``path`` as one ``.npz`` file, atomically."""
    write_atomically(Path(path), lambda f: np.savez(f, **state_arrays(state)))


def load_state(path: str | os.PathLike[str]) -> StreamState:
    """Read a state written by ``save_state``."""
    with np.load(os.fspath(path)) as z:
        return state_from_arrays({name: z[name] for name in z.files})


def _kernel_settings(config: KernelConfig) -> dict[str, Any]:
    return {"emit_every_ms": config.emit_every_ms, "windows_ms": list(config.windows_ms),
            "allowed_lateness_ms": config.allowed_lateness_ms}


def save_checkpoint(directory: str | os.PathLike[str], state: StreamState,
                    registry: dict[str, Any], config: KernelConfig, generation: int,
                    alerts: dict[str, np.ndarray] | None = None,
                    periods: dict[str, np.ndarray] | None = None) -> None:
    """Write generation ``generation``; older state files are removed afterwards."""
    folder = private_dir(directory)
    state_name = f"state-{generation:012d}.npz"
    save_state(state, folder / state_name)
    meta = {"format": FORMAT, "generation": generation, "state": state_name,
            "kernel": _kernel_settings(config), "registry": registry}
    if alerts is not None:
        meta["alerts"] = alerts_name = f"alerts-{generation:012d}.npz"
        write_atomically(folder / alerts_name, lambda f: np.savez(f, **alerts))
    if periods is not None:
        meta["periods"] = periods_name = f"periods-{generation:012d}.npz"
        write_atomically(folder / periods_name, lambda f: np.savez(f, **periods))
    body = json.dumps(meta).encode()
    write_atomically(folder / CHECKPOINT_FILE, lambda f: f.write(body))
    keep = {state_name, meta.get("alerts"), meta.get("periods")}
    for old in [*folder.glob("state-*.npz"), *folder.glob("alerts-*.npz"),
                *folder.glob("periods-*.npz")]:
        if old.name not in keep:
            old.unlink()


def load_checkpoint(directory: str | os.PathLike[str], config: KernelConfig) -> Checkpoint | None:
    """The newest complete checkpoint, or None when the directory holds none.

    A checkpoint made with other ticks, windows or lateness cannot continue: that is a
    ``ConfigError`` saying what differs and what to do.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    saved = meta.get("kernel", {})
    if saved != _kernel_settings(config):
        raise ConfigError(
            "state_dir",
            f"the checkpoint in {directory} was made with emit_every/windows/allowed_lateness "
            f"{saved}, not {_kernel_settings(config)}: start with the settings it was made "
            "with, or move the directory away to start the windows afresh",
        )
    state = load_state(Path(directory) / meta["state"])
    alerts, periods = (_arrays(directory, meta.get(key)) for key in ("alerts", "periods"))
    return Checkpoint(state=state, registry=meta["registry"], generation=int(meta["generation"]),
                      alerts=alerts, periods=periods)


def _arrays(directory: str | os.PathLike[str], name: str | None) -> dict[str, np.ndarray] | None:
    if not name:
        return None
    with np.load(Path(directory) / name) as z:
        return {key: z[key] for key in z.files}
