"""Reference data: carriers' kgce and CO2 factors, national levels per product, grid factors.

The data file ships inside the package (``contract/data/energy.yaml``); each entry
names its source (GB/T 2589 for the carriers' coal equivalents and calorific values,
IPCC 2006 Vol 2 Table 1.4 for the combustion emission factors they are multiplied
by, China's enterprise GHG accounting guidelines for purchased heat, NDRC 2021/2023
levels and the GB standards for national levels, MEE/NBS for grid emission factors,
Regulation (EU) 2023/956 Annex I for the CBAM CN codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import yaml

NATIONAL_GRID_REGION = "CN"
"""The region whose newest grid factor is the default ``grid_factor``."""


@dataclass(frozen=True)
class Carrier:
    """One energy carrier. ``scope`` 1: burnt inside the line's boundary (direct CO2);
    2: bought as electricity, steam or heat (indirect CO2). ``tco2_per_unit`` is None for
    electricity, whose factor is the grid's (``co2_per_unit``)."""

    name: str
    unit: str
    kgce_per_unit: float
    source: str
    status: str = "sourced"
    scope: int | None = None
    tco2_per_unit: float | None = None
    co2_source: str = ""
    co2_status: str = ""

    def co2_per_unit(self, grid_kgco2_per_kwh: float) -> float:
        """Tonnes of CO2 per unit: the carrier's own factor, or for a scope-2 carrier
        measured in kWh without one (electricity), the grid factor (kgCO2/kWh = tCO2/MWh,
        so a kWh emits a thousandth of it in tonnes)."""
        if self.tco2_per_unit is not None:
            return self.tco2_per_unit
        if self.scope == 2 and self.unit == "kWh":
            return grid_kgco2_per_kwh / 1000.0
        return 0.0


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
    cbam_cn_code: str | None = None  # CN heading under the EU CBAM, where in scope


@dataclass(frozen=True)
class GridFactor:
    region: str
    year: int
    kgco2_per_kwh: float  # = tCO2/MWh
    source: str
    status: str


@dataclass(frozen=True)
class ReferenceData:
    carriers: dict[str, Carrier]
    levels: dict[str, NationalLevel]
    grid_kgco2_per_kwh: dict[tuple[str, int], float]
    grid_factors: tuple[GridFactor, ...] = ()

    @property
    def national_grid_factor(self) -> GridFactor:
        """The newest national grid factor: the default ``grid_factor``."""
        national = [g for g in self.grid_factors if g.region == NATIONAL_GRID_REGION]
        if not national:
            raise ValueError(f"the reference data has no {NATIONAL_GRID_REGION} grid factor")
        return max(national, key=lambda g: g.year)


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def load_reference() -> ReferenceData:
    """Parse the packaged ``energy.yaml`` once."""
    text = (files("wattline.contract") / "data" / "energy.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    carriers = {
        c["carrier"]: Carrier(
            name=c["carrier"], unit=c["unit"], kgce_per_unit=float(c["kgce_per_unit"]),
            source=c["source"], status=c.get("status", "sourced"),
            scope=int(c["scope"]) if c.get("scope") is not None else None,
            tco2_per_unit=_float_or_none(c.get("tco2_per_unit")),
            co2_source=c.get("co2_source", ""), co2_status=c.get("co2_status", ""),
        )
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
            cbam_cn_code=str(lv["cbam_cn_code"]) if lv.get("cbam_cn_code") else None,
        )
        for lv in raw["levels"]
    }
    factors = tuple(
        GridFactor(region=g["region"], year=int(g["year"]),
                   kgco2_per_kwh=float(g["kgco2_per_kwh"]), source=g["source"],
                   status=g["status"])
        for g in raw["grid_emission_factors"]
    )
    grid = {(g.region, g.year): g.kgco2_per_kwh for g in factors}
    return ReferenceData(carriers, levels, grid, factors)
