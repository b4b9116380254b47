"""The config file's tables: ``[meters."site/line/kind/meter"]``, ``[lines."site/line"]``
and ``[rename]``.

A meter table describes a meter the way a retained ``meta`` message would (the file
wins over ``meta``); a line table names the line's product, for its national levels,
makes it a batch line (``batch``, ``idle_kw``), overrides the daemon-wide alert
tuning for that line and may give its process CO2 by mass balance (``process_co2_*``,
for the CBAM report). The rename table gives a site, line or meter, as a gateway
names it, the name wattline uses for it everywhere downstream (``parse_renames``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from wattline.contract.errors import ConfigError
from wattline.contract.topics import KINDS, valid_name
from wattline.ingest.config_schema import positive_number
from wattline.ingest.decode.meta import (
    DIRECTIONS,
    METER_MODES,
    check_max_rate,
    check_ncv,
    check_rollover,
    check_tco2_per_unit,
)
from wattline.ingest.process_co2 import PROCESS_KEYS, ProcessCo2, parse_process_co2

__all__ = ["LineSettings", "MeterSettings", "check_grid_factor", "parse_lines", "parse_meters",
           "parse_renames", "unknown_key"]

GRID_FACTOR_LIMIT = 2.0
"""kgCO2/kWh: no grid emits more (coal plants about 1); a larger number is likely g/kWh."""


def check_grid_factor(value: float | None) -> None:
    """Raise ``ConfigError`` for a ``grid_factor`` that cannot be kgCO2 per kWh."""
    if value is None:
        return
    if not math.isfinite(value) or not 0 <= value <= GRID_FACTOR_LIMIT:
        raise ConfigError("grid_factor", f"must be kgCO2 per kWh between 0 and "
                          f"{GRID_FACTOR_LIMIT:g}, got {value!r}",
                          suggestion="give kg per kWh (= t per MWh): 0.5306, not 530.6 g/kWh")


@dataclass(frozen=True)
class MeterSettings:
    """A meter described in the config file: it overrides the meter's ``meta``."""

    carrier: str | None = None
    unit: str | None = None
    mode: str | None = None
    rollover: float | None = None
    direction: str | None = None  # import | export
    max_rate: float | None = None  # per hour, in the meter's unit
    ncv_kj_per_unit: float | None = None  # measured net calorific value, kJ per carrier unit
    tco2_per_unit: float | None = None  # measured CO2 factor, t per carrier unit


@dataclass(frozen=True)
class LineSettings:
    """A line described in the config file: its product (national levels) and alert tuning.

    ``None`` takes the daemon-wide setting of the same name.
    """

    product: str | None = None
    alert_for: int | None = None
    spike_ratio: float | None = None
    spike_clear_ratio: float | None = None
    surge_k: float | None = None
    batch: bool = False  # a production reading with a positive delta closes a batch
    idle_kw: float | None = None  # a batch line is idle while its energy rate is below this
    process_co2: ProcessCo2 | None = None  # mass balance, for the CBAM report (process_co2.py)


_LINE_KEYS = (*(f.name for f in fields(LineSettings) if f.name != "process_co2"),
              *PROCESS_KEYS)
_METER_KEYS = tuple(f.name for f in fields(MeterSettings))


def unknown_key(key: str, known: tuple[str, ...], where: str = "") -> ConfigError:
    """A ``ConfigError`` for ``key``, suggesting the closest of ``known``."""
    close = difflib.get_close_matches(key, known, n=1)
    return ConfigError(
        f"{where}{key}",
        "unknown key",
        suggestion=f"did you mean {close[0]!r}?" if close else None,
    )


def parse_lines(table: Any) -> dict[str, LineSettings]:
    from wattline.contract.reference_data import load_reference

    if not isinstance(table, dict):
        raise ConfigError("lines", 'expected tables like [lines."site/line"]')
    products = sorted(load_reference().levels)
    out: dict[str, LineSettings] = {}
    for name, spec in table.items():
        where = f"lines.{name!r}"
        if name.count("/") != 1 or not all(name.split("/")):
            raise ConfigError(where, "a line is named site/line")
        if not isinstance(spec, dict):
            raise ConfigError(where, "expected a table with product and alert settings")
        for k in spec:
            if k not in _LINE_KEYS:
                raise unknown_key(k, _LINE_KEYS, where=f"{where}.")
        product = spec.get("product")
        if product is not None and product not in products:
            close = difflib.get_close_matches(str(product), products, n=1)
            raise ConfigError(f"{where}.product", f"no national levels for {product!r}; the "
                              f"reference data has {', '.join(products)}",
                              suggestion=f"did you mean {close[0]!r}?" if close else None)
        alert_for = spec.get("alert_for")
        if alert_for is not None and (isinstance(alert_for, bool)
                                      or not isinstance(alert_for, int) or alert_for < 1):
            raise ConfigError(f"{where}.alert_for", f"must be a whole number of ticks >= 1, "
                              f"got {alert_for!r}")
        numbers = {k: positive_number(f"{where}.{k}", spec[k])
                   for k in ("spike_ratio", "spike_clear_ratio", "surge_k", "idle_kw")
                   if k in spec}
        batch = spec.get("batch", False)
        if not isinstance(batch, bool):
            raise ConfigError(f"{where}.batch", f"must be true or false, got {batch!r}")
        if "idle_kw" in spec and not batch:
            raise ConfigError(f"{where}.idle_kw", "only a batch line has an idle_kw: set "
                              "batch = true, or remove idle_kw")
        out[name] = LineSettings(product=product, alert_for=alert_for, batch=batch,
                                 process_co2=parse_process_co2(where, spec), **numbers)
    return out


