"""The emission factors a line's CO2 figures rest on, with their sources, for the CBAM
report: electricity's grid factor (the config's ``grid_factor``, else the newest
national one of the reference data) and each carrier's combustion or purchase factor.

The store holds the CO2 sums, not which carriers made them. The carriers of a line are
known from the config's ``[meters."site/line/energy/meter"]`` tables that name one
(with the plant's measured factor or calorific value where the table gives one);
a meter described by its retained ``meta`` message only is not recorded anywhere the
report can read. So a line whose energy meters the config does not all describe lists
the factor of every carrier of the reference data (``meters`` unknown), and one whose
meters it describes lists those carriers, with the meters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from wattline.contract.reference_data import Carrier, ReferenceData
from wattline.ingest.config_tables import MeterSettings
from wattline.ingest.decode.meter_factors import KJ_PER_KGCE
from wattline.ingest.reports.cbam_report import Factor

__all__ = ["grid_factor", "line_factors"]


def grid_factor(configured: Any, reference: ReferenceData) -> Factor:
    """Electricity's factor: ``configured`` (the ``grid_factor`` setting, in kgCO2/kWh =
    tCO2/MWh) or, when unset, the newest national factor of the reference data."""
    if isinstance(configured, (int, float)) and not isinstance(configured, bool):
        return Factor("grid electricity", float(configured), "tCO2/MWh", 2,
                      "the config's grid_factor", "configured")
    national = getattr(reference, "national_grid_factor", None)
    if national is not None:
        return Factor("grid electricity", national.kgco2_per_kwh, "tCO2/MWh", 2,
                      f"{national.source} ({national.region}, {national.year})",
                      national.status)
    region, year = max((k for k in reference.grid_kgco2_per_kwh if k[0] == "CN"),
                       key=lambda k: k[1])
    return Factor("grid electricity", reference.grid_kgco2_per_kwh[(region, year)],
                  "tCO2/MWh", 2, f"reference data, {region} {year}", "sourced")


def _carrier_factor(carrier: Carrier, meters: tuple[str, ...] | None) -> Factor | None:
    value = getattr(carrier, "tco2_per_unit", None)
    scope = getattr(carrier, "scope", None)
    if value is None or scope is None:
        return None
    return Factor(f"{carrier.name} ({'combustion' if scope == 1 else 'purchased'})",
                  float(value), f"tCO2/{carrier.unit}", int(scope),
                  getattr(carrier, "co2_source", "") or carrier.source,
                  getattr(carrier, "co2_status", "") or getattr(carrier, "status", ""),
                  meters)


def _meter_factor(carrier: Carrier, spec: MeterSettings, grid: Factor,
                  where: str) -> Factor | None:
    """The factor one described meter's CO2 was computed with: its own measured one, the
    carrier's scaled by its measured calorific value, the grid's or the carrier's."""
    if spec.tco2_per_unit is not None:
        scope = getattr(carrier, "scope", None) or (2 if carrier.name == "electricity" else 1)
        return Factor(f"{carrier.name} (measured)", spec.tco2_per_unit, f"tCO2/{carrier.unit}",
                      scope, f"the plant's measured value, {where} tco2_per_unit", "measured")
    if carrier.name == "electricity" and getattr(carrier, "tco2_per_unit", None) is None:
        return grid
    factor = _carrier_factor(carrier, None)
    if factor is None or spec.ncv_kj_per_unit is None:
        return factor
    scale = spec.ncv_kj_per_unit / (carrier.kgce_per_unit * KJ_PER_KGCE)
    return Factor(f"{factor.factor}, measured calorific value", factor.value * scale,
                  factor.unit, factor.scope,
                  f"{factor.source}, scaled by the measured calorific value "
                  f"{spec.ncv_kj_per_unit:g} kJ/{carrier.unit} ({where} ncv_kj_per_unit)",
                  "measured")


def line_factors(line: str, meters: Mapping[str, MeterSettings], grid: Factor,
                 reference: ReferenceData) -> tuple[Factor, ...]:
    """The factors of ``line`` (``site/line``): the grid factor (electricity is also
    every meter's carrier when nothing describes it), then its carriers' (every
    carrier's when the config does not name a carrier for each of the energy meters it
    lists for the line, or lists none), a meter's measured factor or calorific value
    where the config gives one; see the module doc."""
    prefix = f"{line}/energy/"
    own = {name.removeprefix(prefix): spec for name, spec in meters.items()
           if name.startswith(prefix)}
    if not own or not all(spec.carrier for spec in own.values()):
        others = [f for c in sorted(reference.carriers.values(), key=lambda c: c.name)
                  if c.name != "electricity" and (f := _carrier_factor(c, None)) is not None]
        return (grid, *others)
    grouped: dict[Factor, list[str]] = {}
    for meter, spec in sorted(own.items()):
        carrier = reference.carriers.get(str(spec.carrier))
        where = f'[meters."{prefix}{meter}"]'
        factor = None if carrier is None else _meter_factor(carrier, spec, grid, where)
        if factor is not None:
            grouped.setdefault(factor, []).append(meter)
    # The grid first; with no meter named for it, for the meters the config leaves out.
    grouped = {grid: grouped.pop(grid, []), **grouped}
    return tuple(replace(f, meters=tuple(named) or None) for f, named in grouped.items())
