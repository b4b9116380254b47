"""Injected events: disturbances laid over a line's process model, and the alerts they call for.

An ``EnergySpike`` multiplies every energy meter's rate of one line by ``factor``
over a stretch of plant time (a furnace door left open, a burner stuck at full
fire, a mill running empty), while production goes on as modelled. It is applied
to the model's segments (``apply_events``), so the truth, the gateways and the
published readings all see it.

``expected_spike_alert`` says, from the event alone and without running any of
wattline's kernels, when a spike alert must have started and ended: not before the
event starts (ends), and at the latest once the short window lies wholly inside
(after) the event plus the alert's ``for`` ticks and one tick of slack for the tick
grid. It holds for a line whose intensity is steady outside the event (the kiln),
and for a factor well over the spike ratio (the long window dilutes the spike too).

Text form, for ``wattline simulate --spike``: ``LINE@START+DURATIONxFACTOR`` with
durations in plant time since the simulation starts, e.g. ``kiln-1@60m+20mx3``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from wattline.simulators.plant import MeterSpec, Segment

__all__ = ["EnergySpike", "SpikeWindow", "apply_events", "expected_spike_alert", "parse_spike"]

_SPIKE = re.compile(r"^(?P<line>[a-z]+-\d+)@(?P<start>[\d.]+[smh]?)\+(?P<dur>[\d.]+[smh]?)"
                    r"x(?P<factor>[\d.]+)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


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

    def seconds(s: str) -> float:
        unit = s[-1] if s[-1] in "smh" else ""
        return float(s[: len(s) - len(unit)]) * _UNIT_S[unit]

    return EnergySpike(m["line"], seconds(m["start"]), seconds(m["dur"]), float(m["factor"]))


def apply_events(segments: Iterable[Segment], meters: Sequence[MeterSpec],
                 spikes: Sequence[EnergySpike], *, origin_s: float = 0.0) -> Iterator[Segment]:
    """The segments with each spike's factor on the energy meters' rates.

    ``origin_s`` is the segments' time of the simulation's start (the model's
    phase); segments are cut where a spike starts or ends.
    """
    energy = [m.kind == "energy" for m in meters]
    cuts = sorted({origin_s + t for s in spikes for t in (s.start_s, s.end_s)})

    def factor_at(t: float) -> float:
        f = 1.0
        for s in spikes:
            if origin_s + s.start_s <= t < origin_s + s.end_s:
                f *= s.factor
        return f

    start = 0.0
    for seg in segments:
        end = start + seg.duration_s
        inner = [c for c in cuts if start < c < end]
        edges = [start, *inner, end]
        for i, (a, b) in enumerate(itertools.pairwise(edges)):
            f = factor_at(a)
            rates = tuple(r * f if e else r for r, e in zip(seg.rates, energy, strict=True))
            last = i == len(edges) - 2
            steps = seg.steps if last else tuple(0.0 for _ in seg.steps)
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
