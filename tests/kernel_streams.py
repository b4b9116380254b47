"""Random meter streams for the kernel tests: plants, arrival orders, messages, batches.

A stream is built in three steps, each a plain function so a failing example is
easy to read back:

1. ``plant``: lines with meters of several carriers (some of them export meters,
   with negative factors) and production counters, counter or delta mode, with or
   without a rollover, with or without a ``max_rate``;
2. ``true_readings``: each meter's readings in time order (gaps, resets,
   rollovers, idle stretches, negative increments of net energy meters in delta
   mode, values on a 0.25 grid for production so sums are exact), and bad
   register reads among them (a 0, a 32-bit sentinel, a jump, a meter replaced
   by one at another level);
3. ``arrivals``: the order a collector sees them in (jitter within and beyond the
   lateness, duplicates), grouped into single-meter messages and cut into batches
   at message boundaries, each batch with the wall clock it is judged at (none,
   or one that readings may be ahead of, and that may even step back).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np

from wattline.kernels import KernelConfig, MeterTable, Readings

# kgce per unit of a few reference carriers (GB/T 2589 via contract/data/energy.yaml).
CARRIER_KGCE = (0.1229, 1.2143, 0.7143)
# Their tCO2 per unit, (direct, indirect): electricity at a grid factor of 0.5306 kgCO2/kWh,
# natural gas and raw coal burnt on site (the same file's tco2_per_unit).
CARRIER_CO2 = ((0.0, 0.0005306), (0.001994, 0.0), (0.001978, 0.0))


@dataclass(frozen=True)
class Stream:
    config: KernelConfig
    meters: MeterTable
    batches: list[Readings]
    max_pending: int = 1 << 16  # readings a meter may hold waiting for their tick
    now_ms: tuple[int | None, ...] | None = None  # per batch; None: no wall clock at all

    def now_of(self, batch: int) -> int | None:
        return None if self.now_ms is None else self.now_ms[batch]


SENTINEL = float(2**32 - 1)
"""What a gateway reports for a 32-bit register it could not read."""


def plant(rng: random.Random, n_lines: int, meters_per_line: int, step_ms: int = 500,
          max_rate_share: float = 0.0, export_share: float = 0.2) -> MeterTable:
    """``max_rate_share`` of the meters get a ``max_rate``: about what their readings
    register at most (900 units a reading, a reading every ``step_ms``), a third of
    it (many honest readings judged implausible) or three times it, or infinity.
    ``export_share`` of the energy meters are export meters (negative factors)."""
    line, kgce, kwh, tonnes, delta, rollover, max_rate = [], [], [], [], [], [], []
    direct, indirect = [], []
    typical = 900.0 * 3_600_000 / step_ms
    for ln in range(n_lines):
        for k in range(meters_per_line):
            line.append(ln)
            is_production = k == 0 or rng.random() < 0.2
            if is_production:
                kgce.append(0.0)
                kwh.append(0.0)
                tonnes.append(rng.choice((1.0, 0.001)))  # t or kg
                direct.append(0.0)
                indirect.append(0.0)
            else:
                carrier = rng.randrange(len(CARRIER_KGCE))
                # An export meter (power or recovered gas sent out) has negative factors.
                sign = -1.0 if rng.random() < export_share else 1.0
                kgce.append(sign * CARRIER_KGCE[carrier])
                kwh.append(sign if carrier == 0 else 0.0)
                tonnes.append(0.0)
                direct.append(sign * CARRIER_CO2[carrier][0])
                indirect.append(sign * CARRIER_CO2[carrier][1])
            delta.append(rng.random() < 0.2)
            rollover.append(rng.choice((0.0, 0.0, 5000.0)))
            judged = rng.random() < max_rate_share
            max_rate.append(rng.choice((typical / 3, typical, 3 * typical, float("inf")))
                            if judged else 0.0)
    return MeterTable(
        line=np.array(line, dtype=np.int32), kgce_per_unit=np.array(kgce),
        kwh_per_unit=np.array(kwh), t_per_unit=np.array(tonnes),
        delta_mode=np.array(delta, dtype=np.bool_), rollover=np.array(rollover),
        n_lines=n_lines, max_rate=np.array(max_rate), co2_direct_per_unit=np.array(direct),
        co2_indirect_per_unit=np.array(indirect),
    )


def true_readings(
    rng: random.Random, meters: MeterTable, t0_ms: int, n_per_meter: int, step_ms: int,
    reset_rate: float, bad_read_rate: float = 0.0,
) -> list[tuple[int, int, float]]:
    """(meter, ts_ms, value) per meter in time order, then all meters merged by time.

    ``bad_read_rate``: the share of readings that are bad reads instead (see
    ``bad_read``); some of them are a meter replaced, whose register goes on from
    another level."""
    out: list[tuple[int, int, float]] = []
    for m in range(meters.n_meters):
        is_production = meters.t_per_unit[m] > 0
        ts = t0_ms + rng.randrange(0, step_ms)
        value = 0.0
        for _ in range(n_per_meter):
            if rng.random() < bad_read_rate:
                ts += rng.choice((step_ms, step_ms // 3 or 1))
                if rng.random() < 0.2 and not meters.delta_mode[m]:
                    value += rng.choice((1e7, 3e9))  # replaced: a new level from here on
                    out.append((m, ts, value))
                else:
                    out.append((m, ts, bad_read(rng, value)))
                continue
            ts += rng.choice((step_ms, step_ms, step_ms // 3 or 1, 5 * step_ms, 40 * step_ms))
            idle = rng.random() < 0.25
            if is_production:
                increment = 0.0 if idle else 0.25 * rng.randrange(0, 12)
            else:
                increment = 0.0 if idle else rng.uniform(0.0, 900.0)
            if meters.delta_mode[m]:
                # A net meter of a carrier (e.g. electricity with export) may go negative.
                exported = not is_production and rng.random() < 0.15
                reading = -increment if exported else increment
            else:
                value += increment
                if meters.rollover[m] > 0 and value >= meters.rollover[m]:
                    value -= meters.rollover[m]  # the register wraps
                elif rng.random() < reset_rate:
                    value = increment  # the register restarts from zero
                reading = value
            out.append((m, ts, reading))
    out.sort(key=lambda r: r[1])
    return out


def bad_read(rng: random.Random, value: float) -> float:
    """A wrong register read of a meter now at ``value``: 0, the 32-bit sentinel, a jump
    far up or (a delta-mode meter's garbage) far down."""
    return rng.choice((0.0, SENTINEL, value + 1e12, -1e12))


def arrivals(
    rng: random.Random, readings: list[tuple[int, int, float]], jitter_ms: int,
    duplicate_rate: float,
) -> list[tuple[int, int, float]]:
    """The order a collector sees the readings in: jittered, with some sent twice."""
    keyed = [(ts + rng.randrange(0, jitter_ms + 1), i, (m, ts, v))
             for i, (m, ts, v) in enumerate(readings)]
    for key, i, reading in list(keyed):
        if rng.random() < duplicate_rate:
            keyed.append((key + rng.randrange(0, jitter_ms + 1), i, reading))
    keyed.sort()
    return [reading for _, _, reading in keyed]


def messages_and_batches(
    rng: random.Random, arrived: list[tuple[int, int, float]], n_batches: int
) -> list[Readings]:
    """Group consecutive readings of one meter into messages; cut between messages."""
    message_ids: list[int] = []
    message = -1
    previous_meter = None
    for m, _, _ in arrived:
        if m != previous_meter or rng.random() < 0.5:
            message += 1
        message_ids.append(message)
        previous_meter = m
    starts = [i for i in range(1, len(arrived)) if message_ids[i] != message_ids[i - 1]]
    cuts = sorted(rng.sample(starts, min(len(starts), max(0, n_batches - 1))))
    bounds = [0, *cuts, len(arrived)]
    batches = []
    for a, b in itertools.pairwise(bounds):
        chunk = arrived[a:b]
        batches.append(Readings.from_arrays(
            [r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk],
            message_ids[a:b],
        ))
    return batches


def random_stream(
    seed: int, *, n_lines: int, meters_per_line: int, n_per_meter: int, emit_every_ms: int,
    windows: tuple[int, ...], lateness_ms: int, jitter_ms: int, duplicate_rate: float,
    reset_rate: float, n_batches: int, min_production_t: float | None = None,
    max_pending: int = 1 << 16, max_rate_share: float = 0.0, bad_read_rate: float = 0.0,
    wall_clock: str = "none",
) -> Stream:
    """``wall_clock``: ``none`` (no ``now_ms``), ``same`` (one ``now_ms`` for every batch,
    somewhere inside the stream's time span) or ``moving`` (per batch, about the newest
    reading so far, from a few ticks behind it (readings ahead of the clock) to ahead
    of it, sometimes stepping back)."""
    rng = random.Random(seed)
    config = KernelConfig(
        emit_every_ms=emit_every_ms,
        windows_ms=tuple(w * emit_every_ms for w in windows),
        allowed_lateness_ms=lateness_ms,
        min_production_t=min_production_t,
    )
    step_ms = max(1, emit_every_ms // 2)
    meters = plant(rng, n_lines, meters_per_line, step_ms, max_rate_share)
    t0 = 1_732_406_400_000 + rng.randrange(0, 10 * emit_every_ms)
    readings = true_readings(rng, meters, t0, n_per_meter, step_ms, reset_rate, bad_read_rate)
    arrived = arrivals(rng, readings, jitter_ms, duplicate_rate)
    batches = messages_and_batches(rng, arrived, n_batches)
    return Stream(config, meters, batches, max_pending,
                  wall_clocks(rng, batches, wall_clock, emit_every_ms))


def wall_clocks(rng: random.Random, batches: list[Readings], kind: str,
                emit_every_ms: int) -> tuple[int | None, ...] | None:
    """The ``now_ms`` of each batch (see ``random_stream``)."""
    if kind == "none" or not batches:
        return None
    lo = min(int(b.ts_ms.min()) for b in batches if len(b))
    hi = max(int(b.ts_ms.max()) for b in batches if len(b))
    if kind == "same":
        now = rng.randrange(lo - 5 * emit_every_ms, hi + emit_every_ms)
        return tuple(now for _ in batches)
    assert kind == "moving"
    out: list[int | None] = []
    newest = lo
    for b in batches:
        if len(b):
            newest = max(newest, int(b.ts_ms.max()))
        if rng.random() < 0.1:
            out.append(None)  # an uncapped call among capped ones
        else:
            out.append(newest + rng.randrange(-12 * emit_every_ms, 2 * emit_every_ms))
    return tuple(out)


def concatenate(batches: list[Readings]) -> Readings:
    """One batch holding all of ``batches`` (messages keep their numbers)."""
    return Readings.from_arrays(
        np.concatenate([b.meter for b in batches]), np.concatenate([b.ts_ms for b in batches]),
        np.concatenate([b.value for b in batches]), np.concatenate([b.message for b in batches]),
    )
