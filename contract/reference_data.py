"""Reference data: carriers' kgce factors, national levels per product, grid factors.

The data file ships inside the package (``contract/data/energy.yaml``); each entry
names its source (GB/T 2589 for the carriers' coal equivalents, NDRC 2021/2023
levels and the GB standards for national levels, MEE/NBS for grid emission factors).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import yaml


@dataclass(frozen=True)
class Carrier:
    name: str
    unit: str
    kgce_per_unit: float
    source: str


@dataclass(frozen=True)
class NationalLevel:
    product: str
    metric: str
    unit: str  # kgce/t or kWh/t
    benchmark: float | None
    baseline: float | None
    source: str
    status: str
    gb_grades: tuple[float, ...] | None = None  # grade 1, 2, 3 limits (GB standard)


@dataclass(frozen=True)
class ReferenceData:
    carriers: dict[str, Carrier]
    levels: dict[str, NationalLevel]
    grid_kgco2_per_kwh: dict[tuple[str, int], float]


@lru_cache(maxsize=1)
def load_reference() -> ReferenceData:
    """Parse the packaged ``energy.yaml`` once."""
    text = (files("wattline.contract") / "data" / "energy.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    carriers = {
        c["carrier"]: Carrier(c["carrier"], c["unit"], float(c["kgce_per_unit"]), c["source"])
        for c in raw["carriers"]
    }
    levels = {
        lv["product"]: NationalLevel(
            product=lv["product"],
            metric=lv["metric"],
            unit=lv["unit"],
            benchmark=lv.get("benchmark"),
            baseline=lv.get("baseline"),
            source=lv["source"],
            status=lv["status"],
            gb_grades=tuple(float(g) for g in lv["gb_grades"]) if lv.get("gb_grades") else None,
        )
        for lv in raw["levels"]
    }
    grid = {
        (g["region"], int(g["year"])): float(g["kgco2_per_kwh"])
        for g in raw["grid_emission_factors"]
    }
    return ReferenceData(carriers, levels, grid)