def parse_meters(table: Any) -> dict[str, MeterSettings]:
    if not isinstance(table, dict):
        raise ConfigError("meters", 'expected tables like [meters."site/line/energy/meter"]')
    out: dict[str, MeterSettings] = {}
    for name, spec in table.items():
        where = f"meters.{name!r}"
        if name.count("/") != 3:
            raise ConfigError(where, "a meter is named site/line/kind/meter")
        if not isinstance(spec, dict):
            raise ConfigError(where, "expected a table with carrier, unit, mode, rollover, "
                              "direction, max_rate, ncv_kj_per_unit, tco2_per_unit")
        for k in spec:
            if k not in _METER_KEYS:
                raise unknown_key(k, _METER_KEYS, where=f"{where}.")
        mode = spec.get("mode")
        if mode is not None and mode not in METER_MODES:
            raise ConfigError(f"{where}.mode", f"must be counter or delta, got {mode!r}")
        direction = spec.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise ConfigError(f"{where}.direction", f"must be import or export, got {direction!r}")
        if direction == "export" and name.split("/")[2] == "production":
            raise ConfigError(f"{where}.direction", "a production meter cannot be an export "
                              "meter: only energy leaves a line's boundary")
        numbers: dict[str, float | None] = {}
        for key, check in (("rollover", check_rollover), ("max_rate", check_max_rate),
                           ("ncv_kj_per_unit", check_ncv), ("tco2_per_unit", check_tco2_per_unit)):
            value = spec.get(key)
            problem = None if value is None else check(value)
            if problem is not None:
                raise ConfigError(f"{where}.{key}", problem.removeprefix(f"{key} "))
            numbers[key] = None if value is None else float(value)
        for k in ("carrier", "unit"):
            if spec.get(k) is not None and not isinstance(spec[k], str):
                raise ConfigError(f"{where}.{k}", f"expected a string, got {spec[k]!r}")
        out[name] = MeterSettings(
            carrier=spec.get("carrier"),
            unit=spec.get("unit"),
            mode=mode,
            direction=direction,
            **numbers,
        )
    return out


_RENAME_FORMS = ('a site ("Plant A"), a line of a site ("Plant A/EAF 1") or a meter '
                 '("Plant A/EAF 1/energy/Main")')


def parse_renames(table: Any) -> dict[str, str]:
    """``[rename]``: each key a site, ``site/line`` or ``site/line/kind/meter`` as the
    gateway names it, each value the name wattline gives that site, line or meter.

    Keys and values must be names (``valid_name``), and no two entries may give the
    same name in the same place (two sites one name, two lines of one site one name,
    two meters of one line and kind one name): which gateway's readings it held would
    depend on which arrived first. Raises ``ConfigError`` naming the entry.
    """
    if not isinstance(table, dict):
        raise ConfigError("rename", 'expected a table of names, like [rename] "Plant A" = '
                          '"plant-a"')
    given: dict[tuple[tuple[str, ...], str], str] = {}  # (parent, new name) -> its key
    out: dict[str, str] = {}
    for key, new in table.items():
        where = f"rename.{key!r}"
        parts = key.split("/")
        if len(parts) not in (1, 2, 4) or not all(valid_name(p) for p in parts):
            raise ConfigError(where, f"a key is {_RENAME_FORMS}, each name 1-64 characters "
                              "without control characters or white space at either end")
        if len(parts) == 4 and parts[2] not in KINDS:
            raise ConfigError(where, f"kind must be energy or production, got {parts[2]!r}")
        if not isinstance(new, str):
            raise ConfigError(where, f"expected the new name, a string, got {new!r}",
                              suggestion="quote keys holding a dot or a slash")
        if not valid_name(new):
            raise ConfigError(where, f"{new!r} is not a name: use 1-64 characters without "
                              "control characters, white space at either end, . or ..")
        parent = tuple(parts[:-1])
        other = given.get((parent, new))
        if other is not None:
            raise ConfigError(where, f"{other!r} is renamed to {new!r} too: two sources would "
                              "write as one", suggestion="give each its own name")
        given[(parent, new)] = key
        out[key] = new
    return out
