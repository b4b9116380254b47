"""``wattline bench kernels``: the intensity kernel against what anyone would write instead.

One synthetic plant (``lines`` lines of ``meters_per_line`` meters, one reading per
meter per second, three windows) and one stream of its readings, measured in one
run:

- **full**: ``wattline.kernels.advance`` as the daemon calls it, batch by batch,
  on one thread (counter deltas, lateness and ordering, watermarks and ticks,
  windows, intensity);
- **bare**: a per-line sliding-window sum written here in Numba, the least any
  streaming kernel must do per reading; ``full / bare`` is the figure to steer by;
- **reference**: the plain-Python oracle (``wattline.kernels.naive``) on the
  readings of the first few lines, checked against the kernel on the same readings;
- **vectorised**: the same computation in NumPy over the whole stream at once
  (sort, diff, bincount, cumulative sums), as a data scientist would write it,
  checked against the kernel's ticks;
- the first call's time in a fresh process with a warm compile cache, and memory;
- **stages**: the batch and period kernels' cost against the windows-only kernel
  (``wattline.benchmarks.kernel_stages``), the stages taking turns.

A baseline that disagrees with the kernel keeps its figure but is flagged, in the
table and in the JSON (``*_agrees``).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numba as nb
import numpy as np

from wattline.benchmarks.kernel_stages import report_stages, run_stage, time_stages
from wattline.benchmarks.report import BenchResult, machine, rate
from wattline.contract.reference_data import load_reference
from wattline.kernels import (
    KernelConfig,
    MeterTable,
    Readings,
    StreamState,
    Ticks,
    advance,
    new_state,
)
from wattline.kernels.naive import ReferenceState, as_ticks, reference_advance
from wattline.kernels.periods import PeriodConfig
from wattline.kernels.state import DROP_REASONS, QUANTITIES

BATCH_READINGS = 100_000
"""Readings per ``advance`` call: the daemon's default batch."""
T0_MS = 1_732_406_400_000
"""When the benchmark stream starts (2024-11-24 00:00 UTC)."""
ENERGY_CARRIERS = ("electricity", "natural_gas", "raw_coal")
"""Carriers of a line's energy meters, in turn; meter 0 of a line is its production."""
REGISTER_COUNTS = 2**32
ROLLOVER_KWH = REGISTER_COUNTS * 0.01
"""A 32-bit register counting 0.01 kWh wraps here (each line's meter 1 has one)."""
RETRY_SHARE = 0.01
"""Share of readings that reach the collector late (a gateway's retry), by up to a
third of the allowed lateness: they overtake later readings of the same meter."""
AGREE_RTOL = 1e-9
"""Agreement: every value within this fraction of its column's largest magnitude."""


@dataclass(frozen=True)
class BenchPlant:
    """The benchmark's plant (its meters and kernel settings) and its readings stream."""

    config: KernelConfig
    meters: MeterTable
    readings: Readings
    meters_per_line: int

    @property
    def span_s(self) -> float:
        """Plant time the stream covers."""
        return float(self.readings.ts_ms.max() - self.readings.ts_ms.min()) / 1000.0


