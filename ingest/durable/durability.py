"""``Durability``: what makes received messages survive a crash, for one pipeline.

With a state directory (``--state-dir``), a message the broker let go of is never
lost to a crash:

- ``hold(batch)``, before a batch is processed: its messages go to the write-ahead
  log (``wal.py``), then their acknowledgements go to the broker (``ack``, set by
  the collector when acknowledgements wait for durability). When the log cannot be
  written (disk full, read-only), the acknowledgements are held until the next
  checkpoint, which then holds the messages' effect; the broker keeps them
  meanwhile and stops sending once its in-flight window is full.
- ``checkpoint_due()`` after each turn of the loop, and ``save(...)`` when it is:
  the kernel state, meter numbering and alert state go to a checkpoint
  (``checkpoint.py``), the log starts a new generation, and every held
  acknowledgement is released. A checkpoint is due every ``checkpoint_every_s``
  after a batch, at the next turn after final periods were written
  (``finals_written``: a crash after that checkpoint cannot replay the log into
  writing them a second time), or as soon as more than ``MAX_HELD_ACKS`` are held. A failure is
  logged (once a minute) and counted, and the pipeline goes on.
- ``resume(...)`` at construction: the newest checkpoint is loaded into the meter
  registry and alert rules (the kernel state is returned), and the log written
  since is read; ``replay(process, n)`` at start runs those messages through again.

Without a state directory, ``hold`` only acknowledges and the rest does nothing.
Every method but ``ack``'s target runs on the pipeline thread (``resume`` and
``replay`` before it starts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wattline.ingest.alerting import LineAlerts
from wattline.ingest.decode.batch import Message
from wattline.ingest.decode.registry import MeterRegistry
from wattline.ingest.durable.checkpoint import load_checkpoint, save_checkpoint
from wattline.ingest.durable.wal import WalRecord, WriteAheadLog, read_wal
from wattline.ingest.log_limit import OncePerMinute
from wattline.ingest.metrics import CollectorMetrics
from wattline.kernels import KernelConfig
from wattline.kernels.alerts import alert_state_from_arrays
from wattline.kernels.state import StreamState

__all__ = ["MAX_HELD_ACKS", "Durability"]

log = logging.getLogger("wattline.pipeline")

MAX_HELD_ACKS = 10_000
"""Acknowledgements held (the log could not be written) before a checkpoint is forced."""


class Durability:
    """The write-ahead log, acknowledgements and checkpoints of one pipeline; see the
    module doc."""

    def __init__(
        self,
        state_dir: str | None,
        kernel_config: KernelConfig,
        metrics: CollectorMetrics,
        *,
        checkpoint_every_s: float,
        log_once: OncePerMinute | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.kernel_config = kernel_config
        self.metrics = metrics
        self.checkpoint_every_s = checkpoint_every_s
        self._log_once = log_once or OncePerMinute()
        self._clock = clock
        self.ack: Callable[[Any], None] | None = None
        """Acknowledges a message to the broker (the source's ``ack``); set by the collector
        when acknowledgements wait for durability."""
        self.generation = 0
        self.saved_alerts: dict[str, np.ndarray] | None = None
        """The alert arrays of the checkpoint resumed from (the batch lines' open
        batches travel among them), if any."""
        self.wal: WriteAheadLog | None = None
        self._replay: list[WalRecord] = []
        self._held_acks: list[Any] = []
        self._unsaved = False  # batches processed since the last checkpoint
        self._urgent = False  # a final period was written: checkpoint at the next turn
        self._last_checkpoint_s = clock()

    @property
    def wal_dir(self) -> Path:
        return Path(self.state_dir or ".") / "wal"

    @property
    def acks_wait(self) -> bool:
        """Whether the broker's acknowledgements wait for this (its in-flight window is
        then all that arrives until they go)."""
        return self.ack is not None

    # -- start-up ----------------------------------------------------------------------------

    def resume(self, registry: MeterRegistry, alerts: LineAlerts,
               periods: Any = None) -> StreamState | None:
        """Load the newest checkpoint into ``registry`` and ``alerts`` and return its kernel
        state (``None`` without one), read the log written since, and open the log."""
        if not self.state_dir:
            return None
        state = self._load(self.state_dir, registry, alerts, periods)
        self._replay = read_wal(self.wal_dir, self.generation)
        self.wal = WriteAheadLog(self.wal_dir, self.generation)
        return state

    def _load(self, state_dir: str, registry: MeterRegistry,
              alerts: LineAlerts, periods: Any = None) -> StreamState | None:
        checkpoint = load_checkpoint(state_dir, self.kernel_config)
        if checkpoint is None:
            log.info("no checkpoint in %s yet: windows start empty", state_dir)
            return None
        registry.restore(checkpoint.registry)
        self.generation = checkpoint.generation
        self.saved_alerts = checkpoint.alerts
        if checkpoint.alerts is not None:
            alerts.state = alert_state_from_arrays(checkpoint.alerts)
            sites, names = registry.line_sites, registry.line_names
            alerts.rules_for(sites, names)
            alerts.restore_active(sites, names)
        if checkpoint.periods is not None and periods is not None:
            periods.restore(checkpoint.periods)  # open shifts, days and months go on
        log.info("resumed from checkpoint %d in %s: %d meters on %d lines", self.generation,
                 state_dir, registry.n_meters, registry.n_lines)
        return checkpoint.state

    def replay(self, process: Callable[[list[Message]], object], batch_size: int) -> None:
        """Run the messages received after the checkpoint we resumed from through
        ``process`` again, ``batch_size`` at a time."""
        records = self._replay
        self._replay = []
        if not records:
            return
        log.info("replaying %d message(s) received after checkpoint %d from %s",
                 len(records), self.generation, self.wal_dir)
        step = max(1, batch_size)
        for i in range(0, len(records), step):
            process([Message(r.topic, r.payload, r.received_s) for r in records[i:i + step]])
        self.metrics.wal_replayed.inc(len(records))

    # -- each batch --------------------------------------------------------------------------

    def hold(self, batch: Sequence[Message]) -> None:
        """Put a batch in the write-ahead log, then acknowledge its messages to the broker
        (held until the next checkpoint when the log cannot be written)."""
        acks = [m.ack for m in batch if m.ack is not None]
        if self.wal is None:
            self._ack_all(acks)
            return
        try:
            self.wal.append([WalRecord(m.received_s, m.topic, m.payload) for m in batch])
        except OSError as exc:
            self.metrics.wal_errors.inc()
            if self._log_once("wal", str(self.wal_dir)):
                log.error("cannot write the write-ahead log in %s: %s; holding the broker's "
                          "acknowledgements until the next checkpoint", self.wal_dir, exc)
            self._held_acks.extend(acks)
            return
        self._ack_all(acks)

    def processed(self) -> None:
        """A batch has changed the state since the last checkpoint."""
        self._unsaved = True

    def checkpoint_due(self) -> bool:
        """Whether a batch since the last checkpoint waits for one, and its time has come
        (or too many acknowledgements are held)."""
        if not (self._unsaved and self.state_dir):
            return False
        due = self._clock() - self._last_checkpoint_s >= self.checkpoint_every_s
        return due or self._urgent or len(self._held_acks) > MAX_HELD_ACKS

    def finals_written(self) -> None:
        """Final periods were written: the next turn checkpoints, so that a crash after it
        cannot replay the log into writing them again (the checkpoint holds them closed)."""
        self._unsaved = True
        self._urgent = True

    # -- checkpoints -------------------------------------------------------------------------

    def save(self, state: StreamState, registry: dict[str, Any],
             alerts: dict[str, np.ndarray],
             periods: dict[str, np.ndarray] | None = None) -> bool:
        """Write a checkpoint (kernel state, meter numbering, alert state), start a new log
        and release the held acknowledgements; ``False`` when none was written."""
        if not self.state_dir:
            return False
        try:
            save_checkpoint(self.state_dir, state, registry, self.kernel_config,
                            self.generation + 1, alerts=alerts, periods=periods)
        except OSError as exc:
            self._last_checkpoint_s = self._clock()  # try again after another interval
            self._urgent = False
            self.metrics.checkpoint_errors.inc()
            if self._log_once("checkpoint", self.state_dir):
                log.error("cannot write a checkpoint to %s: %s; the pipeline goes on, but a "
                          "restart would begin with the last good checkpoint",
                          self.state_dir, exc)
            return False
        self.generation += 1
        self._last_checkpoint_s = self._clock()
        self._unsaved = False
        self._urgent = False
        self.metrics.checkpoints.inc()
        if self.wal is not None:
            try:
                self.wal.rotate(self.generation)
            except OSError as exc:
                self.metrics.wal_errors.inc()
                log.error("cannot start a new write-ahead log in %s: %s", self.wal_dir, exc)
        self._ack_all(self._held_acks)  # everything so far is in the checkpoint
        self._held_acks = []
        return True

    def close(self) -> None:
        if self.wal is not None:
            self.wal.close()

    def _ack_all(self, acks: Sequence[Any]) -> None:
        if self.ack is None:
            return
        for token in acks:
            self.ack(token)
