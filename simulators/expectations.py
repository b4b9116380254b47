"""What the collector should make of a simulated run: intensities per tick and alerts.

``write_expectations`` recomputes what the gateways published (``published_series``,
the same deterministic schedule), and writes, as JSON Lines:

- one ``{"kind": "intensity", ...}`` row per line, tick and window, from
  ``truth.expected_intensity`` (plain Python and exact fractions, none of the
  collector's code);
- one ``{"kind": "expected_alert", "rule": "spike", ...}`` row per injected energy
  spike, with the plant-time bounds (epoch ms) within which its alert must start and
  end (``events.expected_spike_alert``, from the event alone);
- one ``{"kind": "expected_no_alert", "rule": "spike", "from_ms", "to_ms"}`` row per
  idle period: an idle line has no intensity, so no spike alert may start then;
- one ``expected_alert`` row per above_baseline / above_benchmark episode that the
  truth's own intensities call for (``level_alerts``), for lines whose model has a
  product with national levels (configure that product for the line in the daemon);
- one ``{"kind": "expected_saving", ...}`` row per energy improvement or efficiency
  drift (``saving_rows``): the share of its expected energy the line saves from
  ``from_ms`` on, which is the CUSUM slope an energy report shows over periods after
  ``from_ms`` against a baseline fitted on periods before the event.

End-to-end checks compare a daemon's output with this file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import orjson

from wattline.contract.reference_data import load_reference
from wattline.simulators.events import (
    EfficiencyDrift,
    EnergyImprovement,
    EnergySpike,
    Event,
    IdlePeriod,
    expected_spike_alert,
)
from wattline.simulators.gateway import Faults
from wattline.simulators.plant import line_model
from wattline.simulators.publisher import published_series
from wattline.simulators.scenario import Scenario
from wattline.simulators.truth import TruthRow, expected_intensity, window_ms

__all__ = ["saving_rows", "write_expectations"]


def write_expectations(
    path: str | Path,
    lines: Sequence[str],
    *,
    site: str,
    start_ms: int,
    plant_s: float,
    rate_s: float,
    seed: int,
    topic_prefix: str = "factory",
    readings_per_message: int = 1,
    events: Sequence[Event] = (),
    payload_format: str = "json",
    windows: Sequence[str] = ("15m", "1h", "24h"),
    emit_every_s: float = 10.0,
    alert_for: int = 3,
    scenarios: Mapping[str, Scenario] | None = None,
    faults: Faults | None = None,
) -> tuple[int, int]:
    """Write the expectations of one run; returns (intensity rows, expected alerts).

    The arguments are those the run was published with (``start_ms`` is the plant
    time it started at); ``windows``, ``emit_every_s`` and ``alert_for`` are the
    collector's settings the expectations are for.
    """
    series = published_series(
        lines, site=site, start_ms=start_ms, plant_s=plant_s, rate_s=rate_s, seed=seed,
        topic_prefix=topic_prefix, readings_per_message=readings_per_message, events=events,
        payload_format=payload_format, scenarios=scenarios, faults=faults,
    )
    rows = expected_intensity(series, emit_every_s=emit_every_s, windows=windows)
    short_s = min(window_ms(w) for w in windows) / 1000.0
    n_alerts = 0
    with open(path, "wb") as out:
        for row in rows:
            out.write(orjson.dumps({"kind": "intensity", **asdict(row)}) + b"\n")
        for spike in (e for e in events if isinstance(e, EnergySpike)):
            bounds = expected_spike_alert(spike, short_window_s=short_s, tick_s=emit_every_s,
                                          for_ticks=alert_for)
            out.write(orjson.dumps({
                "kind": "expected_alert", "rule": "spike", "site": site, "line": spike.line,
                **{f"{k.removesuffix('_s')}_ms": start_ms + round(v * 1000)
                   for k, v in asdict(bounds).items()},
            }) + b"\n")
            n_alerts += 1
        for alert in level_alerts(rows, lines, windows, alert_for, scenarios):
            out.write(orjson.dumps({"kind": "expected_alert", "site": site, **alert}) + b"\n")
            n_alerts += 1
        for idle in (e for e in events if isinstance(e, IdlePeriod)):
            # An idle line has no intensity: no spike alert may start while it stands.
            out.write(orjson.dumps({
                "kind": "expected_no_alert", "rule": "spike", "site": site, "line": idle.line,
                "from_ms": start_ms + round(idle.start_s * 1000),
                "to_ms": start_ms + round(idle.end_s * 1000),
            }) + b"\n")
        for saving in saving_rows(events, site=site, start_ms=start_ms):
            out.write(orjson.dumps(saving) + b"\n")
    return len(rows), n_alerts


def saving_rows(events: Sequence[Event], *, site: str, start_ms: int
                ) -> list[dict[str, object]]:
    """The energy saving each improvement or drift makes, as a share of the energy the
    line would have used (the CUSUM slope per period over expected energy), and from when.

    An improvement saves ``1 - factor`` from its start; a drift ``1 - factor`` (negative:
    it costs) from its end, once its factor is reached. Production is untouched by both,
    so a baseline fitted before the event expects the line's unchanged energy.
    """
    out: list[dict[str, object]] = []
    for e in events:
        if isinstance(e, EnergyImprovement):
            cause, since_s = "improve", e.start_s
        elif isinstance(e, EfficiencyDrift):
            cause, since_s = "drift", e.end_s
        else:
            continue
        out.append({"kind": "expected_saving", "cause": cause, "site": site, "line": e.line,
                    "from_ms": start_ms + round(since_s * 1000),
                    "saving_share": 1.0 - e.factor})
    return out


LEVEL_CLEAR_MARGIN = 0.02
"""A level alert ends once the intensity is this share under the level (the daemon's)."""


def level_alerts(rows: Sequence[TruthRow], lines: Sequence[str], windows: Sequence[str],
                 alert_for: int, scenarios: Mapping[str, Scenario] | None = None
                 ) -> list[dict[str, object]]:
    """The above_baseline and above_benchmark alerts the truth's intensities call for.

    For each line whose model has a product with national levels, the level window
    (24h when configured, else the longest) is walked tick by tick with the rule's
    own words: it fires while the intensity is above the level, clears when the
    window is idle or the intensity is at least 2 % under it, and an alert starts
    (ends) after ``alert_for`` ticks in a row that fire (clear). Each alert is
    ``{"rule", "line", "start_ms", "end_ms" (None while still active)}``.
    """
    level_window = "24h" if "24h" in windows else max(windows, key=window_ms)
    levels = load_reference().levels
    out: list[dict[str, object]] = []
    for line in lines:
        model = line_model(line)
        product = model.product
        if not product or product not in levels:
            continue
        level = levels[product]
        field = "kwh_per_t" if level.unit == "kWh/t" else "kgce_per_t"
        ticks = [(r.time_ms, getattr(r, field)) for r in rows
                 if r.line == line and r.window == level_window]
        for rule, limit in (("above_baseline", level.baseline),
                            ("above_benchmark", level.benchmark)):
            if limit is None:
                continue
            active, run, start = False, 0, 0
            for t, v in ticks:
                fires = v is not None and v > limit
                clears = v is None or v <= limit * (1 - LEVEL_CLEAR_MARGIN)
                run = run + 1 if (clears if active else fires) else 0
                if run >= alert_for:
                    run = 0
                    if active:
                        out.append({"rule": rule, "line": line, "start_ms": start, "end_ms": t})
                    else:
                        start = t
                    active = not active
            if active:
                out.append({"rule": rule, "line": line, "start_ms": start, "end_ms": None})
    return out
