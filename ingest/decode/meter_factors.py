"""How a meter's deltas convert to kgce, kWh, tonnes and tonnes of CO2: its description
(carrier, unit, mode, direction...) and the factors the kernels' ``MeterTable`` takes.

The description of a meter comes from the config file, its retained meta or the
contract's defaults (``registry``); here each description is checked and turned into
factors by the reference data: the carrier's kgce factor (GB/T 2589), its scope and
CO2 factor, electricity's at the grid factor, all scaled by the meter's unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wattline.contract.reference_data import ReferenceData

__all__ = ["MeterDescription", "MeterDescriptionError", "carbon_factors", "conversion_factors",
           "merge_description"]

# Units accepted per reference unit, with their factor to it.
_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "kWh": {"Wh": 1e-3, "kWh": 1.0, "MWh": 1e3, "GWh": 1e6},
    "m3": {"m3": 1.0, "Nm3": 1.0, "km3": 1e3},
    "kg": {"g": 1e-3, "kg": 1.0, "t": 1e3},
    "MJ": {"kJ": 1e-3, "MJ": 1.0, "GJ": 1e3},
    "t": {"kg": 1e-3, "t": 1.0, "kt": 1e3},
}
KJ_PER_KGCE = 29_307.0
"""One kilogram of coal equivalent (GB/T 2589)."""
_ENERGY_UNITS = ("kWh", "MJ")
"""Carrier units that are themselves energy: a calorific value means nothing for them."""


class MeterDescriptionError(ValueError):
    """A meter description (meta or config) that cannot be used."""


@dataclass(frozen=True)
class MeterDescription:
    carrier: str | None  # None for production meters
    unit: str
    mode: str  # counter | delta
    rollover: float  # 0: none
    direction: str = "import"  # import | export (energy leaving the line's boundary)
    max_rate: float = 0.0  # the most the meter registers per hour, in its unit; 0: none
    ncv_kj_per_unit: float | None = None  # measured calorific value per carrier unit
    tco2_per_unit: float | None = None  # measured CO2 factor, t per carrier unit

    @staticmethod
    def default(kind: str) -> MeterDescription:
        if kind == "production":
            return MeterDescription(None, "t", "counter", 0.0)
        return MeterDescription("electricity", "kWh", "counter", 0.0)


def _usable_factor(x: float) -> bool:
    return math.isfinite(x) and x > 0


def conversion_factors(
    kind: str, desc: MeterDescription, reference: ReferenceData
) -> tuple[float, float, float]:
    """(kgce, kWh, tonnes) per unit of this meter's readings.

    A measured calorific value (``ncv_kj_per_unit``, kJ per unit of the carrier) gives the
    kgce factor (over 29,307 kJ per kgce) in place of the reference one, as GB/T 2589
    prefers. An export meter's factors are negative: its deltas are energy leaving the line's
    boundary, and count against the line's energy (a BOF's recovered gas can make its
    process energy negative). A production meter is never an export meter.
    """
    if desc.direction not in ("import", "export"):
        raise MeterDescriptionError(f"direction must be import or export, got {desc.direction!r}")
    if kind == "production":
        if desc.direction == "export":
            raise MeterDescriptionError("a production meter cannot be an export meter: only "
                                        "energy leaves a line's boundary")
        per_t = _UNIT_FACTORS["t"].get(desc.unit)
        if per_t is None or not _usable_factor(per_t):
            raise MeterDescriptionError(
                f"production unit {desc.unit!r} is not one of {sorted(_UNIT_FACTORS['t'])}"
            )
        if desc.ncv_kj_per_unit is not None or desc.tco2_per_unit is not None:
            raise MeterDescriptionError("a production meter has no calorific value or CO2 "
                                        "factor: give them to its line's energy meters")
        return 0.0, 0.0, per_t
    carrier = reference.carriers.get(desc.carrier or "")
    if carrier is None:
        raise MeterDescriptionError(
            f"carrier {desc.carrier!r} is not in the reference data; use one of "
            f"{', '.join(sorted(reference.carriers))}"
        )
    per_unit = _UNIT_FACTORS.get(carrier.unit, {carrier.unit: 1.0}).get(desc.unit)
    if per_unit is None:
        raise MeterDescriptionError(
            f"unit {desc.unit!r} does not convert to {carrier.unit} for carrier {carrier.name}; "
            f"use one of {sorted(_UNIT_FACTORS.get(carrier.unit, {carrier.unit: 1.0}))}"
        )
    if desc.ncv_kj_per_unit is not None and carrier.unit in _ENERGY_UNITS:
        raise MeterDescriptionError(
            f"carrier {carrier.name} is counted in {carrier.unit}, an energy: it has no "
            "calorific value (remove ncv_kj_per_unit)")
    per_carrier_unit = (carrier.kgce_per_unit if desc.ncv_kj_per_unit is None
                        else desc.ncv_kj_per_unit / KJ_PER_KGCE)
    kgce = per_carrier_unit * per_unit
    if not (_usable_factor(per_unit) and _usable_factor(kgce)):
        raise MeterDescriptionError(
            f"unit {desc.unit!r} of carrier {carrier.name} converts by {per_unit!r} to "
            f"{carrier.unit} and {kgce!r} to kgce: factors must be positive and finite"
        )
    kwh = per_unit if carrier.name == "electricity" else 0.0
    if desc.direction == "export":
        return -kgce, -kwh if kwh else 0.0, 0.0
    return kgce, kwh, 0.0


def carbon_factors(
    kind: str, desc: MeterDescription, reference: ReferenceData, grid_kgco2_per_kwh: float
) -> tuple[float, float]:
    """(direct, indirect) tonnes of CO2 per unit of this meter's readings (contract 8).

    A scope-1 carrier (burnt inside the line's boundary) emits directly, a scope-2 one
    (bought electricity, steam, heat) indirectly; electricity at the grid factor
    (kgCO2/kWh). A meter's own measured factor (``tco2_per_unit``) wins; else a measured
    calorific value scales the carrier's factor, which keeps the carrier's CO2 per unit
    of energy (its reference factor over its reference calorific value, kgce x 29,307 kJ:
    the IPCC method, a default factor per TJ times the fuel's own calorific value).
    Export meters count negatively, production meters emit nothing. Call after
    ``conversion_factors`` has accepted ``desc``.
    """
    if kind == "production":
        return 0.0, 0.0
    carrier = reference.carriers[desc.carrier or ""]
    per_unit = _UNIT_FACTORS.get(carrier.unit, {carrier.unit: 1.0})[desc.unit]
    if desc.tco2_per_unit is not None:
        per_carrier_unit = desc.tco2_per_unit
    else:
        per_carrier_unit = carrier.co2_per_unit(grid_kgco2_per_kwh)
        if desc.ncv_kj_per_unit is not None:
            per_carrier_unit *= desc.ncv_kj_per_unit / (carrier.kgce_per_unit * KJ_PER_KGCE)
    co2 = per_carrier_unit * per_unit
    if desc.direction == "export":
        co2 = -co2
    if carrier.scope == 1:
        return co2, 0.0
    if carrier.scope == 2:
        return 0.0, co2
    return 0.0, 0.0


def merge_description(
    kind: str,
    base: MeterDescription,
    carrier: str | None,
    unit: str | None,
    mode: str | None,
    rollover: float | None,
    direction: str | None = None,
    max_rate: float | None = None,
    ncv_kj_per_unit: float | None = None,
    tco2_per_unit: float | None = None,
) -> MeterDescription:
    """Fill in over ``base`` what a meta message or config entry gives."""
    new_carrier = base.carrier if kind == "production" else (carrier or base.carrier)
    return MeterDescription(
        carrier=new_carrier,
        unit=unit or base.unit,
        mode=mode or base.mode,
        rollover=float(rollover) if rollover else base.rollover,
        direction=direction or base.direction,
        max_rate=float(max_rate) if max_rate else base.max_rate,
        ncv_kj_per_unit=(float(ncv_kj_per_unit) if ncv_kj_per_unit is not None
                         else base.ncv_kj_per_unit),
        tco2_per_unit=float(tco2_per_unit) if tco2_per_unit is not None else base.tco2_per_unit,
    )
