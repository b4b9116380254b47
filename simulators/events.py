"""Injected events: disturbances laid over a line's process model, and the alerts they call for.

An ``EnergySpike`` multiplies every energy meter's rate of one line by ``factor``
over a stretch of plant time (a furnace door left open, a burner stuck at full
fire, a mill running empty), while production goes on as modelled. An
``IdlePeriod`` stops a line's production while its meters keep a standby draw (a
stoppage, a maintenance shift). Both are applied to the model's segments
(``apply_events``), so the truth, the gateways and the published readings all see
them. An idle line has no intensity, so no spike alert may start while it is idle. An
``EfficiencyDrift`` raises a line's energy per tonne step by step, e.g. to take it
above its product's national baseline level. An ``EnergyImprovement`` multiplies them by a
factor below 1 from a given time on (a retrofit, a new burner): against a baseline
fitted before it, its CUSUM of savings rises by ``1 - factor`` of the expected energy
per period, a slope the truth file states (``expectations.saving_rows``).

``expected_spike_alert`` says, from the event alone and without running any of
wattline's kernels, when a spike alert must have started and ended: not before the
event starts (ends), and at the latest once the short window lies wholly inside
(after) the event plus the alert's ``for`` ticks and one tick of slack for the tick
grid. It holds for a line whose intensity is steady outside the event (the kiln),
and for a factor well over the spike ratio (the long window dilutes the spike too).

Text form, for ``wattline simulate --spike``: ``LINE@START+DURATIONxFACTOR`` with
durations in plant time since the simulation starts, e.g. ``kiln-1@60m+20mx3``; for
``--improve``: ``LINE@STARTxFACTOR``, e.g. ``eaf-1@14dx0.95``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from wattline.contract.durations import parse_duration_ms
from wattline.simulators.plant import MeterSpec, Segment

__all__ = ["EfficiencyDrift", "EnergyImprovement", "EnergySpike", "Event", "IdlePeriod",
           "SpikeWindow", "apply_events", "expected_spike_alert", "parse_drift", "parse_idle",
           "parse_improve", "parse_spike"]

_SPIKE = re.compile(r"^(?P<line>[a-z]+-\d+)@(?P<start>[\d.]+[smhd]?)\+(?P<dur>[\d.]+[smhd]?)"
                    r"x(?P<factor>[\d.]+)$")
_IDLE = re.compile(r"^(?P<line>[a-z]+-\d+)@(?P<start>[\d.]+[smhd]?)\+(?P<dur>[\d.]+[smhd]?)$")
_IMPROVE = re.compile(r"^(?P<line>[a-z]+-\d+)@(?P<start>[\d.]+[smhd]?)x(?P<factor>[\d.]+)$")


@dataclass(frozen=True)
class EnergySpike:
    """Energy meters of ``line`` count ``factor`` times their modelled rate over
    ``[start_s, start_s + duration_s)`` of plant time since the simulation starts."""

    line: str
    start_s: float
    duration_s: float
    factor: float

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.duration_s <= 0:
            raise ValueError("a spike starts at or after 0 s and lasts a positive time")
        if not self.factor > 0:
            raise ValueError(f"a spike's factor must be positive, got {self.factor}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def parse_spike(text: str) -> EnergySpike:
    """``kiln-1@60m+20mx3`` -> ``EnergySpike("kiln-1", 3600, 1200, 3.0)``."""
    m = _SPIKE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected LINE@START+DURATIONxFACTOR like kiln-1@60m+20mx3, "
                         f"got {text!r}")

    return EnergySpike(m["line"], _seconds(m["start"]), _seconds(m["dur"]), float(m["factor"]))


@dataclass(frozen=True)
class IdlePeriod:
    """``line`` stands idle over ``[start_s, start_s + duration_s)`` of plant time: it
    makes nothing (production rates and taps are zero) and its energy meters draw
    ``idle_share`` of their modelled rate (standby loads)."""

    line: str
    start_s: float
    duration_s: float
    idle_share: float = 0.1

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.duration_s <= 0 or not 0 <= self.idle_share <= 1:
            raise ValueError("an idle period starts at or after 0 s, lasts a positive time, "
                             "and draws a share of 0 to 1 of the energy")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def parse_idle(text: str) -> IdlePeriod:
    """``eaf-1@2h+45m`` -> ``IdlePeriod("eaf-1", 7200, 2700)``."""
    m = _IDLE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected LINE@START+DURATION like eaf-1@2h+45m, got {text!r}")
    return IdlePeriod(m["line"], _seconds(m["start"]), _seconds(m["dur"]))


def _seconds(text: str) -> float:
    """``"20m"`` -> 1200.0; a bare number is seconds (the daemon's duration syntax)."""
    return parse_duration_ms(text if text[-1] in "smhd" else float(text)) / 1000.0


@dataclass(frozen=True)
class EfficiencyDrift:
    """``line``'s energy per tonne creeps up: its energy meters' rates are multiplied by a
    factor that grows linearly from 1 at ``start_s`` to ``factor`` at ``start_s +
    duration_s`` (worn refractory, fouled heat exchangers) and stays there."""

    line: str
    start_s: float
    duration_s: float
    factor: float

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.duration_s <= 0 or not self.factor > 0:
            raise ValueError("a drift starts at or after 0 s, lasts a positive time and "
                             "ends at a positive factor")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def factor_at(self, t_s: float) -> float:
        """The energy factor ``t_s`` plant seconds after the simulation starts."""
        if t_s < self.start_s:
            return 1.0
        done = min(1.0, (t_s - self.start_s) / self.duration_s)
        return 1.0 + (self.factor - 1.0) * done


def parse_drift(text: str) -> EfficiencyDrift:
    """``kiln-1@1h+4hx1.3`` -> ``EfficiencyDrift("kiln-1", 3600, 14400, 1.3)``."""
    m = _SPIKE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected LINE@START+DURATIONxFACTOR like kiln-1@1h+4hx1.3, "
                         f"got {text!r}")
    return EfficiencyDrift(m["line"], _seconds(m["start"]), _seconds(m["dur"]),
                           float(m["factor"]))


