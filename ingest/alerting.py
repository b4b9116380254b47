"""Energy alerts per line: the kernel's rules on each tick, the stale-line rule on the clock.

``LineAlerts`` sits in the pipeline next to the intensity kernel. For every batch of
ticks it runs ``wattline.kernels.alerts.evaluate_alerts`` with each line's rules
(per-line overrides and the product's national levels from the reference data), and
on every turn of the pipeline loop it checks which lines have gone quiet. What comes
out, for each alert that starts or ends:

- a row of ``ALERT_SCHEMA``: the ``energy_alert`` measurement of docs/formats.md
  (``state`` 1 at the start, 0 at the end), for the sinks;
- the line's set of active alerts, as the JSON published retained to
  ``{prefix}/{site}/{line}/alerts``::

      {"site": "s1", "line": "eaf-1", "time_ms": <newest start or end>,
       "active": [{"rule": "spike", "since_ms": ..., "value": 95.2,
                   "threshold": 90.0, "message": "..."}]}

  (``active`` is empty once every alert has ended);
- the gauge ``wattline_alert_active{site,line,rule}`` and the counter
  ``wattline_alerts_total{rule,state}``.

Rules: ``spike``, ``surge``, ``above_baseline``, ``above_benchmark`` (the kernel's;
see its module for their exact text) and ``stale``: no reading from a line for
``stale_after`` of wall-clock time. A stale alert starts at the wall-clock time it is
noticed (its value is the seconds since the line's last reading) and ends when a
reading arrives; after a restart, every known line counts as heard at start-up.

Messages are made from the rule, value and threshold only, so a replayed tick
rewrites the same point.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from wattline.contract.durations import format_duration
from wattline.contract.reference_data import ReferenceData
from wattline.contract.schemas import ALERT_SCHEMA
from wattline.ingest.config import Settings
from wattline.ingest.metrics import CollectorMetrics
from wattline.kernels import KernelConfig, Ticks
from wattline.kernels.alerts import (
    LEVEL_KGCE_PER_T,
    LEVEL_KWH_PER_T,
    LEVEL_NONE,
    RULES,
    AlertConfig,
    AlertEvents,
    AlertState,
    LineRules,
    evaluate_alerts,
    evaluate_batch_alerts,
    grow_alert_state,
    new_alert_state,
)
from wattline.kernels.batches import Batches

STALE = "stale"
ALL_RULES = (*RULES, STALE)
"""Every rule name that can appear in the ``rule`` tag."""



def kernel_windows(settings: Settings) -> tuple[int, ...]:
    """The kernel's windows: the configured ones, then the surge window if it is extra."""
    windows = settings.windows_ms
    if settings.surge_window_ms not in windows:
        windows = (*windows, settings.surge_window_ms)
    return windows


@dataclass(frozen=True)
class ActiveAlert:
    rule: str
    since_ms: int
    value: float | None
    threshold: float | None
    message: str


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


