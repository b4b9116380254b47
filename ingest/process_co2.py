"""Process emissions of a line by mass balance: the ``process_co2_*`` keys of its
``[lines."site/line"]`` table, for the CBAM report.

Combustion is all the daemon measures (contract section 8); CO2 released by the process
itself (the carbon of consumed anodes, the carbonates calcined in a kiln's raw meal,
electrode and charge carbon in a furnace) is not in any meter's reading. A plant that
has its mass balance gives it per tonne of product, in one of two forms:

    process_co2_per_t = 0.525                  # tCO2 per tonne of product
    process_co2_source = "raw meal carbonate balance 2025 (lab report 17)"

or per unit of a material consumed per tonne of product (the factor is their product):

    process_material = "net anode"
    process_material_per_t = 0.41              # t of net anode per t of aluminium
    process_co2_per_material = 3.593           # tCO2 per t of anode: 0.98 C x 44/12
    process_co2_source = "anode consumption and carbon content, 2025 mass balance"

The source is required: the report lists every factor with where it comes from. The
daemon does not use these keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wattline.contract.errors import ConfigError

__all__ = ["PROCESS_EXAMPLE", "PROCESS_HELP", "PROCESS_KEYS", "ProcessCo2", "parse_process_co2"]

PROCESS_KEYS = ("process_co2_per_t", "process_material", "process_material_per_t",
                "process_co2_per_material", "process_co2_source")
_MATERIAL_KEYS = ("process_material", "process_material_per_t", "process_co2_per_material")

PROCESS_HELP = ("for the CBAM report, process CO2 by mass balance: process_co2_per_t (tCO2 per t "
                "of product) or process_material, process_material_per_t and "
                "process_co2_per_material (tCO2 per unit of it), with process_co2_source "
                "saying where the figure comes from.")
"""The [lines] tables' help text on these keys (``wattline run --help``, example config)."""
PROCESS_EXAMPLE = {"plant-a/kiln-1": {"product": "cement_clinker", "process_co2_per_t": 0.52,
                                      "process_co2_source": "raw meal carbonate balance, lab "
                                                            "report 2025-07"}}
"""A line of the example config with process CO2."""


@dataclass(frozen=True)
class ProcessCo2:
    """A line's process CO2 per tonne of product, and where the figure comes from."""

    per_t: float
    source: str
    material: str | None = None
    material_per_t: float | None = None
    co2_per_material: float | None = None


def _number(key: str, value: Any, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0 or (value == 0 and not zero_ok):
        wanted = "a number >= 0" if zero_ok else "a positive number"
        raise ConfigError(key, f"must be {wanted}, got {value!r}")
    return float(value)


def parse_process_co2(where: str, spec: dict[str, Any]) -> ProcessCo2 | None:
    """The ``process_co2_*`` keys of one line table (``where`` names it), or ``None``
    when it has none; ``ConfigError`` naming the key that is wrong or missing."""
    given = [k for k in PROCESS_KEYS if k in spec]
    if not given:
        return None
    source = spec.get("process_co2_source")
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}.process_co2_source", "say where the process CO2 figure "
                          "comes from (a mass balance, a lab report), as text")
    material = [k for k in _MATERIAL_KEYS if k in spec]
    if "process_co2_per_t" in spec:
        if material:
            raise ConfigError(f"{where}.{material[0]}", "give process_co2_per_t or the "
                              "material keys (process_material, process_material_per_t, "
                              "process_co2_per_material), not both")
        per_t = _number(f"{where}.process_co2_per_t", spec["process_co2_per_t"], zero_ok=True)
        return ProcessCo2(per_t=per_t, source=source.strip())
    missing = [k for k in _MATERIAL_KEYS if k not in spec]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}", "process CO2 needs process_co2_per_t, or "
                          "all of process_material, process_material_per_t and "
                          "process_co2_per_material")
    name = spec["process_material"]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.process_material", "name the consumed material as text, "
                          "such as \"net anode\"")
    per_t = _number(f"{where}.process_material_per_t", spec["process_material_per_t"],
                    zero_ok=False)
    factor = _number(f"{where}.process_co2_per_material", spec["process_co2_per_material"],
                     zero_ok=False)
    return ProcessCo2(per_t=per_t * factor, source=source.strip(), material=name.strip(),
                      material_per_t=per_t, co2_per_material=factor)
