"""The decoder's last step: a batch's readings as columns, in the order they arrived.

Readings reach ``BatchDecoder.decode`` three ways: scanned by the compiled payload
scanner (its columns, in message order), decoded one by one by the contract's
definition (the payloads the scanner handed back), and decoded whole (Sparkplug B and
``[[payloads]]`` messages, per meter). ``in_arrival_order`` interleaves them again, so
the kernels judge each message against the watermark as it stood before it.
"""

from __future__ import annotations

import numpy as np

from wattline.ingest.decode.payloads import DecodedReadings
from wattline.ingest.decode.scanner import SCANNED

__all__ = ["in_arrival_order"]


def in_arrival_order(
    meters: list[int],
    status: np.ndarray,
    kept: np.ndarray,
    ts_ms: np.ndarray,
    value: np.ndarray,
    slow: dict[int, DecodedReadings],
    sparkplug_at: list[tuple[int, list[tuple[int, np.ndarray, np.ndarray]]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch's messages as (meter, ts, value, readings per message) columns, in the
    order they arrived: scanned payloads, payloads decoded one by one (``slow``, by
    position), either left out when its meter was refused, and Sparkplug messages (each
    meter's readings one message, placed before the JSON message at their position)."""
    meter_out: list[int] = []
    counts: list[int] = []
    stamps: list[np.ndarray] = []
    values: list[np.ndarray] = []
    sparkplug_by_position: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for position, parts in sparkplug_at:
        sparkplug_by_position.setdefault(position, []).extend(parts)
    row = 0
    for k in range(len(meters) + 1):
        for idx, ts, v in sparkplug_by_position.get(k, ()):
            meter_out.append(idx)
            counts.append(ts.shape[0])
            stamps.append(ts)
            values.append(v)
        if k == len(meters):
            break
        n = int(kept[k])
        if status[k] == SCANNED:
            ts, v = ts_ms[row:row + n], value[row:row + n]
            row += n
        elif k in slow:
            ts, v = slow[k].ts_ms, slow[k].value
        else:
            continue
        if n and meters[k] >= 0:  # a refused meter's readings go nowhere
            meter_out.append(meters[k])
            counts.append(n)
            stamps.append(ts)
            values.append(v)
    if not counts:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.int32), empty, np.empty(0, dtype=np.float64), empty
    return (np.array(meter_out, dtype=np.int32), np.concatenate(stamps),
            np.concatenate(values), np.array(counts, dtype=np.int64))
