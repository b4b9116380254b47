"""Scenarios: a model's plant parameters and its gateway's meters, from a TOML file.

The packaged ``scenarios/<model>.toml`` (``eaf``, ``potline``, ``kiln``) describe
the demo's lines; every key is documented there. A file has a ``description``,
a ``[plant]`` table whose keys are exactly the model's parameters, and one
``[meters.<meter>]`` table per meter of the model with the fields of
``GatewaySpec``. Unknown or missing keys are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from wattline.simulators.gateway import GatewaySpec
from wattline.simulators.plant import MODELS, MeterSpec, ProcessModel

__all__ = ["Scenario", "load_scenario", "parse_scenario", "read_scenario"]


@dataclass(frozen=True)
class Scenario:
    """One model's line as simulated: plant parameters and a gateway spec per meter."""

    model: ProcessModel
    description: str
    params: Any  # the model's params_type
    gateways: dict[str, GatewaySpec]

    @property
    def meters(self) -> tuple[MeterSpec, ...]:
        """The line's meters, in the model's order."""
        return self.model.meters_for(self.params)

    def gateway_specs(self) -> list[GatewaySpec]:
        """The specs in the model's meter order."""
        return [self.gateways[m.meter] for m in self.meters]


@cache
def load_scenario(model: str) -> Scenario:
    """The packaged scenario of a model (``eaf``, ``potline``, ``kiln``)."""
    if model not in MODELS:
        raise ValueError(f"no scenario for model {model!r}; models: {', '.join(MODELS)}")
    text = (files("wattline.simulators") / "scenarios" / f"{model}.toml").read_text("utf-8")
    return parse_scenario(model, tomllib.loads(text), source=f"scenarios/{model}.toml")


def read_scenario(model: str, path: str | Path) -> Scenario:
    """A scenario of ``model`` from a TOML file of one's own."""
    with open(path, "rb") as f:
        return parse_scenario(model, tomllib.load(f), source=str(path))


def parse_scenario(model: str, doc: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Check a parsed scenario document against the model and build it."""
    process = MODELS[model]
    _exact_keys(doc, {"description", "plant", "meters"}, {"description"}, source)
    plant = _table(doc, "plant", source)
    fields = {f.name: f for f in dataclasses.fields(process.params_type)}
    required = {name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    _exact_keys(plant, set(fields), set(fields) - required, f"{source} [plant]")
    try:
        if process.params_from is not None:
            params = process.params_from(plant)
        else:
            params = process.params_type(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in plant.items()}
            )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} [plant]: {exc}") from None
    meters = _table(doc, "meters", source)
    names = {m.meter for m in process.meters_for(params)}
    _exact_keys(meters, names, set(), f"{source} [meters]")
    spec_fields = {f.name for f in dataclasses.fields(GatewaySpec)}
    gateways: dict[str, GatewaySpec] = {}
    for name in names:
        table = _table(meters, name, f"{source} [meters]")
        _exact_keys(table, spec_fields, spec_fields - {"decimals"}, f"{source} [meters.{name}]")
        try:
            gateways[name] = GatewaySpec(**table)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source} [meters.{name}]: {exc}") from None
    return Scenario(process, str(doc.get("description", model)), params, gateways)


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: [{key}] must be a table")
    return value


def _exact_keys(doc: dict[str, Any], allowed: set[str], optional: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(allowed))}")
    missing = sorted(allowed - optional - set(doc))
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
