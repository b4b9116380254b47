"""A slow, plain-Python statement of the batch rule: the oracle for ``close_batches``.

Written from the rule text in ``wattline.kernels.batches`` (and the contract's batch
section) with lists and ``math.fsum``: every entry of a line is kept for ever, and a
batch is summed from scratch when it closes, from exactly the entries it holds. The
property tests feed random logs, cut into calls at random times, to both and require
the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ReferenceLine:
    entries: list[tuple[int, bool, float, float, float, float, float]] = field(
        default_factory=list)
    """(ts, closes, kgce, kwh, t, tCO2 direct, tCO2 indirect) of every entry, in the order
    taken."""
    start_ms: int | None = None


@dataclass
class ReferenceBatches:
    lines: dict[int, ReferenceLine] = field(default_factory=dict)


def reference_batches(
    state: ReferenceBatches, line: list[int], ts_ms: list[int], kgce: list[float],
    kwh: list[float], t: list[float], co2_direct: list[float], co2_indirect: list[float],
) -> list[tuple[int, int, int, float, float, float, float, float, float, float, float]]:
    """One call's entries; the batches closed as (line, close_ms, start_ms, kgce, kwh, t,
    kgce_per_t, kwh_per_t, co2_direct_t, co2_indirect_t, co2_per_t), lines in increasing
    order, each line's in close order."""
    rows = sorted(zip(line, ts_ms, kgce, kwh, t, co2_direct, co2_indirect, strict=True),
                  key=lambda r: (r[0], r[1], r[4] > 0))
    out = []
    for ln, ts, e, el, p, cd, ci in rows:
        history = state.lines.setdefault(ln, ReferenceLine())
        if history.start_ms is None:
            history.start_ms = ts  # the line's first reading opens its first batch
        history.entries.append((ts, p > 0, e, el, p, cd, ci))
        if p <= 0:
            continue
        # Every entry since the previous close (the entries are in order: those after
        # the last closing entry before this one).
        since = []
        for entry in reversed(history.entries[:-1]):
            if entry[1]:
                break
            since.append(entry)
        since.append(history.entries[-1])
        energy = math.fsum(x[2] for x in since)
        electricity = math.fsum(x[3] for x in since)
        direct = math.fsum(x[5] for x in since)
        indirect = math.fsum(x[6] for x in since)
        ke, kw = energy / p, electricity / p
        if not (math.isfinite(ke) and math.isfinite(kw)):
            ke = kw = math.nan
        kc = (direct + indirect) / p
        if not math.isfinite(kc):
            kc = math.nan
        out.append((ln, ts, history.start_ms, energy, electricity, p, ke, kw, direct, indirect,
                    kc))
        history.start_ms = ts
    return out
