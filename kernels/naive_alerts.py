"""A slow, plain-Python statement of the alert rules: the oracle for ``evaluate_alerts``.

Written from the rule text in ``wattline.kernels.alerts`` with dicts and plain
floats, one object per (line, rule). The property tests feed the same random ticks
(idle stretches, NaN, zeros, steps, spikes) to both and require the same events
with the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from wattline.kernels.alerts import (
    BATCH_HISTORY,
    RULES,
    SURGE_ACTIVE_SLOWDOWN,
    AlertConfig,
    LineRules,
)
from wattline.kernels.state import Ticks


@dataclass
class Hysteresis:
    """One alert of one line: active or not, and its current run of ticks."""

    active: bool = False
    run: int = 0

    def step(self, fire: bool, clear: bool, needed: int) -> int | None:
        """1 when the alert starts on this tick, 0 when it ends, None otherwise."""
        if not self.active:
            self.run = self.run + 1 if fire else 0
            if self.run >= needed:
                self.active, self.run = True, 0
                return 1
            return None
        self.run = self.run + 1 if clear else 0
        if self.run >= needed:
            self.active, self.run = False, 0
            return 0
        return None


@dataclass
class SurgeBand:
    """The rolling energy-rate band of one line."""

    ticks_seen: int = 0
    learnt: int = 0
    mean: float = 0.0
    dev: float = 0.0


@dataclass
class ReferenceAlerts:
    alerts: dict[tuple[int, str], Hysteresis] = field(default_factory=dict)
    bands: dict[int, SurgeBand] = field(default_factory=dict)
    idle: dict[int, bool] = field(default_factory=dict)  # per line, at its newest tick
    batches: dict[int, list[float]] = field(default_factory=dict)  # kgce/t of every batch


def below(level: float, margin: float) -> float:
    """``margin`` of the level's magnitude below it, so on its safe side for any sign."""
    return level * (1 - margin) if level >= 0 else level * (1 + margin)


def reference_alerts(
    state: ReferenceAlerts, config: AlertConfig, rules: LineRules, ticks: Ticks
) -> list[tuple[int, int, str, int, float, float]]:
    """Events as (line, tick_ms, rule, state, value, threshold), in order."""
    events: list[tuple[int, int, str, int, float, float]] = []

    def judge(line: int, tick: int, rule: str, fire: bool, clear: bool, value: float,
              threshold: float) -> None:
        alert = state.alerts.setdefault((line, rule), Hysteresis())
        changed = alert.step(fire, clear, int(rules.for_ticks[line]))
        if changed is not None:
            events.append((line, tick, rule, changed, value, threshold))

    assert rules.batch_line is not None and rules.idle_kgce_per_h is not None
    for i in range(len(ticks)):
        line = int(ticks.line[i])
        tick = int(ticks.tick_ms[i])
        kgce_t = [float(x) for x in ticks.kgce_per_t[i]]
        kwh_t = [float(x) for x in ticks.kwh_per_t[i]]
        # Idle while the energy rate over the surge window is below the line's limit: then
        # no alert starts (fire is False), though one may end.
        rate = float(ticks.energy_kgce[i, config.surge_window]) / config.surge_window_hours
        limit = float(rules.idle_kgce_per_h[line])
        idle = not math.isnan(limit) and rate < limit
        state.idle[line] = idle
        by_batch = bool(rules.batch_line[line])

        short = kgce_t[config.short_window]
        long_ = kgce_t[config.long_window]
        ratio = float(rules.spike_ratio[line])
        producing = not math.isnan(short)
        long_known = not math.isnan(long_) and long_ > 0
        judge(line, tick, "spike",
              fire=producing and long_known and short > ratio * long_ and not idle
              and not by_batch,
              clear=not producing or not long_known
              or short <= float(rules.spike_clear_ratio[line]) * long_,
              value=short, threshold=ratio * long_ if long_known else math.nan)

        band = state.bands.setdefault(line, SurgeBand())
        if band.ticks_seen < config.surge_window_ticks:
            band.ticks_seen += 1  # the surge window is not full yet
        else:
            rate = float(ticks.energy_kgce[i, config.surge_window]) / config.surge_window_hours
            width = max(band.dev, config.surge_min_band * abs(band.mean), 1e-9)
            upper = band.mean + float(rules.surge_k[line]) * width
            warm = band.learnt >= config.surge_warmup
            judge(line, tick, "surge",
                  fire=warm and rate > upper and not idle,
                  clear=not warm or rate <= band.mean + config.surge_clear_k * width,
                  value=rate, threshold=upper)
            if band.learnt == 0:
                band.mean, band.dev = rate, 0.0
            else:
                learn = min(rate, upper)
                old_mean = band.mean
                alpha = config.surge_alpha
                if state.alerts[(line, "surge")].active:
                    alpha *= SURGE_ACTIVE_SLOWDOWN
                band.dev += alpha * (abs(learn - old_mean) - band.dev)
                band.mean += alpha * (learn - old_mean)
            band.learnt += 1

        unit = int(rules.level_unit[line])
        if unit >= 0:
            v = (kgce_t if unit == 0 else kwh_t)[config.level_window]
            for rule, level in (("above_baseline", float(rules.baseline[line])),
                                ("above_benchmark", float(rules.benchmark[line]))):
                if math.isnan(level):
                    continue
                judge(line, tick, rule,
                      fire=not math.isnan(v) and v > level and not idle,
                      clear=math.isnan(v) or v <= below(level, config.level_clear_margin),
                      value=v, threshold=level)
    assert all(rule in RULES for _, rule in state.alerts)
    return events


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def reference_batch_alerts(
    state: ReferenceAlerts, rules: LineRules, line: list[int], close_ms: list[int],
    kgce_per_t: list[float],
) -> list[tuple[int, int, str, int, float, float]]:
    """The spike rule of batch lines, batch by batch, as events like ``reference_alerts``."""
    events: list[tuple[int, int, str, int, float, float]] = []
    for ln, t, s in zip(line, close_ms, kgce_per_t, strict=True):
        if not rules.batch_line[ln]:  # type: ignore[index]
            continue
        history = state.batches.setdefault(ln, [])
        recent = history[-BATCH_HISTORY:]
        m = _median(recent) if recent else math.nan
        have = bool(recent) and m > 0
        ratio = float(rules.spike_ratio[ln])
        present = not math.isnan(s)
        alert = state.alerts.setdefault((ln, "spike"), Hysteresis())
        changed = alert.step(
            present and have and s > ratio * m and not state.idle.get(ln, False),
            not present or not have or s <= float(rules.spike_clear_ratio[ln]) * m,
            int(rules.for_ticks[ln]))
        if changed is not None:
            events.append((ln, t, "spike", changed, s, ratio * m if have else math.nan))
        if present:
            history.append(s)
    return events
