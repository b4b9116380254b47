"""Which meters and lines exist, and how each meter's deltas convert to kgce, kWh and tonnes.

Meters are numbered as they first appear; lines (site, line) likewise. A meter's
description comes, first match wins, from the config file, its retained ``meta``
message, or the contract's defaults (energy: electricity in kWh, counter;
production: tonnes, counter). The registry turns descriptions into the kernel's
``MeterTable``, rebuilt only when something changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattline.contract.errors import ConfigError
from wattline.contract.reference_data import ReferenceData
from wattline.ingest.config import MeterSettings
from wattline.kernels import MeterTable

# Units accepted per reference unit, with their factor to it.
_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "kWh": {"Wh": 1e-3, "kWh": 1.0, "MWh": 1e3, "GWh": 1e6},
    "m3": {"m3": 1.0, "Nm3": 1.0, "km3": 1e3},
    "kg": {"g": 1e-3, "kg": 1.0, "t": 1e3},
    "MJ": {"kJ": 1e-3, "MJ": 1.0, "GJ": 1e3},
    "t": {"kg": 1e-3, "t": 1.0, "kt": 1e3},
}

MeterName = tuple[str, str, str, str]
"""(site, line, kind, meter)"""


class MeterDescriptionError(ValueError):
    """A meter description (meta or config) that cannot be used."""


@dataclass(frozen=True)
class MeterDescription:
    carrier: str | None  # None for production meters
    unit: str
    mode: str  # counter | delta
    rollover: float  # 0: none

    @staticmethod
    def default(kind: str) -> MeterDescription:
        if kind == "production":
            return MeterDescription(None, "t", "counter", 0.0)
        return MeterDescription("electricity", "kWh", "counter", 0.0)


def conversion_factors(
    kind: str, desc: MeterDescription, reference: ReferenceData
) -> tuple[float, float, float]:
    """(kgce, kWh, tonnes) per unit of this meter's readings."""
    if kind == "production":
        per_t = _UNIT_FACTORS["t"].get(desc.unit)
        if per_t is None:
            raise MeterDescriptionError(
                f"production unit {desc.unit!r} is not one of {sorted(_UNIT_FACTORS['t'])}"
            )
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
    kwh = per_unit if carrier.name == "electricity" else 0.0
    return carrier.kgce_per_unit * per_unit, kwh, 0.0


def merge_description(
    kind: str,
    base: MeterDescription,
    carrier: str | None,
    unit: str | None,
    mode: str | None,
    rollover: float | None,
) -> MeterDescription:
    """Fill in over ``base`` what a meta message or config entry gives."""
    new_carrier = base.carrier if kind == "production" else (carrier or base.carrier)
    return MeterDescription(
        carrier=new_carrier,
        unit=unit or base.unit,
        mode=mode or base.mode,
        rollover=float(rollover) if rollover else base.rollover,
    )