@dataclass(frozen=True)
class EnergyImprovement:
    """``line``'s energy meters count ``factor`` (below 1: less) times their modelled rate
    from ``start_s`` of plant time on, for good (a retrofit), while production goes on
    as modelled."""

    line: str
    start_s: float
    factor: float

    def __post_init__(self) -> None:
        if self.start_s < 0 or not self.factor > 0:
            raise ValueError("an improvement starts at or after 0 s and has a positive factor")

    @property
    def end_s(self) -> float:
        return math.inf

    @property
    def saving_share(self) -> float:
        """The share of the energy the line would have used that it saves."""
        return 1.0 - self.factor


def parse_improve(text: str) -> EnergyImprovement:
    """``eaf-1@14dx0.95`` -> ``EnergyImprovement("eaf-1", 1209600, 0.95)``."""
    m = _IMPROVE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected LINE@STARTxFACTOR like eaf-1@14dx0.95, got {text!r}")
    return EnergyImprovement(m["line"], _seconds(m["start"]), float(m["factor"]))


Event = EnergySpike | IdlePeriod | EfficiencyDrift | EnergyImprovement


def apply_events(segments: Iterable[Segment], meters: Sequence[MeterSpec],
                 events: Sequence[Event], *, origin_s: float = 0.0) -> Iterator[Segment]:
    """The segments with each event's factors on the meters' rates (and taps).

    ``origin_s`` is the segments' time of the simulation's start (the model's
    phase); segments are cut where an event starts or ends. A tap (a segment's step)
    falls in whatever event holds at the segment's end.
    """
    energy = [m.kind == "energy" for m in meters]
    cuts = sorted({origin_s + t for e in events for t in (e.start_s, e.end_s)
                   if math.isfinite(t)})

    def factors_at(t: float, t_end: float) -> tuple[float, float]:
        """(energy factor, production factor) over segment time ``[t, t_end)``."""
        fe = fp = 1.0
        for e in events:
            if isinstance(e, EfficiencyDrift):  # piecewise constant: its value mid-piece
                fe *= e.factor_at((t + t_end) / 2 - origin_s)
            elif isinstance(e, EnergyImprovement):
                if t >= origin_s + e.start_s:
                    fe *= e.factor
            elif origin_s + e.start_s <= t < origin_s + e.end_s:
                if isinstance(e, EnergySpike):
                    fe *= e.factor
                else:
                    fe *= e.idle_share
                    fp = 0.0
        return fe, fp

    start = 0.0
    for seg in segments:
        end = start + seg.duration_s
        inner = [c for c in cuts if start < c < end]
        edges = [start, *inner, end]
        for i, (a, b) in enumerate(itertools.pairwise(edges)):
            fe, fp = factors_at(a, b)
            rates = tuple(r * (fe if e else fp) for r, e in zip(seg.rates, energy, strict=True))
            last = i == len(edges) - 2
            steps = (tuple(x * (fe if e else fp) for x, e in zip(seg.steps, energy, strict=True))
                     if last else tuple(0.0 for _ in seg.steps))
            yield Segment(b - a, rates, steps)
        start = end


@dataclass(frozen=True)
class SpikeWindow:
    """Plant-time bounds (seconds since the simulation starts) for a spike alert."""

    start_after_s: float
    start_by_s: float
    end_after_s: float
    end_by_s: float


def expected_spike_alert(spike: EnergySpike, *, short_window_s: float, tick_s: float,
                         for_ticks: int) -> SpikeWindow:
    """When a spike alert on ``spike.line`` must start and end (see the module doc)."""
    if spike.duration_s < short_window_s:
        raise ValueError("a spike shorter than the short window has no certain alert")
    slack = (for_ticks + 1) * tick_s
    return SpikeWindow(
        start_after_s=spike.start_s,
        start_by_s=spike.start_s + short_window_s + slack,
        end_after_s=spike.end_s,
        end_by_s=spike.end_s + short_window_s + slack,
    )