def make_plant(readings: int, lines: int, meters_per_line: int, seed: int = 1) -> BenchPlant:
    """A plant whose meters each read once a second, and ``readings`` of its readings.

    Meter 0 of each line totalises the line's product in tonnes (0.001 t steps);
    the others count energy of a carrier each (electricity, natural gas, coal in
    turn, 0.01-unit steps), and meter 1, the line's electricity incomer, wraps at
    its 32-bit register's rollover, some of them during the stream. Registers
    start where years of service left them. Each line's gateway polls its meters
    in turn once a second, at its own phase, with a little clock jitter; readings
    arrive in the order a collector sees them (network latency, and a few gateway
    retries that arrive seconds late, overtaking the same meter's next readings,
    all within the allowed lateness). Every reading is its own MQTT message.
    """
    if readings < 1 or lines < 1 or meters_per_line < 1:
        raise ValueError("readings, lines and meters_per_line must be at least 1")
    rng = np.random.default_rng(seed)
    config = KernelConfig(emit_every_ms=10_000, windows_ms=(900_000, 3_600_000, 86_400_000),
                          allowed_lateness_ms=30_000)
    meters = _meter_table(lines, meters_per_line)
    n_meters = meters.n_meters
    seconds = -(-readings // n_meters)

    # Registers, second by second (rows) and meter by meter (columns).
    is_production = meters.t_per_unit > 0
    per_second = np.where(is_production, rng.uniform(0.001, 0.003, n_meters),
                          rng.uniform(0.5, 2.0, n_meters))
    start = rng.uniform(1e4, 1e6, n_meters)
    wraps = meters.rollover > 0
    # An incomer this close to its rollover wraps about halfway through the stream.
    start[wraps] = ROLLOVER_KWH - rng.uniform(0.0, 2.5 * seconds, int(wraps.sum()))
    grid = rng.uniform(0.5, 1.5, (seconds, n_meters)) * per_second
    grid[0] = 0.0
    # Registers count whole steps; the incomers' 32-bit registers wrap.
    step = np.where(is_production, 0.001, 0.01)
    counts = np.floor((start + np.cumsum(grid, axis=0)) / step).astype(np.int64)
    counts[:, wraps] %= REGISTER_COUNTS
    value = (counts * step).reshape(-1)[:readings]

    meter = np.tile(np.arange(n_meters, dtype=np.int32), seconds)[:readings]
    second = np.repeat(np.arange(seconds, dtype=np.int64), n_meters)[:readings]
    # Each line's gateway polls its meters one after another, at its own phase.
    poll_gap = max(1, min(20, 900 // meters_per_line))
    phase = (rng.integers(0, 1000, lines)[meters.line]
             + np.arange(n_meters) % meters_per_line * poll_gap)
    ts = T0_MS + second * 1000 + phase[meter] + rng.integers(-5, 6, readings)
    latency = rng.exponential(30.0, readings).astype(np.int64)
    retried = rng.random(readings) < RETRY_SHARE
    latency[retried] += rng.integers(1000, config.allowed_lateness_ms // 3, int(retried.sum()))
    arrival = np.argsort(ts + latency, kind="stable")
    return BenchPlant(config, meters,
                      Readings.from_arrays(meter[arrival], ts[arrival], value[arrival]),
                      meters_per_line)


def _meter_table(lines: int, meters_per_line: int) -> MeterTable:
    """Meter ``line * meters_per_line + k``: production for k = 0, else a carrier's meter."""
    reference = load_reference()
    grid = reference.national_grid_factor.kgco2_per_kwh
    kgce_of = {name: c.kgce_per_unit for name, c in reference.carriers.items()}
    n_meters = lines * meters_per_line
    k = np.arange(n_meters) % meters_per_line
    carrier = np.array(ENERGY_CARRIERS)[(k - 1) % len(ENERGY_CARRIERS)]
    is_production = k == 0
    kgce = np.array([kgce_of[c] for c in carrier])
    co2 = np.where(is_production, 0.0,
                   [reference.carriers[c].co2_per_unit(grid) for c in carrier])
    scope = np.array([reference.carriers[c].scope for c in carrier])
    return MeterTable(
        line=(np.arange(n_meters) // meters_per_line).astype(np.int32),
        kgce_per_unit=np.where(is_production, 0.0, kgce),
        kwh_per_unit=np.where(~is_production & (carrier == "electricity"), 1.0, 0.0),
        t_per_unit=is_production.astype(np.float64),
        delta_mode=np.zeros(n_meters, dtype=np.bool_),
        rollover=np.where(k == 1, ROLLOVER_KWH, 0.0),
        n_lines=lines,
        co2_direct_per_unit=np.where(scope == 1, co2, 0.0),
        co2_indirect_per_unit=np.where(scope == 2, co2, 0.0),
    )


def first_lines(plant: BenchPlant, n_lines: int) -> BenchPlant:
    """The plant cut down to its first ``n_lines`` lines and their readings (same order).

    Lines are independent, so the kernel's ticks for these lines are the same
    whether it sees the other lines' readings or not.
    """
    n_meters = n_lines * plant.meters_per_line
    mt = plant.meters
    meters = MeterTable(line=mt.line[:n_meters], kgce_per_unit=mt.kgce_per_unit[:n_meters],
                        kwh_per_unit=mt.kwh_per_unit[:n_meters],
                        t_per_unit=mt.t_per_unit[:n_meters],
                        delta_mode=mt.delta_mode[:n_meters], rollover=mt.rollover[:n_meters],
                        n_lines=n_lines,
                        co2_direct_per_unit=mt.co2_direct_per_unit[:n_meters],
                        co2_indirect_per_unit=mt.co2_indirect_per_unit[:n_meters])
    r = plant.readings
    keep = r.meter < n_meters
    readings = Readings.from_arrays(r.meter[keep], r.ts_ms[keep], r.value[keep])
    return BenchPlant(plant.config, meters, readings, plant.meters_per_line)


def batches(readings: Readings, size: int) -> list[Readings]:
    """The stream cut into batches of ``size`` readings (views, not copies)."""
    return [
        Readings(readings.meter[a:a + size], readings.ts_ms[a:a + size],
                 readings.value[a:a + size], readings.message[a:a + size])
        for a in range(0, len(readings), size)
    ]


def run_full(plant: BenchPlant, stream: list[Readings]) -> tuple[float, Ticks, StreamState]:
    """``advance`` over every batch from a fresh state: seconds taken, all ticks, final state.

    The state is allocated before the clock starts, as the daemon does at start-up.
    """
    state = new_state(plant.config, plant.meters.n_lines, plant.meters.n_meters)
    started = time.perf_counter()
    out = [advance(state, plant.config, plant.meters, b) for b in stream]
    seconds = time.perf_counter() - started
    return seconds, joined(out, len(plant.config.windows_ms)), state


def joined(parts: list[Ticks], n_windows: int) -> Ticks:
    """Several ``advance`` calls' ticks as one."""
    def cat(name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        if not arrays:
            shape = (0, n_windows) if name not in ("line", "tick_ms") else (0,)
            return np.empty(shape, dtype=np.int64 if name == "tick_ms" else np.float64)
        return np.concatenate(arrays)

    return Ticks(
        line=cat("line"), tick_ms=cat("tick_ms"), energy_kgce=cat("energy_kgce"),
        electricity_kwh=cat("electricity_kwh"), production_t=cat("production_t"),
        kgce_per_t=cat("kgce_per_t"), kwh_per_t=cat("kwh_per_t"),
        drops=(np.sum([p.drops for p in parts], axis=0) if parts
               else np.zeros(len(DROP_REASONS), np.int64)),
        co2_direct_t=cat("co2_direct_t"), co2_indirect_t=cat("co2_indirect_t"),
        co2_per_t=cat("co2_per_t"),
    )


@nb.njit(cache=True)
def _bare_window_sums(line_of_meter, meter, ts, value, n_lines, emit_every, window_ticks):
    """The floor: per reading, a counter delta against the meter's last value, added to
    its line's tick bucket and to one running sum per window; per tick, each window
    drops the bucket that leaves it. No ordering, lateness, watermarks, rollover,
    carriers, compensation or intensity.

    Returns (sums[line, window] at each line's newest tick, that tick, a checksum of
    the first window's sum at every tick, standing in for the output).
    """
    ring_len = window_ticks.max()
    n_windows = window_ticks.shape[0]
    ring = np.zeros((n_lines, ring_len))
    sums = np.zeros((n_lines, n_windows))
    current = np.full(n_lines, np.iinfo(np.int64).min, dtype=np.int64)
    last = np.full(line_of_meter.shape[0], np.nan)
    checksum = 0.0
    # Indexes are unsigned, as in the full kernel, so that neither pays Numba's test
    # for a negative index (worth 9 % here, 30 % in the full kernel).
    for i in range(meter.shape[0]):
        iu = np.uint64(i)
        m = np.uint64(meter[iu])
        v = value[iu]
        delta = v - last[m]
        last[m] = v
        if delta != delta:  # the meter's first reading: its baseline
            continue
        line = np.uint64(line_of_meter[m])
        tick = -((-ts[iu]) // emit_every)  # a delta at t counts at tick ceil(t / E)
        if current[line] == np.iinfo(np.int64).min:
            current[line] = tick
        while current[line] < tick:
            # Tick k enters every window; tick k - span leaves the window of that span.
            # A slot never entered holds zero, so a young line subtracts nothing.
            k = current[line] + 1
            for w in range(n_windows):
                sums[line, np.uint64(w)] -= ring[line, np.uint64((k - window_ticks[w]) % ring_len)]
            ring[line, np.uint64(k % ring_len)] = 0.0
            current[line] = k
            checksum += sums[line, 0]
        ring[line, np.uint64(tick % ring_len)] += delta
        for w in range(n_windows):
            if tick > current[line] - window_ticks[w]:
                sums[line, np.uint64(w)] += delta
    return sums, current, checksum


def run_bare(plant: BenchPlant) -> tuple[float, np.ndarray, np.ndarray]:
    """The bare kernel over the whole stream in one call: seconds, sums, newest ticks."""
    r = plant.readings
    started = time.perf_counter()
    sums, current, _ = _bare_window_sums(plant.meters.line, r.meter, r.ts_ms, r.value,
                                         plant.meters.n_lines, plant.config.emit_every_ms,
                                         plant.config.window_ticks)
    return time.perf_counter() - started, sums, current


@dataclass(frozen=True)
class VectorisedWindows:
    """NumPy's answer: every line's window sums and intensities at every tick.

    ``sums[line, tick - first_tick, window, quantity]`` (quantities as in
    ``QUANTITIES``), ``kgce_per_t`` and ``kwh_per_t`` as ``[line, tick - first_tick,
    window]`` with NaN where the window is idle.
    """

    first_tick: int
    sums: np.ndarray
    kgce_per_t: np.ndarray
    kwh_per_t: np.ndarray


def vectorised_windows(plant: BenchPlant) -> VectorisedWindows:
    """The window semantics (docs/semantics.md) vectorised over the whole stream: all
    of it is known, so there is no watermark and nothing is late (the benchmark stream has no late
    readings); duplicates are dropped by sorting."""
    r, mt, cfg = plant.readings, plant.meters, plant.config
    order = np.lexsort((r.ts_ms, r.meter))
    meter, ts, value = r.meter[order], r.ts_ms[order], r.value[order]
    keep = np.r_[True, (meter[1:] != meter[:-1]) | (ts[1:] != ts[:-1])]
    meter, ts, value = meter[keep], ts[keep], value[keep]
    previous = np.r_[0.0, value[:-1]]
    delta = value - previous
    roll = mt.rollover[meter]
    delta = np.where(delta < 0, np.where(roll > 0, value + roll - previous, value), delta)
    delta_mode = mt.delta_mode[meter]
    delta = np.where(delta_mode, value, delta)
    counts = np.r_[False, meter[1:] == meter[:-1]] | delta_mode  # a first reading is a baseline
    meter, ts, delta = meter[counts], ts[counts], delta[counts]
    tick = -(-ts // cfg.emit_every_ms)
    first = int(tick.min())
    n_ticks = int(tick.max()) - first + 1
    cell = mt.line[meter].astype(np.int64) * n_ticks + (tick - first)
    size = mt.n_lines * n_ticks
    q = len(QUANTITIES)
    buckets = np.stack([
        np.bincount(cell, weights=delta * factor[meter], minlength=size)
        for factor in (mt.kgce_per_unit, mt.kwh_per_unit, mt.t_per_unit,
                       mt.co2_direct_per_unit, mt.co2_indirect_per_unit)
    ], axis=-1).reshape(mt.n_lines, n_ticks, q)
    running = np.concatenate([np.zeros((mt.n_lines, 1, q)), np.cumsum(buckets, axis=1)], axis=1)
    sums = np.empty((mt.n_lines, n_ticks, len(cfg.windows_ms), q))
    for w, span in enumerate(cfg.window_ticks.tolist()):
        leaving = np.maximum(np.arange(1, n_ticks + 1) - span, 0)
        sums[:, :, w, :] = running[:, 1:, :] - running[:, leaving, :]
    production = sums[..., 2]
    if cfg.min_production_t is None:
        producing = production > 0
    else:
        producing = production >= cfg.min_production_t
    with np.errstate(divide="ignore", invalid="ignore"):
        kgce_per_t = np.where(producing, sums[..., 0] / production, np.nan)
        kwh_per_t = np.where(producing, sums[..., 1] / production, np.nan)
    return VectorisedWindows(first, sums, kgce_per_t, kwh_per_t)


@dataclass(frozen=True)
class Agreement:
    """Whether a baseline's numbers match the kernel's, and by how much they differ."""

    agrees: bool
    rows: int  # kernel tick rows compared
    max_rel_diff: float | None  # largest difference relative to its column's largest
    # magnitude (inf: NaN in different places); None when nothing could be compared
    problem: str = ""  # what went wrong, when it did


def _column_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got - want| relative to the column's largest |want|; inf if NaN differs."""
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return float("inf")
    finite = ~np.isnan(want)
    if not finite.any():
        return 0.0
    scale = float(np.abs(want[finite]).max()) or 1.0
    return float(np.abs(got[finite] - want[finite]).max()) / scale


def kernel_vs_vectorised(plant: BenchPlant, ticks: Ticks, vec: VectorisedWindows) -> Agreement:
    """Every kernel row against NumPy's sums and intensities at the same line and tick.

    Also checks that the kernel emitted every tick it owed: for each line, ticks
    one ``emit_every`` apart up to its final watermark.
    """
    cfg, mt = plant.config, plant.meters
    n = len(ticks)
    if n == 0:
        return Agreement(False, 0, None, "the kernel emitted no ticks")
    newest = np.full(mt.n_lines, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(newest, mt.line[plant.readings.meter], plant.readings.ts_ms)
    order = np.lexsort((ticks.tick_ms, ticks.line))
    by_line, by_tick = ticks.line[order], ticks.tick_ms[order]
    line_ends = np.r_[np.flatnonzero(np.diff(by_line)), n - 1]
    owed = (newest - cfg.allowed_lateness_ms) // cfg.emit_every_ms * cfg.emit_every_ms
    same_line = by_line[1:] == by_line[:-1]
    if not (np.unique(by_line).size == mt.n_lines
            and np.all(np.diff(by_tick)[same_line] == cfg.emit_every_ms)
            and np.array_equal(by_tick[line_ends], owed[by_line[line_ends]])):
        return Agreement(False, n, None,
                         "the kernel's ticks are not every line's ticks up to its watermark")
    tick = ticks.tick_ms // cfg.emit_every_ms - vec.first_tick
    inside = (tick >= 0) & (tick < vec.sums.shape[1])
    early = np.stack([ticks.energy_kgce, ticks.electricity_kwh, ticks.production_t])
    if np.any(early[:, ~inside] != 0.0):
        return Agreement(False, n, None, "kernel sums before the first delta")
    li, ti = ticks.line[inside], tick[inside]
    diff = max(
        _column_diff(getattr(ticks, q)[inside], vec.sums[li, ti, :, k])
        for k, q in enumerate(QUANTITIES)
    )
    diff = max(diff, _column_diff(ticks.kgce_per_t[inside], vec.kgce_per_t[li, ti]),
               _column_diff(ticks.kwh_per_t[inside], vec.kwh_per_t[li, ti]))
    agrees = diff <= AGREE_RTOL
    return Agreement(agrees, n, diff, "" if agrees else f"values differ by {diff:.3g}")


def kernel_vs_reference(kernel: Ticks, reference: Ticks) -> Agreement:
    """The same rows, in the same order, with the same values (to ``AGREE_RTOL``)."""
    n = len(kernel)
    if not (np.array_equal(kernel.line, reference.line)
            and np.array_equal(kernel.tick_ms, reference.tick_ms)):
        return Agreement(False, n, None, "different tick rows")
    if n == 0:
        return Agreement(False, 0, None, "no tick rows to compare")
    diff = max(_column_diff(getattr(kernel, c), getattr(reference, c))
               for c in (*QUANTITIES, "kgce_per_t", "kwh_per_t"))
    same_drops = np.array_equal(kernel.drops, reference.drops)
    agrees = diff <= AGREE_RTOL and same_drops
    problem = "" if agrees else ("different drops" if not same_drops
                                 else f"values differ by {diff:.3g}")
    return Agreement(agrees, n, diff, problem)


def run_reference(plant: BenchPlant) -> tuple[float, Ticks]:
    """The plain-Python reference over the plant's stream, in the daemon's batches."""
    state = ReferenceState()
    started = time.perf_counter()
    emitted = []
    for b in batches(plant.readings, BATCH_READINGS):
        emitted.extend(reference_advance(state, plant.config, plant.meters, b))
    seconds = time.perf_counter() - started
    return seconds, as_ticks(emitted, len(plant.config.windows_ms), state.drops)


def kernel_peak_alloc_mb(plant: BenchPlant, stream: list[Readings]) -> float:
    """Peak NumPy memory ``advance`` allocates (state + one batch's output), by tracemalloc.

    The input stream is allocated before tracing starts, so this depends on the
    plant's size and the batch size, not on the stream's length.
    """
    tracemalloc.start()
    try:
        state = new_state(plant.config, plant.meters.n_lines, plant.meters.n_meters)
        peak = 0
        for b in stream:
            tracemalloc.reset_peak()
            advance(state, plant.config, plant.meters, b)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        return peak / 2**20
    finally:
        tracemalloc.stop()


_FIRST_CALL = """\
import time
started = time.perf_counter()
import numpy as np
from wattline.kernels import KernelConfig, MeterTable, Readings, advance, new_state
config = KernelConfig()
meters = MeterTable(line=np.zeros(1, np.int32), kgce_per_unit=np.ones(1), kwh_per_unit=np.ones(1),
                    t_per_unit=np.zeros(1), delta_mode=np.zeros(1, bool), rollover=np.zeros(1),
                    n_lines=1)
readings = Readings.from_arrays([0, 0], [1_732_406_400_000, 1_732_406_500_000], [1.0, 2.0])
advance(new_state(config, 1, 1), config, meters, readings)
print(time.perf_counter() - started)
"""


def first_call_seconds() -> float:
    """Import plus the first ``advance`` call in a fresh process, compile cache warm.

    One run first makes sure the cache is warm; the second one is timed.
    """
    subprocess.run([sys.executable, "-c", _FIRST_CALL], check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-c", _FIRST_CALL], check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def run_kernel_bench(
    readings: int = 10_000_000,
    lines: int = 1000,
    meters_per_line: int = 10,
    reference_readings: int = 200_000,
    repeats: int = 3,
    seed: int = 1,
    stage_rounds: int = 3,
    period_grace_s: float = 7200.0,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Every measurement on one stream; the best of ``repeats`` runs for the Numba kernels,
    the best of ``stage_rounds`` alternating rounds for each stage (``kernel_stages``), the
    periods kernel with ``period_grace_s``.

    The reference runs on the readings of the first lines, as many lines as make
    about ``reference_readings`` readings (at least one), so that it emits ticks and
    slides windows like the kernel does, at its own slow pace.
    """
    began = time.perf_counter()
    progress(f"generating {readings:,} readings: {lines:,} lines x {meters_per_line} meters, "
             "1 reading per meter per second ...")
    plant = make_plant(readings, lines, meters_per_line, seed)
    stream = batches(plant.readings, BATCH_READINGS)
    progress(f"  {plant.span_s:,.0f} s of plant time, in {len(stream)} batches "
             f"({time.perf_counter() - began:.1f} s)")
    progress("compiling, or loading the compile cache ...")
    tiny = make_plant(2_000, 2, 3)
    tiny_stream = batches(tiny.readings, 500)
    run_full(tiny, tiny_stream)
    run_bare(tiny)
    period_config = PeriodConfig(grace_ms=round(period_grace_s * 1000),
                                 allowed_lateness_ms=plant.config.allowed_lateness_ms)
    run_stage("all", tiny.config, tiny.meters, tiny_stream, period_config)

    full_s: list[float] = []
    bare_s: list[float] = []
    for i in range(repeats):
        progress(f"full kernel pipeline, run {i + 1}/{repeats} ...")
        seconds, ticks, state = run_full(plant, stream)
        full_s.append(seconds)
        progress(f"bare sliding-window sum, run {i + 1}/{repeats} ...")
        bare_s.append(run_bare(plant)[0])
    stages = time_stages(plant.config, plant.meters, stream, stage_rounds, period_config,
                         progress)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    progress("kernel memory (tracemalloc) ...")
    alloc_mb = kernel_peak_alloc_mb(plant, stream)
    state_mb = sum(a.nbytes for a in vars(state).values() if isinstance(a, np.ndarray)) / 2**20

    ref_lines = max(1, min(lines, round(lines * reference_readings / readings)))
    small = first_lines(plant, ref_lines)
    progress(f"plain-Python reference on the {len(small.readings):,} readings of the first "
             f"{ref_lines} line(s) ...")
    reference_s, reference_ticks = run_reference(small)
    _, small_ticks, _ = run_full(small, batches(small.readings, BATCH_READINGS))
    ref_agree = kernel_vs_reference(small_ticks, reference_ticks)

    progress("NumPy vectorised baseline on the whole stream ...")
    started = time.perf_counter()
    vec = vectorised_windows(plant)
    vectorised_s = time.perf_counter() - started
    vec_agree = kernel_vs_vectorised(plant, ticks, vec)
    del vec

    progress("first call in a fresh process (warm compile cache) ...")
    first_call_s = first_call_seconds()
    progress(f"done in {time.perf_counter() - began:.0f} s")

    full = readings / min(full_s)
    bare = readings / min(bare_s)
    reference = len(small.readings) / reference_s
    vectorised = readings / vectorised_s
    drops = dict(zip(DROP_REASONS, ticks.drops.tolist(), strict=True))
    result = _result(
        full=full, bare=bare, reference=reference, vectorised=vectorised,
        ref_agree=ref_agree, vec_agree=vec_agree, first_call_s=first_call_s,
        state_mb=state_mb, alloc_mb=alloc_mb, peak_rss_mb=peak_rss_mb, drops=drops,
        params={
            "readings": readings, "lines": lines, "meters_per_line": meters_per_line,
            "reference_readings": len(small.readings), "reference_lines": ref_lines,
            "windows": [_window_name(w) for w in plant.config.windows_ms],
            "emit_every_s": plant.config.emit_every_ms / 1000,
            "allowed_lateness_s": plant.config.allowed_lateness_ms / 1000,
            "batch_readings": BATCH_READINGS, "repeats": repeats, "seed": seed,
            "span_s": round(plant.span_s, 1), "tick_rows": len(ticks),
        },
    )
    report_stages(result, stages, readings, min(bare_s), period_grace_s)
    return result


def _result(*, full: float, bare: float, reference: float, vectorised: float,
            ref_agree: Agreement, vec_agree: Agreement, first_call_s: float, state_mb: float,
            alloc_mb: float, peak_rss_mb: float, drops: dict[str, int],
            params: dict[str, object]) -> BenchResult:
    """The table rows, notes and JSON figures of one run."""
    def flagged(figure: str, agreement: Agreement) -> str:
        return figure if agreement.agrees else f"{figure} (DISAGREES)"

    def verdict(agreement: Agreement) -> str:
        return "yes" if agreement.agrees else "NO"

    p = params
    result = BenchResult()
    result.row("full kernel pipeline (advance)", rate(full), "1.00")
    result.row("bare per-line sliding-window sum (Numba)", rate(bare), f"{full / bare:.2f}",
               "floor")
    result.row("plain-Python reference", flagged(rate(reference), ref_agree),
               f"{full / reference:,.0f}x", verdict(ref_agree))
    result.row("NumPy vectorised, whole stream", flagged(rate(vectorised), vec_agree),
               f"{full / vectorised:,.1f}x", verdict(vec_agree))
    result.row("first call, fresh process, warm cache", f"{first_call_s:.2f} s")
    result.row("kernel state", f"{state_mb:,.1f} MiB")
    result.row("kernel peak allocation (tracemalloc)", f"{alloc_mb:,.1f} MiB")
    result.row("peak RSS of the process (getrusage)", f"{peak_rss_mb:,.0f} MiB")
    result.notes += [
        f"stream: {p['readings']:,} readings, {p['lines']:,} lines x {p['meters_per_line']} "
        f"meters, {p['span_s']:,.0f} s of plant time, windows "
        f"{'/'.join(map(str, p['windows']))}, {p['tick_rows']:,} tick rows",
        f"full: advance over batches of {p['batch_readings']:,} readings, 1 thread, best of "
        f"{p['repeats']}; full/bare = {full / bare:.2f} (target >= 0.5)",
        f"agree: {verdict(ref_agree)} (plain-Python reference vs kernel: "
        f"{p['reference_readings']:,} readings of {p['reference_lines']} line(s), "
        f"{ref_agree.rows:,} tick rows, max relative difference {_diff_text(ref_agree)}"
        f"{'; ' + ref_agree.problem if ref_agree.problem else ''})",
        f"agree: {verdict(vec_agree)} (NumPy vectorised vs kernel: {vec_agree.rows:,} tick "
        f"rows, max relative difference {_diff_text(vec_agree)}"
        f"{'; ' + vec_agree.problem if vec_agree.problem else ''})",
        "first call: import + compile-cache load + one advance, in a fresh process",
        "memory: kernel peak allocation is the state plus one batch's output (tracemalloc, "
        "NumPy arrays), set by the plant's size, not the stream's length; peak RSS is the "
        "whole process after the kernel runs, the generated stream included",
    ]
    for name, agreement in (("plain-Python reference", ref_agree),
                            ("NumPy baseline", vec_agree)):
        if not agreement.agrees:
            result.notes.append(f"WARNING: the {name} disagrees with the kernel "
                                f"({agreement.problem}); do not trust its figure")
    if any(drops.values()):
        result.notes.append(f"WARNING: the kernel dropped readings of a stream meant to have "
                            f"none: {drops}")
    result.figures = {
        "full_readings_per_s": round(full, 1),
        "bare_readings_per_s": round(bare, 1),
        "reference_readings_per_s": round(reference, 1),
        "vectorised_readings_per_s": round(vectorised, 1),
        "vectorised_kind": "numpy",
        "full_over_bare": _sig(full / bare),
        "full_over_reference": _sig(full / reference),
        "full_over_vectorised": _sig(full / vectorised),
        "reference_agrees": ref_agree.agrees,
        "reference_max_rel_diff": _json_diff(ref_agree),
        "vectorised_agrees": vec_agree.agrees,
        "vectorised_max_rel_diff": _json_diff(vec_agree),
        "first_call_s": _sig(first_call_s),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "peak_rss_source": "getrusage ru_maxrss of the benchmark process",
        "kernel_peak_alloc_mb": round(alloc_mb, 1),
        "kernel_peak_alloc_source": "tracemalloc",
        "state_mb": round(state_mb, 1),
        "kernel_drops": drops,
        **params,
        **machine(),
    }
    return result


def _diff_text(agreement: Agreement) -> str:
    d = agreement.max_rel_diff
    return "n/a" if d is None else f"{d:.1e}"


def _json_diff(agreement: Agreement) -> float | None:
    """The difference for JSON, which has no infinity: None when not a finite number."""
    d = agreement.max_rel_diff
    return d if d is not None and np.isfinite(d) else None


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant figures, for JSON a person reads too."""
    return float(f"{x:.{digits}g}")


def _window_name(ms: int) -> str:
    """A window as the config spells it: ``15m``, ``1h``, ``24h``."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
