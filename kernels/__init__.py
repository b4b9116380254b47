"""wattline kernels: pure Numba streaming kernels over NumPy arrays.

No I/O, logging or config reading happens here; this package imports only NumPy
and Numba. Saving a state to disk is the caller's job (``state_arrays``,
``state_from_arrays``). Each public wrapper checks and converts its inputs, then calls a
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
    new_state,
    state_arrays,
    state_from_arrays,
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
    "new_state",
    "state_arrays",
    "state_from_arrays",
]
