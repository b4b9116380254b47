"""Applying a reloaded configuration to a running pipeline, on its own thread.

``wattline.ingest.app.reload`` decides what a SIGHUP may change; the result reaches
the pipeline through ``PendingReload.request`` (any thread) and is applied by
``apply_pending`` at the start of the pipeline's next turn, between batches, so no
batch sees half of it. Applied: the settings the decoder and alert rules read, a new
``LineAlerts`` that carries on the active alerts, stale lines and last-heard times of
the old one, the checkpoint interval, the Parquet store's retention and whether the
retained alert topic is published.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wattline.contract.reference_data import load_reference
from wattline.ingest.alerting import LineAlerts
from wattline.ingest.config import Settings
from wattline.ingest.sinks.mqtt_alerts import MqttAlertSink

if TYPE_CHECKING:
    from wattline.ingest.pipeline import Pipeline

__all__ = ["PendingReload"]

log = logging.getLogger("wattline.pipeline")


class PendingReload:
    """The newest requested settings, until the pipeline thread applies them."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    def request(self, settings: Settings) -> None:
        """Apply ``settings`` at the pipeline's next turn (any thread; a later request
        replaces one not yet applied)."""
        self._settings = settings

    def apply_pending(self, pipeline: Pipeline) -> None:
        """Apply the requested settings, if any, to ``pipeline`` (pipeline thread only)."""
        settings, self._settings = self._settings, None
        if settings is None:
            return
        state = pipeline.alerts.state
        pipeline.settings = settings
        pipeline.decoder.settings = settings
        pipeline.durability.checkpoint_every_s = settings.checkpoint_every_ms / 1000.0
        alerts = LineAlerts(settings, pipeline.kernel_config, load_reference(),
                            pipeline.metrics, state=state)
        alerts.take_over(pipeline.alerts)
        pipeline.alerts = alerts
        for sink in pipeline.sinks:
            if isinstance(sink, MqttAlertSink):
                sink.enabled = settings.alert_topic
            elif hasattr(sink, "retention_days"):
                sink.retention_days = settings.store_retention_days  # type: ignore[attr-defined]
        log.info("reloaded the configuration")
