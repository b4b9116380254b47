"""Compile the intensity kernels once so that a fresh daemon starts without JIT delay.

Run at image build time, as the runtime user, with NUMBA_CACHE_DIR pointing at a
directory that user owns: the kernels are ``@njit(cache=True)``, so compiling them
here leaves their machine code in that directory for every later start.

It feeds one line (an electricity counter and a production counter) a few minutes
of readings through ``advance`` and ``count_ticks_bound``, with the daemon's default
tick and window settings; the compiled code depends on the argument types only.
Numba keys its cache on the CPU it compiled for: a container on another CPU model
compiles again on its first batch unless NUMBA_CPU_NAME (see the Dockerfile) pins a
common target.
"""

from __future__ import annotations

import numpy as np

from wattline.kernels import (
    KernelConfig,
    MeterTable,
    Readings,
    advance,
    count_ticks_bound,
    new_state,
)


def warm() -> int:
    """Run one small batch through the kernels; returns the number of ticks emitted."""
    config = KernelConfig()
    meters = MeterTable(
        line=np.array([0, 0]),
        kgce_per_unit=np.array([0.1229, 0.0]),
        kwh_per_unit=np.array([1.0, 0.0]),
        t_per_unit=np.array([0.0, 1.0]),
        delta_mode=np.array([False, False]),
        rollover=np.array([0.0, 0.0]),
        n_lines=1,
    )
    state = new_state(config, n_lines=1, n_meters=2)
    steps = np.arange(60, dtype=np.int64)
    ts = 1_700_000_000_000 + np.repeat(steps, 2) * 5_000
    meter = np.tile(np.array([0, 1]), steps.size)
    value = np.where(meter == 0, 100.0, 0.5) * np.repeat(steps + 1, 2)
    readings = Readings.from_arrays(meter, ts, value)
    count_ticks_bound(state, config, meters, readings)
    return len(advance(state, config, meters, readings))


if __name__ == "__main__":
    print(f"numba cache warmed: {warm()} ticks from the warm-up batch")
