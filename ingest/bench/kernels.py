"""``wattline bench kernels``: the intensity kernel against what anyone would write instead.

One synthetic plant (``lines`` lines of ``meters_per_line`` meters, one reading per
meter per second, readings up to half a second out of order, three windows) and
one stream of readings, measured in one run:

- **full**: ``wattline.kernels.advance`` as the daemon calls it, batch by batch
  (counter deltas, lateness and ordering, watermarks and ticks, windows, intensity);
- **bare**: a per-line sliding-window sum kernel written here in Numba, the least
  any streaming kernel must do per reading; ``full / bare`` is the figure to steer by;
- **reference**: the plain-Python oracle (``wattline.kernels.reference``) on a prefix;
- **numpy**: the same computation vectorised with NumPy over the whole stream at
  once (sort, diff, bincount, cumulative sums), as a data scientist would write it;
  it must agree with the kernel, and the run says whether it does;
- the first call's time in a fresh process with a warm compile cache, and memory.
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

from wattline.ingest.bench.report import BenchResult, machine, rate
from wattline.kernels import KernelConfig, MeterTable, Readings, Ticks, advance, new_state
from wattline.kernels.reference import ReferenceState, reference_advance

# kgce per unit (GB/T 2589, ingest/data/energy.yaml): electricity kWh, natural gas m3, coal kg.
_CARRIERS = ((0.1229, 1.0), (1.2143, 0.0), (0.7143, 0.0))
BATCH_READINGS = 100_000
T0_MS = 1_732_406_400_000


@dataclass(frozen=True)
class BenchPlant:
    config: KernelConfig
    meters: MeterTable
    readings: Readings


def make_plant(readings: int, lines: int, meters_per_line: int, seed: int = 1) -> BenchPlant:
    """Meter 0 of each line counts tonnes; the others count energy of a carrier each."""
    rng = np.random.default_rng(seed)
    n_meters = lines * meters_per_line
    meter_kind = np.arange(n_meters) % meters_per_line
    carrier = (meter_kind - 1) % len(_CARRIERS)
    is_production = meter_kind == 0
    kgce = np.where(is_production, 0.0, np.array([c[0] for c in _CARRIERS])[carrier])
    kwh = np.where(is_production, 0.0, np.array([c[1] for c in _CARRIERS])[carrier])
    meters = MeterTable(
        line=(np.arange(n_meters) // meters_per_line).astype(np.int32),
        kgce_per_unit=kgce, kwh_per_unit=kwh, t_per_unit=is_production.astype(np.float64),
        delta_mode=np.zeros(n_meters, dtype=np.bool_),
        rollover=np.where(meter_kind == 1, 42_949_672.95, 0.0),  # a 32-bit 0.01 kWh register
        n_lines=lines,
    )
    seconds = -(-readings // n_meters)
    meter = np.tile(np.arange(n_meters, dtype=np.int32), seconds)[:readings]
    second = np.repeat(np.arange(seconds, dtype=np.int64), n_meters)[:readings]
    ts = T0_MS + second * 1000 + rng.integers(-400, 400, readings)  # out of order within 1 s
    per_second = np.where(is_production, 0.002, rng.uniform(0.5, 2.0, n_meters))
    increments = per_second[meter] * rng.uniform(0.5, 1.5, readings)
    # Cumulative registers: running totals per meter in reading order.
    order = np.argsort(meter, kind="stable")
    totals = np.empty(readings)
    totals[order] = _running_totals(meter[order], increments[order])
    totals = np.where(meter_kind[meter] == 1, np.mod(totals, 42_949_672.95), totals)
    config = KernelConfig(emit_every_ms=10_000, windows_ms=(900_000, 3_600_000, 86_400_000),
                          allowed_lateness_ms=30_000)
    return BenchPlant(config, meters, Readings.from_arrays(meter, ts, totals))


def _running_totals(meter_sorted: np.ndarray, increments: np.ndarray) -> np.ndarray:
    sums = np.cumsum(increments)
    starts = np.flatnonzero(np.r_[True, meter_sorted[1:] != meter_sorted[:-1]])
    offsets = np.repeat(np.r_[0.0, sums[starts[1:] - 1]], np.diff(np.r_[starts, len(sums)]))
    return sums - offsets + 1000.0


def _batches(readings: Readings, size: int) -> list[Readings]:
    return [
        Readings(readings.meter[a:a + size], readings.ts_ms[a:a + size],
                 readings.value[a:a + size], readings.message[a:a + size])
        for a in range(0, len(readings), size)
    ]


def run_full(plant: BenchPlant, batches: list[Readings]) -> tuple[float, list[Ticks], object]:
    state = new_state(plant.config, plant.meters.n_lines, plant.meters.n_meters)
    started = time.perf_counter()
    out = [advance(state, plant.config, plant.meters, b) for b in batches]
    return time.perf_counter() - started, out, state


@nb.njit(cache=True)
def _bare_window_sums(line_of_meter, meter, ts, value, n_lines, emit_every, window_ticks):
    """The floor for counter readings: a delta against the meter's last value, then per
    line a ring of tick buckets and one running sum per window. Nothing else: no
    ordering, lateness, watermarks, rollover, carriers or intensity."""
    ring_len = window_ticks.max()
    ring = np.zeros((n_lines, ring_len))
    sums = np.zeros((n_lines, window_ticks.shape[0]))
    current = np.full(n_lines, -1, dtype=np.int64)
    last = np.full(line_of_meter.shape[0], np.nan)
    checksum = 0.0
    for i in range(meter.shape[0]):
        m = meter[i]
        delta = value[i] - last[m]
        last[m] = value[i]
        if delta != delta:  # first reading of the meter: its baseline
            continue
        line = line_of_meter[m]
        tick = ts[i] // emit_every
        if tick > current[line]:
            start = current[line] + 1 if current[line] >= 0 else tick
            for k in range(start, tick + 1):
                for w in range(window_ticks.shape[0]):
                    sums[line, w] -= ring[line, (k - window_ticks[w]) % ring_len] if (
                        k - window_ticks[w] >= start) else 0.0
                ring[line, k % ring_len] = 0.0
            current[line] = tick
            checksum += sums[line, 0]
        ring[line, tick % ring_len] += delta
        for w in range(window_ticks.shape[0]):
            sums[line, w] += delta
    return checksum


def run_bare(plant: BenchPlant) -> float:
    r = plant.readings
    started = time.perf_counter()
    _bare_window_sums(plant.meters.line, r.meter, r.ts_ms, r.value, plant.meters.n_lines,
                      plant.config.emit_every_ms, plant.config.window_ticks)
    return time.perf_counter() - started


def numpy_window_sums(plant: BenchPlant) -> tuple[np.ndarray, int, np.ndarray]:
    """The contract's sums vectorised over the whole stream (no lateness: all data known).

    Returns (sums[line, tick - first, window, quantity], first tick, has_data[line, tick]).
    """
    r, mt, cfg = plant.readings, plant.meters, plant.config
    order = np.lexsort((r.ts_ms, r.meter))
    meter, ts, value = r.meter[order], r.ts_ms[order], r.value[order]
    keep = np.r_[True, (meter[1:] != meter[:-1]) | (ts[1:] != ts[:-1])]  # duplicates out
    meter, ts, value = meter[keep], ts[keep], value[keep]
    first_of_meter = np.r_[True, meter[1:] != meter[:-1]]
    previous = np.r_[0.0, value[:-1]]
    delta = value - previous
    wrapped = delta < 0
    roll = mt.rollover[meter]
    delta = np.where(wrapped, np.where(roll > 0, value + roll - previous, value), delta)
    delta = np.where(mt.delta_mode[meter], value, delta)
    counts = ~first_of_meter | mt.delta_mode[meter]
    meter, ts, delta = meter[counts], ts[counts], delta[counts]
    tick = -(-ts // cfg.emit_every_ms)  # a delta at t belongs to tick ceil(t / E)
    first = int(tick.min())
    n_ticks = int(tick.max()) - first + 1
    line = mt.line[meter].astype(np.int64)
    cell = line * n_ticks + (tick - first)
    size = mt.n_lines * n_ticks
    buckets = np.stack([
        np.bincount(cell, weights=delta * mt.kgce_per_unit[meter], minlength=size),
        np.bincount(cell, weights=delta * mt.kwh_per_unit[meter], minlength=size),
        np.bincount(cell, weights=delta * mt.t_per_unit[meter], minlength=size),
    ], axis=-1).reshape(mt.n_lines, n_ticks, 3)
    running = np.concatenate([np.zeros((mt.n_lines, 1, 3)), np.cumsum(buckets, axis=1)], axis=1)
    sums = np.empty((mt.n_lines, n_ticks, len(cfg.windows_ms), 3))
    for w, span in enumerate(cfg.window_ticks.tolist()):
        lagged = np.maximum(np.arange(1, n_ticks + 1) - span, 0)
        sums[:, :, w, :] = running[:, 1:, :] - running[:, lagged, :]
    return sums, first, np.ones((mt.n_lines, n_ticks), dtype=bool)


def _agree(plant: BenchPlant, ticks: list[Ticks], numpy_sums: np.ndarray, first: int) -> bool:
    """Whether every kernel row's window sums equal NumPy's at the same line and tick."""
    line = np.concatenate([t.line for t in ticks])
    tick = np.concatenate([t.tick_ms for t in ticks]) // plant.config.emit_every_ms
    kernel = np.stack([np.concatenate([t.energy_kgce for t in ticks]),
                       np.concatenate([t.electricity_kwh for t in ticks]),
                       np.concatenate([t.production_t for t in ticks])], axis=-1)
    inside = (tick >= first) & (tick - first < numpy_sums.shape[1])
    if not inside.any():
        return False
    want = numpy_sums[line[inside], tick[inside] - first]
    # Before the line's first reading the kernel has no row; rows before numpy's first
    # tick hold only zeros.
    early = kernel[~inside]
    return bool(np.allclose(kernel[inside], want, rtol=1e-6, atol=1e-6)
                and np.all(early == 0.0))


def _kernel_peak_alloc_mb(plant: BenchPlant, batches: list[Readings]) -> float:
    """Peak memory the kernel itself allocates (state + one batch's output), via tracemalloc.

    The input stream is allocated before tracing starts, so this does not grow with
    the stream's length, only with the plant's size and the batch size.
    """
    tracemalloc.start()
    try:
        state = new_state(plant.config, plant.meters.n_lines, plant.meters.n_meters)
        peak = 0
        for b in batches:
            tracemalloc.reset_peak()
            advance(state, plant.config, plant.meters, b)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        return peak / 2**20
    finally:
        tracemalloc.stop()


def first_call_seconds() -> float:
    """Import and first ``advance`` call in a fresh process, compile cache already warm."""
    code = (
        "import time; t = time.perf_counter()\n"
        "import numpy as np\n"
        "from wattline.kernels import KernelConfig, MeterTable, Readings, advance, new_state\n"
        "c = KernelConfig()\n"
        "m = MeterTable(line=np.zeros(1, np.int32), kgce_per_unit=np.ones(1), "
        "kwh_per_unit=np.ones(1), t_per_unit=np.zeros(1), delta_mode=np.zeros(1, bool), "
        "rollover=np.zeros(1), n_lines=1)\n"
        "advance(new_state(c, 1, 1), c, m, Readings.from_arrays([0, 0], "
        "[1_732_406_400_000, 1_732_406_500_000], [1.0, 2.0]))\n"
        "print(time.perf_counter() - t)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # warm
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    return float(done.stdout.strip().splitlines()[-1])


def run_kernel_bench(
    readings: int = 10_000_000,
    lines: int = 1000,
    meters_per_line: int = 10,
    reference_readings: int = 200_000,
    repeats: int = 3,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Run every measurement on one stream; the best of ``repeats`` runs for the fast ones."""
    progress(f"generating {readings:,} readings: {lines} lines x {meters_per_line} meters, "
             "1 reading per meter per second ...")
    plant = make_plant(readings, lines, meters_per_line)
    batches = _batches(plant.readings, BATCH_READINGS)
    tiny = make_plant(2_000, 2, 3)
    progress("compiling (or loading the compile cache) ...")
    run_full(tiny, _batches(tiny.readings, 500))
    run_bare(tiny)

    full_s, bare_s = [], []
    ticks: list[Ticks] = []
    state = None
    for i in range(repeats):
        progress(f"full kernel pipeline, run {i + 1}/{repeats} ...")
        seconds, ticks, state = run_full(plant, batches)
        full_s.append(seconds)
        progress(f"bare sliding-window sum, run {i + 1}/{repeats} ...")
        bare_s.append(run_bare(plant))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kernel_alloc_mb = _kernel_peak_alloc_mb(plant, batches)
    state_mb = sum(a.nbytes for a in vars(state).values() if isinstance(a, np.ndarray)) / 2**20

    n_ref = min(reference_readings, readings)
    progress(f"plain-Python reference on the first {n_ref:,} readings ...")
    ref_batches = _batches(Readings(plant.readings.meter[:n_ref], plant.readings.ts_ms[:n_ref],
                                    plant.readings.value[:n_ref],
                                    plant.readings.message[:n_ref]), BATCH_READINGS)
    ref_state = ReferenceState()
    started = time.perf_counter()
    for b in ref_batches:
        reference_advance(ref_state, plant.config, plant.meters, b)
    reference_s = time.perf_counter() - started

    progress("NumPy vectorised baseline on the whole stream ...")
    started = time.perf_counter()
    numpy_sums, first_tick, _ = numpy_window_sums(plant)
    numpy_s = time.perf_counter() - started
    agree = _agree(plant, ticks, numpy_sums, first_tick)

    progress("first call in a fresh process (warm compile cache) ...")
    first_call_s = first_call_seconds()

    full = readings / min(full_s)
    bare = readings / min(bare_s)
    reference = n_ref / reference_s
    numpy_rate = readings / numpy_s
    n_ticks = sum(len(t) for t in ticks)
    result = BenchResult()
    result.row("full kernel pipeline (advance)", rate(full), "1 thread, best of "
               f"{repeats}, {n_ticks:,} tick rows")
    result.row("bare: counter delta + per-line sliding sums", rate(bare),
               f"full/bare = {full / bare:.2f}")
    result.row("plain-Python reference", rate(reference),
               f"full/reference = {full / reference:,.0f}x ({n_ref:,} readings)")
    result.row("NumPy vectorised, whole stream", rate(numpy_rate),
               f"full/numpy = {full / numpy_rate:.1f}x; agrees with the kernel: "
               f"{'yes' if agree else 'NO'}")
    result.row("first call, fresh process, warm cache", f"{first_call_s:.2f} s",
               "import + compile-cache load + one call")
    result.row("kernel state", f"{state_mb:,.1f} MiB", f"{lines} lines, 3 windows")
    result.row("kernel peak allocation", f"{kernel_alloc_mb:,.1f} MiB",
               "state + one batch's output (tracemalloc); not the stream's length")
    result.row("peak RSS after the kernel runs", f"{peak_rss_mb:,.0f} MiB",
               "whole process, includes the generated stream")
    if not agree:
        result.notes.append("WARNING: the NumPy baseline and the kernel disagree; "
                            "do not trust the numpy figure")
    result.figures = {
        "full_readings_per_s": full,
        "bare_readings_per_s": bare,
        "reference_readings_per_s": reference,
        "vectorised_readings_per_s": numpy_rate,
        "full_over_bare": full / bare,
        "full_over_reference": full / reference,
        "full_over_vectorised": full / numpy_rate,
        "vectorised_agrees": agree,
        "vectorised_kind": "numpy",
        "kernel_peak_alloc_mb": kernel_alloc_mb,
        "first_call_s": first_call_s,
        "peak_rss_mb": peak_rss_mb,
        "state_mb": state_mb,
        "readings": readings,
        "reference_readings": n_ref,
        "lines": lines,
        "meters_per_line": meters_per_line,
        "windows": ["15m", "1h", "24h"],
        "batch_readings": BATCH_READINGS,
        "repeats": repeats,
        "tick_rows": n_ticks,
        **machine(),
    }
    return result
