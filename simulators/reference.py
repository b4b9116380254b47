"""Energy carriers and their coal equivalents, as the simulators read them.

The figures come from the project's reference data (``reference/energy.yaml``,
shipped as ``wattline.ingest``'s package data): each carrier's unit and its
kilograms of coal equivalent per unit, after GB/T 2589 (electricity at its
equivalent value, 0.1229 kgce/kWh). The simulators read the file themselves,
so their ground truth does not lean on the collector's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import yaml

__all__ = ["CarrierFactor", "load_carriers"]


@dataclass(frozen=True, slots=True)
class CarrierFactor:
    """One energy carrier: the unit its meters count in and its kgce per unit."""

    carrier: str
    unit: str
    kgce_per_unit: float


@lru_cache(maxsize=1)
def load_carriers() -> dict[str, CarrierFactor]:
    """The reference's carriers by name (``electricity``, ``natural_gas``, ``raw_coal`` ...)."""
    text = (files("wattline.ingest") / "data" / "energy.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    return {
        c["carrier"]: CarrierFactor(c["carrier"], c["unit"], float(c["kgce_per_unit"]))
        for c in raw["carriers"]
    }
