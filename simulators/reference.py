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

__all__ = ["CarrierFactor", "NationalLevels", "load_carriers", "load_levels"]


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


@dataclass(frozen=True, slots=True)
class NationalLevels:
    """A product's national levels (NDRC 2021/2023): benchmark and baseline, in ``unit``."""

    product: str
    unit: str  # kgce/t or kWh/t
    benchmark: float | None
    baseline: float | None


@lru_cache(maxsize=1)
def load_levels() -> dict[str, NationalLevels]:
    """The reference's national levels by product (``eaf_steel``, ``cement_clinker`` ...)."""
    text = (files("wattline.ingest") / "data" / "energy.yaml").read_text(encoding="utf-8")
    return {
        lv["product"]: NationalLevels(lv["product"], lv["unit"], lv.get("benchmark"),
                                      lv.get("baseline"))
        for lv in yaml.safe_load(text)["levels"]
    }
