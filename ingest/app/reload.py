"""What a SIGHUP may change in a running daemon, and what needs a restart.

``wattline run`` re-reads its config file on SIGHUP (flags and environment stay as
they were at start-up) and validates it. A file that does not validate changes
nothing: the error is logged and the daemon goes on as it was. Otherwise the settings
in ``RELOADABLE`` take effect at the pipeline's next turn (applied there by
``wattline.ingest.reload_apply``): alert tuning, per-line tables, the stale limit,
log level, checkpoint interval, store retention, the retained alert topic. Settings
that the kernel state, the MQTT session or the sinks were built from
(everything else: windows, tick, broker, database, spool...) keep their old values,
and the log names each one that changed, saying a restart applies it. The MQTT
session is never dropped by a reload.
"""

from __future__ import annotations

import dataclasses

from wattline.ingest.config import Settings

RELOADABLE = frozenset({
    "log_level", "alert_for", "spike_ratio", "spike_clear_ratio", "spike_short_window",
    "spike_long_window", "surge_k", "level_window", "stale_after", "alert_topic", "lines",
    "checkpoint_every", "store_retention",
})


@dataclasses.dataclass(frozen=True)
class ReloadPlan:
    settings: Settings  # what the daemon runs with after the reload
    applied: tuple[str, ...]  # changed keys that take effect
    needs_restart: tuple[str, ...]  # changed keys left at their old values


def plan_reload(current: Settings, new: Settings) -> ReloadPlan:
    """Merge ``new`` into ``current``: reloadable keys from ``new``, the rest kept."""
    applied, restart, merged = [], [], {}
    for field in dataclasses.fields(Settings):
        old_value, new_value = getattr(current, field.name), getattr(new, field.name)
        if old_value == new_value:
            continue
        if field.name in RELOADABLE:
            applied.append(field.name)
            merged[field.name] = new_value
        else:
            restart.append(field.name)
    return ReloadPlan(dataclasses.replace(current, **merged), tuple(applied), tuple(restart))