class MeterRegistry:
    """Numbers meters and lines; keeps their descriptions; builds the ``MeterTable``.

    Called from the pipeline thread only.
    """

    def __init__(
        self, reference: ReferenceData, configured: dict[str, MeterSettings] | None = None
    ) -> None:
        self._reference = reference
        self._configured: dict[MeterName, MeterSettings] = {}
        for name, spec in (configured or {}).items():
            site, line, kind, meter = name.split("/")
            if kind not in ("energy", "production"):
                raise ConfigError(
                    f"meters.{name!r}", f"kind must be energy or production, got {kind!r}"
                )
            key = (site, line, kind, meter)
            self._configured[key] = spec
            try:
                self._describe(key, None)
            except MeterDescriptionError as exc:
                raise ConfigError(f"meters.{name!r}", str(exc)) from None
        self._meters: dict[MeterName, int] = {}
        self._lines: dict[tuple[str, str], int] = {}
        self.line_sites: list[str] = []
        self.line_names: list[str] = []
        self._meter_line: list[int] = []
        self._kind: list[str] = []
        self._desc: list[MeterDescription] = []
        self._meta: dict[MeterName, MeterDescription] = {}
        self._table: MeterTable | None = None

    @property
    def n_meters(self) -> int:
        return len(self._meters)

    @property
    def n_lines(self) -> int:
        return len(self._lines)

    def meter_index(self, site: str, line: str, kind: str, meter: str) -> int:
        """The meter's number, registering it (and its line) on first sight."""
        key = (site, line, kind, meter)
        idx = self._meters.get(key)
        if idx is not None:
            return idx
        line_idx = self._lines.get((site, line))
        if line_idx is None:
            line_idx = len(self._lines)
            self._lines[(site, line)] = line_idx
            self.line_sites.append(site)
            self.line_names.append(line)
        idx = len(self._meters)
        self._meters[key] = idx
        self._meter_line.append(line_idx)
        self._kind.append(kind)
        self._desc.append(self._describe(key, self._meta.get(key)))
        self._table = None
        return idx

    def apply_meta(
        self,
        site: str,
        line: str,
        kind: str,
        meter: str,
        carrier: str | None,
        unit: str | None,
        mode: str | None,
        rollover: float | None,
    ) -> None:
        """Take a ``meta`` message; raises ``MeterDescriptionError`` if it cannot be used."""
        key = (site, line, kind, meter)
        default = MeterDescription.default(kind)
        if kind == "production" and carrier is not None:
            raise MeterDescriptionError("a production meter has no carrier")
        if carrier is not None and unit is None:
            ref = self._reference.carriers.get(carrier)
            unit = ref.unit if ref else None
        meta = merge_description(kind, default, carrier, unit, mode, rollover)
        desc = self._describe(key, meta)  # validates
        self._meta[key] = meta
        idx = self._meters.get(key)
        if idx is not None and self._desc[idx] != desc:
            self._desc[idx] = desc
            self._table = None

    def _describe(self, key: MeterName, meta: MeterDescription | None) -> MeterDescription:
        kind = key[2]
        desc = meta or MeterDescription.default(kind)
        spec = self._configured.get(key)
        if spec is not None:
            unit = spec.unit
            if spec.carrier is not None and unit is None:
                ref = self._reference.carriers.get(spec.carrier)
                unit = ref.unit if ref else None
            desc = merge_description(kind, desc, spec.carrier, unit, spec.mode, spec.rollover)
        conversion_factors(kind, desc, self._reference)
        return desc

    def description(self, site: str, line: str, kind: str, meter: str) -> MeterDescription:
        return self._desc[self._meters[(site, line, kind, meter)]]

    def table(self) -> MeterTable:
        """The kernel's meter table, rebuilt only after a change."""
        if self._table is None:
            n = self.n_meters
            kgce = np.zeros(n)
            kwh = np.zeros(n)
            tonnes = np.zeros(n)
            for i, (kind, desc) in enumerate(zip(self._kind, self._desc, strict=True)):
                kgce[i], kwh[i], tonnes[i] = conversion_factors(kind, desc, self._reference)
            self._table = MeterTable(
                line=np.array(self._meter_line, dtype=np.int32),
                kgce_per_unit=kgce,
                kwh_per_unit=kwh,
                t_per_unit=tonnes,
                delta_mode=np.array([d.mode == "delta" for d in self._desc], dtype=np.bool_),
                rollover=np.array([d.rollover for d in self._desc], dtype=np.float64),
                n_lines=self.n_lines,
            )
        return self._table

    def snapshot(self) -> dict[str, object]:
        """Meters in index order with the meta they were described by, for checkpoints.

        ``restore`` of this on a fresh registry numbers every meter and line the same
        way, so a saved kernel state lines up with it again.
        """
        metas = {}
        for key, meta in self._meta.items():
            metas["/".join(key)] = {"carrier": meta.carrier, "unit": meta.unit,
                                    "mode": meta.mode, "rollover": meta.rollover}
        return {"meters": ["/".join(k) for k in self._meters], "meta": metas}

    def restore(self, snapshot: dict[str, object]) -> None:
        """Number meters as ``snapshot`` did; only on a registry that has seen no meter yet."""
        if self._meters:
            raise RuntimeError("restore() needs an empty registry")
        for name, meta in dict(snapshot.get("meta", {})).items():  # type: ignore[call-overload]
            site, line, kind, meter = name.split("/")
            self._meta[(site, line, kind, meter)] = MeterDescription(
                meta["carrier"], meta["unit"], meta["mode"], float(meta["rollover"]))
        for name in list(snapshot["meters"]):  # type: ignore[call-overload]
            self.meter_index(*name.split("/"))
