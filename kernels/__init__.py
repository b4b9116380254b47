"""wattline kernels: pure Numba streaming kernels over NumPy arrays.

No I/O, logging or config reading happens here; this package imports only NumPy
and Numba. Each public wrapper checks and converts its inputs, then calls a
private ``@njit`` kernel that only loops over contiguous arrays whose state the
caller owns.
"""

from wattline.kernels.intensity import advance, count_ticks_bound
from wattline.kernels.state import (
    DROP_REASONS,
    KernelConfig,
    MeterTable,
    Readings,
    StreamState,
    Ticks,
    load_state,
    new_state,
    save_state,
)

__all__ = [
    "DROP_REASONS",
    "KernelConfig",
    "MeterTable",
    "Readings",
    "StreamState",
    "Ticks",
    "advance",
    "count_ticks_bound",
    "load_state",
    "new_state",
    "save_state",
]
