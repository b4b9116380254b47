"""Which meters and lines exist, and how each meter's deltas convert to kgce, kWh and tonnes.

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
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from wattline.contract.errors import ConfigError
from wattline.contract.reference_data import ReferenceData
from wattline.ingest.config import MeterSettings
from wattline.ingest.decode.meta import MeterMeta
from wattline.kernels import MeterTable, StreamState

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

REFUSED = -1
"""``meter_index`` of a meter beyond the registry's limits."""
REFUSED_REMEMBERED = 10_000
"""Refused meters remembered, so that each is reported once (forgotten all at once when
full, so memory stays bounded whatever a flood of new names)."""


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

    @staticmethod
    def default(kind: str) -> MeterDescription:
        if kind == "production":
            return MeterDescription(None, "t", "counter", 0.0)
        return MeterDescription("electricity", "kWh", "counter", 0.0)


def state_nbytes(state: StreamState) -> int:
    """Bytes held by the kernel state's arrays."""
    return sum(getattr(state, f.name).nbytes for f in fields(state))


def _usable_factor(x: float) -> bool:
    return math.isfinite(x) and x > 0


def conversion_factors(
    kind: str, desc: MeterDescription, reference: ReferenceData
) -> tuple[float, float, float]:
    """(kgce, kWh, tonnes) per unit of this meter's readings.

    An export meter's factors are negative: its deltas are energy leaving the line's
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
    kgce = carrier.kgce_per_unit * per_unit
    if not (_usable_factor(per_unit) and _usable_factor(kgce)):
        raise MeterDescriptionError(
            f"unit {desc.unit!r} of carrier {carrier.name} converts by {per_unit!r} to "
            f"{carrier.unit} and {kgce!r} to kgce: factors must be positive and finite"
        )
    kwh = per_unit if carrier.name == "electricity" else 0.0
    if desc.direction == "export":
        return -kgce, -kwh if kwh else 0.0, 0.0
    return kgce, kwh, 0.0


def merge_description(
    kind: str,
    base: MeterDescription,
    carrier: str | None,
    unit: str | None,
    mode: str | None,
    rollover: float | None,
    direction: str | None = None,
    max_rate: float | None = None,
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
    )


class MeterRegistry:
    """Numbers meters and lines; keeps their descriptions; builds the ``MeterTable``.

    Called from the pipeline thread only.
    """

    def __init__(
        self, reference: ReferenceData, configured: dict[str, MeterSettings] | None = None,
        *, max_lines: int = 2000, max_meters: int = 20_000,
    ) -> None:
        self._reference = reference
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
                                   meta.direction, meta.max_rate)
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
                                     spec.direction, spec.max_rate)
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
            for i, (kind, desc) in enumerate(zip(self._kind, self._desc, strict=True)):
                kgce[i], kwh[i], tonnes[i] = conversion_factors(kind, desc, self._reference)
            self._table = MeterTable(
                line=np.array(self._meter_line, dtype=np.int32),
                kgce_per_unit=kgce,
                kwh_per_unit=kwh,
                t_per_unit=tonnes,
                delta_mode=np.array([d.mode == "delta" for d in self._desc], dtype=np.bool_),
                rollover=np.array([d.rollover for d in self._desc], dtype=np.float64),
                max_rate=self.max_rates_per_hour(),
                n_lines=self.n_lines,
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
                                    "direction": meta.direction, "max_rate": meta.max_rate}
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
                meta.get("direction", "import"), float(meta.get("max_rate", 0.0)))
            self._meta[(site, line, kind, meter)] = desc
            self._item_bytes += _key_bytes((site, line, kind, meter)) + sys.getsizeof(desc)
        for name in list(snapshot["meters"]):  # type: ignore[call-overload]
            site, line, kind, meter = name.split("/")
            self._register((site, line, kind, meter))


def _key_bytes(key: MeterName) -> int:
    return sys.getsizeof(key) + sum(map(sys.getsizeof, key))
