"""Batch lines: which lines cut their stream into batches, and their ``energy_batch`` rows.

A line is a batch line when its config table says ``batch = true``. The pipeline asks
the intensity kernel to log the readings it finalises on those lines
(``advance(logged_lines=)``), and ``BatchLines.on_ticks`` hands that log to the batch
kernel (``wattline.kernels.batches``), which closes a batch at every production delta
above zero. Each batch closed becomes one row of ``BATCH_SCHEMA``: the
``energy_batch`` measurement of docs/formats.md. A batch is closed when the tick that
holds its close is emitted, i.e. once the line's watermark has passed the close, so
no reading can still join it. Pipeline thread only.

A production reading may name its batch (``"batch": "H2291"``): ``note_labels`` keeps
the ids of the last decoded batch by (line, time), and the batch that closes at that
reading takes it; without one a batch is ``{line}-{close ms}``. Ids no batch can take
any more (at or before a line's newest close) are forgotten, and at most
``MAX_LABELS`` are held (oldest first out).

The open batch of every line and the ids still waiting for their close are kept in the
checkpoint, next to the alert state (``state_arrays`` / ``restore``), so a restart
neither loses nor repeats a batch, nor renames one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from wattline.contract.schemas import BATCH_SCHEMA
from wattline.ingest.config import Settings
from wattline.kernels import Ticks
from wattline.kernels.batches import (
    Batches,
    BatchState,
    FinalisedDeltas,
    batch_state_arrays,
    batch_state_from_arrays,
    close_batches,
    grow_batch_state,
    new_batch_state,
)

__all__ = ["BATCH_PREFIX", "MAX_LABELS", "BatchLines"]

BATCH_PREFIX = "batch_"
"""Prefix of the batch state's arrays among the checkpoint's alert arrays."""
LABEL_PREFIX = "batchid_"
"""Prefix of the waiting batch ids' arrays among the checkpoint's alert arrays."""
MAX_LABELS = 10_000
"""Batch ids held for closes still to come, over all lines (a heat's id waits for the
watermark to pass its tap: seconds to minutes, one per line)."""


class BatchLines:
    """The batch lines of one pipeline and their open batches."""

    def __init__(self, settings: Settings) -> None:
        self.configured = {name for name, own in settings.alerts.lines.items() if own.batch}
        self.state: BatchState = new_batch_state(0)
        self._names: list[tuple[str, str]] = []
        self._logged = np.zeros(0, dtype=np.bool_)
        self.last: Batches = close_batches(new_batch_state(0), FinalisedDeltas.empty())
        """The batches the last ``on_ticks`` closed (for the alert rules)."""
        self._labels: dict[tuple[int, int], str] = {}
        """Batch ids by (kernel line, reading time), waiting for the batch they close."""

    def logged_lines(self, sites: Sequence[str], lines: Sequence[str]) -> np.ndarray | None:
        """Per kernel line whether it is a batch line; ``None`` when none is (no log)."""
        if not self.configured:
            return None
        if len(sites) != len(self._names):
            self._names = list(zip(sites, lines, strict=True))
            self._logged = np.array([f"{s}/{ln}" in self.configured for s, ln in self._names],
                                    dtype=np.bool_)
            grow_batch_state(self.state, len(self._names))
        return self._logged

    def note_labels(self, labels: Sequence[tuple[int, int, str]],
                    meter_line: np.ndarray) -> None:
        """Keep the batch ids of a decoded batch (``(meter, ts_ms, id)``) on batch lines;
        ``meter_line`` is each meter's kernel line."""
        if not labels or not self.configured:
            return
        logged = self._logged
        for meter, ts, label in labels:
            line = int(meter_line[meter])
            if line < logged.shape[0] and logged[line]:
                self._labels.pop((line, ts), None)  # a repeat moves to the newest place
                self._labels[(line, ts)] = label
        while len(self._labels) > MAX_LABELS:
            del self._labels[next(iter(self._labels))]

    def _batch_ids(self, line: list[str], closed: Batches) -> list[str]:
        """Each closed batch's id, its reading's ``batch`` value or ``{line}-{close ms}``;
        ids at or before a line's newest close are forgotten."""
        labels = self._labels
        names = [labels.pop((k, ts), None) or f"{ln}-{ts}" for k, ln, ts in zip(
            closed.line.tolist(), line, closed.close_ms.tolist(), strict=True)]
        if labels:
            newest: dict[int, int] = {}
            for k, ts in zip(closed.line.tolist(), closed.close_ms.tolist(), strict=True):
                newest[k] = max(ts, newest.get(k, ts))
            for key in [key for key in labels if key[1] <= newest.get(key[0], key[1] - 1)]:
                del labels[key]
        return names

    def on_ticks(self, ticks: Ticks, sites: Sequence[str], lines: Sequence[str]) -> pa.Table:
        """The batches closed by a call's finalised readings, as ``BATCH_SCHEMA`` rows."""
        if ticks.finalised is None or not len(ticks.finalised):
            return BATCH_SCHEMA.empty_table()
        grow_batch_state(self.state, len(sites))
        self.last = closed = close_batches(self.state, ticks.finalised)
        if not len(closed):
            return BATCH_SCHEMA.empty_table()
        idx = pa.array(closed.line)
        site = pa.array(list(sites), pa.string()).take(idx)
        line = pa.array(list(lines), pa.string()).take(idx)
        names = self._batch_ids(line.to_pylist(), closed)
        return pa.Table.from_arrays(
            [site, line, pa.array(names, pa.string()), pa.array(closed.close_ms),
             pa.array(closed.energy_kgce), pa.array(closed.electricity_kwh),
             pa.array(closed.production_t),
             pa.array(closed.kgce_per_t, mask=np.isnan(closed.kgce_per_t)),
             pa.array(closed.kwh_per_t, mask=np.isnan(closed.kwh_per_t)),
             pa.array(closed.duration_s), pa.array(closed.co2_direct_t),
             pa.array(closed.co2_indirect_t),
             pa.array(closed.co2_per_t, mask=np.isnan(closed.co2_per_t))],
            schema=BATCH_SCHEMA,
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The open batches and the waiting batch ids, as named arrays for the checkpoint."""
        keys = list(self._labels)
        return {
            **{BATCH_PREFIX + k: v for k, v in batch_state_arrays(self.state).items()},
            LABEL_PREFIX + "line": np.array([k for k, _ in keys], dtype=np.int32),
            LABEL_PREFIX + "ts": np.array([ts for _, ts in keys], dtype=np.int64),
            LABEL_PREFIX + "id": np.array(list(self._labels.values()), dtype="<U64"),
        }

    def restore(self, arrays: dict[str, np.ndarray] | None) -> None:
        """Take the open batches back from a checkpoint's arrays (none in one from before
        batch lines existed: every line starts without an open batch)."""
        mine = {k.removeprefix(BATCH_PREFIX): v for k, v in (arrays or {}).items()
                if k.startswith(BATCH_PREFIX)}
        if mine:
            self.state = batch_state_from_arrays(mine)
        arrays = arrays or {}
        if LABEL_PREFIX + "id" in arrays:
            self._labels = dict(zip(
                zip(arrays[LABEL_PREFIX + "line"].tolist(), arrays[LABEL_PREFIX + "ts"].tolist(),
                    strict=True),
                arrays[LABEL_PREFIX + "id"].tolist(), strict=True))
