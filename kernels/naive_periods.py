"""A slow, plain-Python statement of the period rules: the oracle for ``advance_periods``.

Written from the rules in ``wattline.kernels.periods`` (1-5), for clarity: plain
lists and dicts, every period found by bisecting the calendar, every sum a
``math.fsum`` over the period's terms, provisional rows from copies of the meters'
baselines. The property tests feed random streams to this and to the
kernel and require the same rows and drops.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace

from wattline.kernels.naive import _delta, _messages
from wattline.kernels.periods import PERIOD_DROP_REASONS, PERIOD_KINDS, Boundaries
from wattline.kernels.state import QUANTITIES, VALUE_LIMIT, MeterTable, Readings


@dataclass
class MeterPeriods:
    """One meter: pending (ts, value, late) in ts order, and the baseline ``_delta`` uses."""

    pending: list[tuple[int, float, bool]] = field(default_factory=list)
    baseline: float | None = None
    baseline_ms: int | None = None
    suspect: tuple[int, float] | None = None


@dataclass
class OpenPeriod:
    start: int
    end: int
    terms: list[list[float]] = field(default_factory=lambda: [[] for _ in QUANTITIES])
    late: int = 0


@dataclass
class LinePeriods:
    newest: int | None = None
    base: int | None = None
    settled: int | None = None
    arrival: int | None = None
    provisional_step: int | None = None
    open: dict[tuple[int, int], OpenPeriod] = field(default_factory=dict)  # (kind, start)


@dataclass(frozen=True)
class ReferencePeriod:
    line: int
    kind: int
    start_ms: int
    end_ms: int
    sums: tuple[float, ...]  # the QUANTITIES
    kgce_per_t: float
    kwh_per_t: float
    final: bool
    late_readings: int
    magnitudes: tuple[float, ...]  # sums of |term|: what rounding scales with
    co2_per_t: float = math.nan


@dataclass
class ReferencePeriodState:
    meters: dict[int, MeterPeriods] = field(default_factory=dict)
    lines: dict[int, LinePeriods] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PERIOD_DROP_REASONS, 0))


def _period(boundaries: Boundaries, kind: int, ts: int) -> tuple[int, int]:
    b = [int(x) for x in boundaries(ts, ts)[kind]]
    i = bisect.bisect_right(b, ts) - 1
    return b[i], b[i + 1]


def _row(line: int, kind: int, p: OpenPeriod, final: bool,
         min_production_t: float | None) -> ReferencePeriod:
    e, el, t, cd, ci = (math.fsum(terms) for terms in p.terms)
    producing = t > 0 if min_production_t is None else (t > 0 and t >= min_production_t)
    ratios = (e / t, el / t) if producing else (math.nan, math.nan)
    if not (math.isfinite(ratios[0]) and math.isfinite(ratios[1])):
        ratios = (math.nan, math.nan)
    carbon = (cd + ci) / t if producing else math.nan
    return ReferencePeriod(line, kind, p.start, p.end, (e, el, t, cd, ci), ratios[0], ratios[1],
                           final, p.late, tuple(math.fsum(map(abs, terms)) for terms in p.terms),
                           carbon if math.isfinite(carbon) else math.nan)


def _settle(state: ReferencePeriodState, meters: MeterTable, line: int, up_to: int | None,
            boundaries: Boundaries, min_production_t: float | None, final: bool,
            drops: dict[str, int]) -> list[ReferencePeriod]:
    """Rule 3 (``final``: up to ``up_to``, in place) or rule 4 (all pending, on copies)."""
    history = state.lines[line]
    opened = history.open if final else {
        key: OpenPeriod(p.start, p.end, [list(t) for t in p.terms], p.late)
        for key, p in history.open.items()}
    out: list[ReferencePeriod] = []
    for meter in [int(m) for m in range(meters.n_meters) if int(meters.line[m]) == line]:
        if meter not in state.meters:
            continue
        mh = state.meters[meter]
        if not final:
            mh = replace(mh, pending=list(mh.pending))  # a copy to walk on
        due = [r for r in mh.pending if up_to is None or r[0] <= up_to]
        mh.pending = mh.pending[len(due):]
        for ts, value, late in due:
            delta = _delta(meters, meter, mh, ts, value)  # type: ignore[arg-type]
            for kind in range(len(PERIOD_KINDS)):
                start, end = _period(boundaries, kind, ts)
                p = opened.setdefault((kind, start), OpenPeriod(start, end))
                if delta == "implausible":
                    continue
                p.late += late
                if delta is not None:
                    p.terms[0].append(float(delta) * float(meters.kgce_per_unit[meter]))
                    p.terms[1].append(float(delta) * float(meters.kwh_per_unit[meter]))
                    p.terms[2].append(float(delta) * float(meters.t_per_unit[meter]))
                    p.terms[3].append(float(delta) * float(meters.co2_direct_per_unit[meter]))
                    p.terms[4].append(float(delta) * float(meters.co2_indirect_per_unit[meter]))
            if delta == "implausible" and final:
                drops["implausible"] += 1
    for key in sorted(opened):
        p = opened[key]
        if not final or (up_to is not None and p.end <= up_to):
            out.append(_row(line, key[0], p, final, min_production_t))
            if final:
                del opened[key]
    if final:
        history.settled = up_to
    return out


def reference_advance_periods(
    state: ReferencePeriodState, grace_ms: int, lateness_ms: int, every_ms: int,
    meters: MeterTable, readings: Readings, boundaries: Boundaries,
    max_pending: int = 1 << 16, now_ms: int | None = None,
    min_production_t: float | None = None,
) -> tuple[list[ReferencePeriod], dict[str, int]]:
    """One call: its rows (finals in settling order, then provisional ones) and drops."""
    drops = dict.fromkeys(PERIOD_DROP_REASONS, 0)
    out: list[ReferencePeriod] = []
    for meter, mh in state.meters.items():
        if not 0 < float(meters.max_rate[meter]) < math.inf:
            mh.suspect = None
    # Rule 1: silent lines.
    if now_ms is not None:
        for line in sorted(state.lines):
            h = state.lines[line]
            if h.arrival is None or now_ms - h.arrival < grace_ms:
                continue
            assert h.newest is not None and h.settled is not None
            up_to = min(h.newest, now_ms)
            if up_to > h.settled:
                out += _settle(state, meters, line, up_to, boundaries, min_production_t, True,
                               drops)
    # Rule 2: messages.
    for meter, message in _messages(readings):
        line = int(meters.line[meter])
        h = state.lines.setdefault(line, LinePeriods())
        mh = state.meters.setdefault(meter, MeterPeriods())
        started = h.newest is not None
        if started:
            assert h.base is not None and h.newest is not None
            h.base = max(h.base, h.newest if now_ms is None else min(h.newest, now_ms))
            watermark = h.base - lateness_ms
        accepted = []
        for ts, value in message:
            if not abs(value) < VALUE_LIMIT:
                drops["implausible"] += 1
            elif started and ts <= h.settled:  # type: ignore[operator]
                drops["period_closed"] += 1
            elif any(p[0] == ts for p in mh.pending):
                drops["duplicate"] += 1
            elif len(mh.pending) >= max_pending:
                drops["pending_overflow"] += 1
            else:
                mh.pending.append((ts, value, started and ts <= watermark))
                mh.pending.sort(key=lambda r: r[0])
                accepted.append(ts)
        if not accepted:
            continue
        h.arrival = now_ms
        h.newest = max(accepted) if h.newest is None else max(h.newest, max(accepted))
        capped = h.newest if now_ms is None else min(h.newest, now_ms)
        h.base = capped if h.base is None else max(h.base, capped)
        up_to = h.base - lateness_ms - grace_ms
        if h.settled is None or up_to > h.settled:
            out += _settle(state, meters, line, up_to, boundaries, min_production_t, True, drops)
    # Rule 4: provisional rows.
    for line in sorted(state.lines):
        h = state.lines[line]
        if h.newest is None:
            continue
        assert h.base is not None
        step = h.base // every_ms
        if h.provisional_step is not None and step <= h.provisional_step:
            continue
        out += _settle(state, meters, line, None, boundaries, min_production_t, False, drops)
        h.provisional_step = step
    for reason, count in drops.items():
        state.drops[reason] += count
    return out, drops
