"""Which meters and lines exist, and how each meter's deltas convert to kgce, kWh, tonnes and
tonnes of CO2.

Meters are numbered as they first appear; lines (site, line) likewise. A meter's
description comes, first match wins, from the config file, its retained ``meta``
message, or the contract's defaults (energy: electricity in kWh, counter, import;
production: tonnes, counter). The registry turns descriptions into the kernel's
``MeterTable``, rebuilt only when something changed.

The registry is bounded: beyond ``max_lines`` lines or ``max_meters`` meters a new
one is refused (``REFUSED``), since every meter and line costs kernel state, a
checkpoint entry and metric series for as long as the daemon runs. A refused meter
is reported once to ``on_refused`` (while it is remembered among the last
``REFUSED_REMEMBERED`` refused), and its readings go nowhere. Meters in a checkpoint
are always taken back, whatever the limits.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import fields

import numpy as np

from wattline.contract.errors import ConfigError
from wattline.contract.reference_data import ReferenceData
from wattline.ingest.config import MeterSettings
from wattline.ingest.decode.meta import MeterMeta
from wattline.ingest.decode.meter_factors import (
    MeterDescription,
    MeterDescriptionError,
    carbon_factors,
    conversion_factors,
    merge_description,
)
from wattline.kernels import MeterTable, StreamState

MeterName = tuple[str, str, str, str]
"""(site, line, kind, meter)"""

REFUSED = -1
"""``meter_index`` of a meter beyond the registry's limits."""
REFUSED_REMEMBERED = 10_000
"""Refused meters remembered, so that each is reported once (forgotten all at once when
full, so memory stays bounded whatever a flood of new names)."""


def state_nbytes(state: StreamState) -> int:
    """Bytes held by the kernel state's arrays."""
    return sum(getattr(state, f.name).nbytes for f in fields(state))