class LineAlerts:
    """Alert state and outputs for every line of one pipeline (pipeline thread only,
    except ``retained_payloads``, which any thread may call)."""

    def __init__(self, settings: Settings, kernel_config: KernelConfig,
                 reference: ReferenceData, metrics: CollectorMetrics,
                 state: AlertState | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._reference = reference
        self._kgce_per_kwh = reference.carriers["electricity"].kgce_per_unit
        windows = list(kernel_config.windows_ms)
        short, long_ = settings.spike_windows
        surge_ms = settings.surge_window_ms
        self.names = {
            "short": short, "long": long_, "level": settings.level_window_name,
            "surge": format_duration(surge_ms),
        }
        index = dict(zip(settings.windows, range(len(settings.windows)), strict=True))
        self.config = AlertConfig(
            short_window=index[short],
            long_window=index[long_],
            level_window=index[settings.level_window_name],
            surge_window=windows.index(surge_ms),
            surge_window_ticks=surge_ms // kernel_config.emit_every_ms,
            surge_window_hours=surge_ms / 3_600_000,
        )
        self.state = state or new_alert_state(0)
        self._rules = LineRules.uniform(0)
        self._rule_lines: list[tuple[str, str]] = []
        self._active: dict[tuple[str, str], dict[str, ActiveAlert]] = {}
        self._changed_ms: dict[tuple[str, str], int] = {}  # newest start or end per line
        self._lock = threading.Lock()
        self._heard_s: dict[int, float] = {}
        self._stale: set[int] = set()

    def take_over(self, previous: LineAlerts) -> None:
        """Carry on from ``previous`` (after a reload): active alerts, stale lines, the
        times lines were last heard. Rules are rebuilt from this object's settings."""
        with previous._lock:
            self._active = previous._active
            self._changed_ms = previous._changed_ms
        self._heard_s = previous._heard_s
        self._stale = previous._stale

    # -- per-line rules ----------------------------------------------------------------------

    def rules_for(self, sites: Sequence[str], lines: Sequence[str]) -> LineRules:
        """The rules of lines ``0..n-1`` (rebuilt only when lines were added)."""
        names = list(zip(sites, lines, strict=True))
        if names == self._rule_lines:
            return self._rules
        s = self.settings.alerts
        n = len(names)
        rules = LineRules.uniform(n, s.alert_for, s.spike_ratio, s.spike_clear_ratio, s.surge_k)
        for i, (site, line) in enumerate(names):
            own = s.lines.get(f"{site}/{line}")
            if own is None:
                continue
            rules.for_ticks[i] = own.alert_for or s.alert_for
            rules.spike_ratio[i] = own.spike_ratio or s.spike_ratio
            rules.spike_clear_ratio[i] = own.spike_clear_ratio or s.spike_clear_ratio
            rules.surge_k[i] = own.surge_k or s.surge_k
            rules.batch_line[i] = own.batch  # type: ignore[index]
            if own.idle_kw is not None:  # kW of energy as kgce/h, at electricity's factor
                rules.idle_kgce_per_h[i] = own.idle_kw * self._kgce_per_kwh  # type: ignore[index]
            level = self._reference.levels.get(own.product) if own.product else None
            if level is not None:
                rules.level_unit[i] = {"kgce/t": LEVEL_KGCE_PER_T,
                                       "kWh/t": LEVEL_KWH_PER_T}.get(level.unit, LEVEL_NONE)
                rules.baseline[i] = np.nan if level.baseline is None else level.baseline
                rules.benchmark[i] = np.nan if level.benchmark is None else level.benchmark
        self._rules, self._rule_lines = rules, names
        grow_alert_state(self.state, n)
        return rules

    def level_unit(self, line: int) -> str:
        unit = int(self._rules.level_unit[line]) if line < self._rules.n_lines else LEVEL_NONE
        return "kWh/t" if unit == LEVEL_KWH_PER_T else "kgce/t"

    # -- evaluation --------------------------------------------------------------------------

    def on_ticks(self, ticks: Ticks, sites: Sequence[str], lines: Sequence[str]) -> pa.Table:
        """Run the kernel rules over a batch's ticks; their starts and ends as a table."""
        rules = self.rules_for(sites, lines)
        if len(ticks) == 0:
            return ALERT_SCHEMA.empty_table()
        events = evaluate_alerts(self.state, self.config, rules, ticks)
        return self._record(self._rows(events, sites, lines))

    def on_batches(self, batches: Batches, sites: Sequence[str], lines: Sequence[str]) -> pa.Table:
        """Run the batch lines' spike rule over closed batches; its starts and ends."""
        rules = self.rules_for(sites, lines)
        if len(batches) == 0:
            return ALERT_SCHEMA.empty_table()
        events = evaluate_batch_alerts(self.state, rules, batches)
        return self._record(self._rows(events, sites, lines))

    def heard(self, line_indices: Sequence[int], now_s: float, sites: Sequence[str],
              lines: Sequence[str]) -> pa.Table:
        """Readings arrived from these lines: a stale alert on any of them ends."""
        rows = []
        for i in line_indices:
            self._heard_s[i] = now_s
            if i in self._stale:
                self._stale.discard(i)
                rows.append((sites[i], lines[i], STALE, int(now_s * 1000), 0, None,
                             self.settings.alerts.stale_after.ms / 1000.0))
        return self._record(rows)

    def check_stale(self, now_s: float, sites: Sequence[str], lines: Sequence[str]) -> pa.Table:
        """Start a stale alert on every line quiet for ``stale_after``."""
        limit_s = self.settings.alerts.stale_after.ms / 1000.0
        rows = []
        for i in range(len(sites)):
            heard = self._heard_s.setdefault(i, now_s)
            if i not in self._stale and now_s - heard >= limit_s:
                self._stale.add(i)
                rows.append((sites[i], lines[i], STALE, int(now_s * 1000), 1,
                             round(now_s - heard, 3), limit_s))
        return self._record(rows)

    def _rows(self, events: AlertEvents, sites: Sequence[str], lines: Sequence[str]) -> list:
        return [
            (sites[ln], lines[ln], RULES[r], t, s, _finite(v), _finite(th))
            for ln, t, r, s, v, th in zip(
                events.line.tolist(), events.tick_ms.tolist(), events.rule.tolist(),
                events.state.tolist(), events.value.tolist(), events.threshold.tolist(),
                strict=True)
        ]

    def message(self, rule: str, state: int, value: float | None, threshold: float | None,
                unit: str = "kgce/t", batch: bool = False) -> str:
        """The alert's text, made from its rule, state, value and threshold only."""
        n = self.names
        if rule == STALE:
            if state:
                return (f"no reading for {_num(value)} s (stale_after "
                        f"{_num(threshold)} s)")
            return "readings arrive again"
        what = {
            "spike": (f"{n['short']} intensity", "kgce/t",
                      f"the spike limit over the {n['long']} intensity"),
            "surge": (f"energy rate over {n['surge']}", "kgce/h", "its rolling band"),
            "above_baseline": (f"{n['level']} intensity", unit, "the national baseline level"),
            "above_benchmark": (f"{n['level']} intensity", unit, "the national benchmark level"),
        }[rule]
        label, u, limit = what
        if rule == "spike" and batch:
            label, limit = "batch intensity", "the spike limit over the last batches' median"
        if value is None:
            return f"{label}: none (line idle); alert ends"
        verb = "above" if state else "back under"
        return f"{label} {_num(value)} {u} {verb} {limit} ({_num(threshold)} {u})"

    def _record(self, rows: list) -> pa.Table:
        if not rows:
            return ALERT_SCHEMA.empty_table()
        names = {name: i for i, name in enumerate(self._rule_lines)}
        out = []
        with self._lock:
            for site, line, rule, t, state, value, threshold in rows:
                index = names.get((site, line), 1 << 62)
                by_batch = index < self._rules.n_lines and bool(self._rules.batch_line[index])  # type: ignore[index]
                text = self.message(rule, state, value, threshold, self.level_unit(index),
                                    by_batch)
                out.append((site, line, rule, t, state, value, threshold, text))
                active = self._active.setdefault((site, line), {})
                self._changed_ms[(site, line)] = max(t, self._changed_ms.get((site, line), t))
                if state:
                    active[rule] = ActiveAlert(rule, t, value, threshold, text)
                else:
                    active.pop(rule, None)
                self.metrics.alert_active.labels(site, line, rule).set(state)
                self.metrics.alerts.labels(rule, "start" if state else "end").inc()
        columns = list(zip(*out, strict=True))
        return pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, ALERT_SCHEMA,
                                                                  strict=True)],
            schema=ALERT_SCHEMA,
        )

    # -- retained topic ----------------------------------------------------------------------

    def retained_payloads(self, only: pa.Table | None = None) -> list[tuple[str, str, bytes]]:
        """(site, line, JSON) of the lines touched by ``only``, or of every line with alerts
        so far when ``only`` is None (to republish after a reconnect)."""
        with self._lock:
            if only is None:
                keys = list(self._active)
            else:
                keys = list(dict.fromkeys(zip(only.column("site").to_pylist(),
                                              only.column("line").to_pylist(), strict=True)))
            payloads = []
            for site, line in keys:
                active = self._active.get((site, line), {})
                body = {
                    "site": site, "line": line, "time_ms": self._changed_ms.get((site, line)),
                    "active": [
                        {"rule": a.rule, "since_ms": a.since_ms, "value": a.value,
                         "threshold": a.threshold, "message": a.message}
                        for a in sorted(active.values(), key=lambda a: ALL_RULES.index(a.rule))
                    ],
                }
                payloads.append((site, line, json.dumps(body, allow_nan=False).encode()))
            return payloads

    def restore_active(self, sites: Sequence[str], lines: Sequence[str]) -> None:
        """After a restart from a checkpoint: the kernel rules' active alerts, as outputs."""
        active = np.nonzero(self.state.active)
        with self._lock:
            for ln, r in zip(active[0].tolist(), active[1].tolist(), strict=True):
                if ln >= len(sites):
                    continue
                rule = RULES[r]
                since = int(self.state.since_ms[ln, r])
                value = _finite(float(self.state.start_value[ln, r]))
                threshold = _finite(float(self.state.start_threshold[ln, r]))
                key = (sites[ln], lines[ln])
                self._changed_ms[key] = max(since, self._changed_ms.get(key, since))
                self._active.setdefault(key, {})[rule] = ActiveAlert(
                    rule, since, value, threshold,
                    self.message(rule, 1, value, threshold, self.level_unit(ln),
                                 ln < self._rules.n_lines and bool(self._rules.batch_line[ln])))  # type: ignore[index]
                self.metrics.alert_active.labels(sites[ln], lines[ln], rule).set(1)