class MeterRegistry:
    """Numbers meters and lines; keeps their descriptions; builds the ``MeterTable``.

    Called from the pipeline thread only.
    """

    def __init__(
        self, reference: ReferenceData, configured: dict[str, MeterSettings] | None = None,
        *, max_lines: int = 2000, max_meters: int = 20_000,
        grid_kgco2_per_kwh: float | None = None,
    ) -> None:
        """``grid_kgco2_per_kwh``: electricity's CO2 factor (the config's ``grid_factor``);
        ``None``: the newest national one in the reference data."""
        self._reference = reference
        self.grid_kgco2_per_kwh = (reference.national_grid_factor.kgco2_per_kwh
                                   if grid_kgco2_per_kwh is None else grid_kgco2_per_kwh)
        self.max_lines = max_lines
        self.max_meters = max_meters
        self.on_refused: Callable[[MeterName, str], None] | None = None
        """Called with the meter and the setting that refused it (``max_lines`` or
        ``max_meters``), once per meter while it is remembered."""
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
        self._refused: set[MeterName] = set()
        self._item_bytes = 0  # what the containers' entries point to (names, descriptions)
        self._refused_bytes = 0
        self._table: MeterTable | None = None

    @property
    def n_meters(self) -> int:
        return len(self._meters)

    @property
    def n_lines(self) -> int:
        return len(self._lines)

    def refused_by(self, site: str, line: str, kind: str, meter: str) -> str | None:
        """The setting that would refuse this meter if it were new, or ``None``."""
        if (site, line, kind, meter) in self._meters:
            return None
        if (site, line) not in self._lines and len(self._lines) >= self.max_lines:
            return "max_lines"
        if len(self._meters) >= self.max_meters:
            return "max_meters"
        return None

    def meter_index(self, site: str, line: str, kind: str, meter: str) -> int:
        """The meter's number, registering it (and its line) on first sight; ``REFUSED``
        when that would go beyond ``max_lines`` or ``max_meters``."""
        idx = self._meters.get((site, line, kind, meter))
        if idx is not None:
            return idx
        limit = self.refused_by(site, line, kind, meter)
        if limit is not None:
            self._refuse((site, line, kind, meter), limit)
            return REFUSED
        return self._register((site, line, kind, meter))

    def _register(self, key: MeterName) -> int:
        site, line = key[0], key[1]
        line_idx = self._lines.get((site, line))
        if line_idx is None:
            line_idx = len(self._lines)
            self._lines[(site, line)] = line_idx
            self.line_sites.append(site)
            self.line_names.append(line)
            self._item_bytes += sys.getsizeof((site, line))
        idx = len(self._meters)
        self._meters[key] = idx
        self._meter_line.append(line_idx)
        self._kind.append(key[2])
        desc = self._describe(key, self._meta.get(key))
        self._desc.append(desc)
        self._item_bytes += _key_bytes(key) + sys.getsizeof(desc)
        self._table = None
        return idx

    def _refuse(self, key: MeterName, limit: str) -> None:
        if key in self._refused:
            return
        if len(self._refused) >= REFUSED_REMEMBERED:
            self._refused.clear()
            self._refused_bytes = 0
        self._refused.add(key)
        self._refused_bytes += _key_bytes(key)
        if self.on_refused is not None:
            self.on_refused(key, limit)

    def apply_meta(self, site: str, line: str, kind: str, meter: str, meta: MeterMeta) -> bool:
        """Take a ``meta`` message; raises ``MeterDescriptionError`` if it cannot be used.

        ``False`` when the meter is new and the limits refuse it (then it is reported like a
        refused reading's meter, and its meta is not kept). Meta of meters not seen yet is
        kept for at most ``max_meters`` of them.
        """
        key = (site, line, kind, meter)
        default = MeterDescription.default(kind)
        if kind == "production" and meta.carrier is not None:
            raise MeterDescriptionError("a production meter has no carrier")
        if kind == "production" and meta.direction == "export":
            raise MeterDescriptionError("a production meter cannot be an export meter: only "
                                        "energy leaves a line's boundary")
        if key not in self._meters and key not in self._meta:
            limit = self.refused_by(site, line, kind, meter)
            if limit is None and len(self._meta) >= self.max_meters:
                limit = "max_meters"
            if limit is not None:
                self._refuse(key, limit)
                return False
        unit = meta.unit
        if meta.carrier is not None and unit is None:
            ref = self._reference.carriers.get(meta.carrier)
            unit = ref.unit if ref else None
        merged = merge_description(kind, default, meta.carrier, unit, meta.mode, meta.rollover,
                                   meta.direction, meta.max_rate, meta.ncv_kj_per_unit,
                                   meta.tco2_per_unit)
        desc = self._describe(key, merged)  # validates
        if key not in self._meta:
            self._item_bytes += _key_bytes(key) + sys.getsizeof(merged)
        self._meta[key] = merged
        idx = self._meters.get(key)
        if idx is not None and self._desc[idx] != desc:
            self._desc[idx] = desc
            self._table = None
        return True

    def _describe(self, key: MeterName, meta: MeterDescription | None) -> MeterDescription:
        kind = key[2]
        desc = meta or MeterDescription.default(kind)
        spec = self._configured.get(key)
        if spec is not None:
            unit = spec.unit
            if spec.carrier is not None and unit is None:
                ref = self._reference.carriers.get(spec.carrier)
                unit = ref.unit if ref else None
            desc = merge_description(kind, desc, spec.carrier, unit, spec.mode, spec.rollover,
                                     spec.direction, spec.max_rate, spec.ncv_kj_per_unit,
                                     spec.tco2_per_unit)
        conversion_factors(kind, desc, self._reference)
        return desc

    def description(self, site: str, line: str, kind: str, meter: str) -> MeterDescription:
        return self._desc[self._meters[(site, line, kind, meter)]]

    def meter_names(self, start: int = 0) -> list[MeterName]:
        """The names (site, line, kind, meter) of the meters numbered ``start`` and up."""
        return list(itertools.islice(self._meters, start, None))

    def max_rates_per_hour(self) -> np.ndarray:
        """Per meter, its ``max_rate`` (per hour, in its unit); 0 where it has none."""
        return np.array([d.max_rate for d in self._desc], dtype=np.float64)

    def table(self) -> MeterTable:
        """The kernel's meter table, rebuilt only after a change."""
        if self._table is None:
            n = self.n_meters
            kgce = np.zeros(n)
            kwh = np.zeros(n)
            tonnes = np.zeros(n)
            direct = np.zeros(n)
            indirect = np.zeros(n)
            for i, (kind, desc) in enumerate(zip(self._kind, self._desc, strict=True)):
                kgce[i], kwh[i], tonnes[i] = conversion_factors(kind, desc, self._reference)
                direct[i], indirect[i] = carbon_factors(kind, desc, self._reference,
                                                        self.grid_kgco2_per_kwh)
            self._table = MeterTable(
                line=np.array(self._meter_line, dtype=np.int32),
                kgce_per_unit=kgce,
                kwh_per_unit=kwh,
                t_per_unit=tonnes,
                delta_mode=np.array([d.mode == "delta" for d in self._desc], dtype=np.bool_),
                rollover=np.array([d.rollover for d in self._desc], dtype=np.float64),
                max_rate=self.max_rates_per_hour(),
                n_lines=self.n_lines,
                co2_direct_per_unit=direct,
                co2_indirect_per_unit=indirect,
            )
        return self._table

    def nbytes(self) -> int:
        """About how many bytes the registry holds: its containers, the names and
        descriptions in them, and the meter table."""
        containers = (self._meters, self._lines, self.line_sites, self.line_names,
                      self._meter_line, self._kind, self._desc, self._meta, self._refused)
        total = sum(map(sys.getsizeof, containers)) + self._item_bytes + self._refused_bytes
        if self._table is not None:
            total += sum(a.nbytes for a in vars(self._table).values()
                         if isinstance(a, np.ndarray))
        return total

    def snapshot(self) -> dict[str, object]:
        """Meters in index order with the meta they were described by, for checkpoints.

        ``restore`` of this on a fresh registry numbers every meter and line the same
        way, so a saved kernel state lines up with it again. Like the registry, it holds
        at most ``max_meters`` meters and as many metas, whatever was sent.
        """
        metas = {}
        for key, meta in self._meta.items():
            metas["/".join(key)] = {"carrier": meta.carrier, "unit": meta.unit,
                                    "mode": meta.mode, "rollover": meta.rollover,
                                    "direction": meta.direction, "max_rate": meta.max_rate,
                                    "ncv_kj_per_unit": meta.ncv_kj_per_unit,
                                    "tco2_per_unit": meta.tco2_per_unit}
        return {"meters": ["/".join(k) for k in self._meters], "meta": metas}

    def restore(self, snapshot: dict[str, object]) -> None:
        """Number meters as ``snapshot`` did; only on a registry that has seen no meter yet.

        Every meter of the snapshot is taken back, even beyond the limits (they may have
        been lowered since): the saved kernel state refers to them by number.
        """
        if self._meters:
            raise RuntimeError("restore() needs an empty registry")
        for name, meta in dict(snapshot.get("meta", {})).items():  # type: ignore[call-overload]
            site, line, kind, meter = name.split("/")
            desc = MeterDescription(
                meta["carrier"], meta["unit"], meta["mode"], float(meta["rollover"]),
                meta.get("direction", "import"), float(meta.get("max_rate", 0.0)),
                meta.get("ncv_kj_per_unit"), meta.get("tco2_per_unit"))
            self._meta[(site, line, kind, meter)] = desc
            self._item_bytes += _key_bytes((site, line, kind, meter)) + sys.getsizeof(desc)
        for name in list(snapshot["meters"]):  # type: ignore[call-overload]
            site, line, kind, meter = name.split("/")
            self._register((site, line, kind, meter))


def _key_bytes(key: MeterName) -> int:
    return sys.getsizeof(key) + sum(map(sys.getsizeof, key))
