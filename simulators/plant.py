"""Process models: what a line's meters truly count, over plant time.

Each model describes a line as a sequence of ``Segment``s, stretches of plant
time over which every meter counts at a steady rate, plus a step at the
segment's end (tapped steel or metal, weighed at once). ``sample_totals``
integrates the segments exactly, so a meter's true cumulative quantity at any
plant time is known without rounding through a fixed time step. Everything is
a pure function of the model's parameters and a seeded ``random.Random``.

The three models, with magnitudes from the project's reference data
(``reference/energy.yaml``: carriers after GB/T 2589; ``simulator_hints`` and
the NDRC 2021/2023 levels for the figures per tonne):

- ``eaf``: an electric arc furnace shop. Heats of 40-60 min tap to tap: power
  off while charging, power on for the melt (arc power varying minute to
  minute), power off again to tap. About 370-450 kWh of arc energy per tonne of
  liquid steel plus auxiliaries (reference: 400-500 kWh/t modern), oxy-fuel
  burners on natural gas early in the melt, and the tapped tonnes counted
  once per heat, at the end of tapping. Oxygen, a working medium rather than
  a carrier of the reference data, is not metered.
- ``potline``: an aluminium potline on a near-constant DC line current
  (300 kA, ~4.15 V per cell; reference: 300 kA, 4.2 V). The AC energy counted
  at the rectifiers comes to ~13,300 kWh per tonne of liquid aluminium (NDRC
  baseline 13,350, benchmark 13,000). Metal accrues in every pot by Faraday's
  law at ~94.5 % current efficiency and is tapped pot by pot on a rota.
- ``kiln``: a cement kiln making clinker continuously (5,000 t/d), burning raw
  coal (~145 kg/t, i.e. ~104 kgce/t at 0.7143 kgce/kg) and drawing ~55 kWh/t of
  electricity (reference: 48-61 kWh/t), ~110 kgce/t in all (NDRC benchmark 100,
  baseline 117).

Lines are named ``<model>-<n>`` (``eaf-1``, ``potline-2``); ``n`` only changes
the seed's stream.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattline.simulators.events import Event

__all__ = [
    "ALUMINIUM_KG_PER_KAH",
    "MODELS",
    "EafParams",
    "GenericEnergy",
    "GenericParams",
    "KilnParams",
    "MeterSpec",
    "PotlineParams",
    "ProcessModel",
    "Segment",
    "eaf_segments",
    "kiln_segments",
    "line_model",
    "line_totals",
    "potline_segments",
    "sample_totals",
]

#: Aluminium deposited per kA·h at 100 % current efficiency (Faraday's law):
#: 3.6e6 C / (3 x 96,485.3 C/mol) x 26.9815 g/mol = 335.57 g.
ALUMINIUM_KG_PER_KAH = 0.33557

_LINE_NAME = re.compile(r"([a-z]+)-(\d+)")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter of a line: what it counts, in the contract's terms (kind, carrier, unit)."""

    meter: str
    kind: str  # "energy" or "production"
    carrier: str | None  # a carrier of the reference data; None for production
    unit: str  # the carrier's reference unit, or "t" for production
    direction: str = "import"  # "export": energy leaving the line (counts negatively)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of plant time over which each meter counts at a steady rate.

    ``rates[i]`` is meter i's count per plant second during the segment;
    ``steps[i]`` is counted at once at the segment's end (a tap, weighed).
    """

    duration_s: float
    rates: tuple[float, ...]
    steps: tuple[float, ...]


# --- the electric arc furnace -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EafParams:
    """An EAF shop's heats; ranges are ``(low, high)``, drawn uniformly per heat."""

    tap_weight_t: float  # mean liquid steel tapped per heat
    tap_weight_sd_t: float
    arc_kwh_per_t: tuple[float, float]  # arc energy per tonne tapped
    tap_to_tap_min: tuple[float, float]
    power_off_min: tuple[float, float]  # charging, tapping and turnaround, per heat
    auxiliary_kw: float  # fume extraction, cooling, hydraulics: drawn all the time
    arc_power_noise: float  # relative spread of the arc power from minute to minute
    gas_m3_per_t: tuple[float, float]  # burner natural gas per tonne tapped
    burner_share: float  # share of the power-on time the burners fire, from its start
    steam_kg_per_kwh: float = 0.0  # off-gas boiler steam sent out per kWh drawn; 0: none

    def start_phase_s(self) -> float:
        """The line starts observing somewhere within its first heat."""
        return self.tap_to_tap_min[1] * 60.0


EAF_METERS = (
    MeterSpec("power", "energy", "electricity", "kWh"),
    MeterSpec("gas", "energy", "natural_gas", "m3"),
    MeterSpec("steel", "production", None, "t"),
)
EAF_STEAM_OUT = MeterSpec("steam-out", "energy", "steam", "kg", direction="export")
"""With ``steam_kg_per_kwh``: the waste-heat boiler's steam sent to the works' network."""


def eaf_meters(p: EafParams) -> tuple[MeterSpec, ...]:
    return (*EAF_METERS, EAF_STEAM_OUT) if p.steam_kg_per_kwh > 0 else EAF_METERS


def eaf_line_segments(p: EafParams, rng: random.Random) -> Iterator[Segment]:
    """``eaf_segments``, with the exported steam (in proportion to the power drawn) when
    the shop has a waste-heat boiler; the random draws are the same either way."""
    segments = eaf_segments(p, rng)
    return _exporting(segments, 0, p.steam_kg_per_kwh) if p.steam_kg_per_kwh > 0 else segments


def _exporting(segments: Iterable[Segment], source: int, per_unit: float) -> Iterator[Segment]:
    """Each segment with one more meter last: ``per_unit`` times meter ``source``'s rate."""
    for s in segments:
        yield Segment(s.duration_s, (*s.rates, s.rates[source] * per_unit), (*s.steps, 0.0))


def eaf_segments(p: EafParams, rng: random.Random) -> Iterator[Segment]:
    """Heat after heat: turn around and charge (power off), melt and refine (power on), tap.

    A heat ends with its tap, so the time between two taps is the heat's tap-to-tap time.
    """
    aux = p.auxiliary_kw / 3600.0  # kWh per second
    while True:
        tonnes = max(rng.gauss(p.tap_weight_t, p.tap_weight_sd_t), 0.5 * p.tap_weight_t)
        arc_kwh = tonnes * rng.uniform(*p.arc_kwh_per_t)
        gas_m3 = tonnes * rng.uniform(*p.gas_m3_per_t)
        tap_to_tap_s = rng.uniform(*p.tap_to_tap_min) * 60.0
        off_s = min(rng.uniform(*p.power_off_min) * 60.0, 0.5 * tap_to_tap_s)
        on_s = tap_to_tap_s - off_s
        tap_s = off_s * rng.uniform(0.25, 0.4)
        charge_s = off_s - tap_s  # turnaround and charging

        yield Segment(charge_s, (aux, 0.0, 0.0), (0.0, 0.0, 0.0))
        # Power on in one-minute pieces whose arc power varies but adds up to arc_kwh.
        pieces = [60.0] * int(on_s // 60.0)
        if on_s - 60.0 * len(pieces) > 1e-9:
            pieces.append(on_s - 60.0 * len(pieces))
        weights = [max(0.3, rng.gauss(1.0, p.arc_power_noise)) for _ in pieces]
        weighted_s = sum(w * d for w, d in zip(weights, pieces, strict=True))
        n_burner = max(1, round(len(pieces) * p.burner_share))
        burner_s = sum(pieces[:n_burner])
        for i, (d, w) in enumerate(zip(pieces, weights, strict=True)):
            arc = arc_kwh * w / weighted_s
            gas = gas_m3 / burner_s if i < n_burner else 0.0
            yield Segment(d, (aux + arc, gas, 0.0), (0.0, 0.0, 0.0))
        yield Segment(tap_s, (aux, 0.0, 0.0), (0.0, 0.0, tonnes))


# --- the aluminium potline ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PotlineParams:
    """A potline: pots in series on one DC line current, tapped on a rota."""

    pots: int
    line_current_ka: float
    current_noise: float  # relative spread of the line current per minute
    cell_voltage_v: float
    voltage_noise: float  # relative spread of the mean cell voltage per minute
    current_efficiency: float
    current_efficiency_spread: float  # pot to pot
    rectifier_efficiency: float  # DC out / AC in at the rectifiers, where the meter is
    tap_interval_h: float  # each pot is tapped this often

    def start_phase_s(self) -> float:
        return 0.0


POTLINE_METERS = (
    MeterSpec("power", "energy", "electricity", "kWh"),
    MeterSpec("metal", "production", None, "t"),
)


def potline_segments(p: PotlineParams, rng: random.Random) -> Iterator[Segment]:
    """Minute by minute load; one pot tapped every ``tap_interval / pots``, in turn.

    A tap takes out the metal its pot made since its previous tap: the line's
    charge since then times Faraday's yield times the pot's current efficiency.
    Before plant time 0 every pot is taken to have run at the nominal current.
    """
    interval_s = p.tap_interval_h * 3600.0
    spacing_s = interval_s / p.pots
    n_pieces = max(1, math.ceil(spacing_s / 60.0))
    piece_s = spacing_s / n_pieces
    efficiency = [
        rng.gauss(p.current_efficiency, p.current_efficiency_spread) for _ in range(p.pots)
    ]
    charge_kas = 0.0  # the line's charge since plant time 0, kA·s
    # Pot j is first tapped at (j + 1) * spacing; its previous tap was one interval before.
    last_tap_kas = [
        -(interval_s - (j + 1) * spacing_s) * p.line_current_ka for j in range(p.pots)
    ]
    pot = 0
    while True:
        for i in range(n_pieces):
            current = p.line_current_ka * (1.0 + rng.gauss(0.0, p.current_noise))
            volts = p.cell_voltage_v * p.pots * (1.0 + rng.gauss(0.0, p.voltage_noise))
            ac_kw = volts * current / p.rectifier_efficiency  # V x kA = kW
            charge_kas += current * piece_s
            tapped_t = 0.0
            if i == n_pieces - 1:
                kah = (charge_kas - last_tap_kas[pot]) / 3600.0
                tapped_t = kah * ALUMINIUM_KG_PER_KAH * efficiency[pot] / 1000.0
                last_tap_kas[pot] = charge_kas
                pot = (pot + 1) % p.pots
            yield Segment(piece_s, (ac_kw / 3600.0, 0.0), (0.0, tapped_t))


# --- the cement kiln ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KilnParams:
    """A clinker kiln at a steady output, with slowly wandering feed, fuel and power."""

    clinker_t_per_day: float
    feed_noise: float  # relative spread of the clinker rate (slowly varying)
    coal_kg_per_t: float  # raw coal per tonne of clinker
    coal_noise: float
    electricity_kwh_per_t: float
    power_noise: float
    waste_heat_mj_per_t: float = 0.0  # heat recovered and sent out per tonne; 0: none

    def start_phase_s(self) -> float:
        return 0.0


KILN_METERS = (
    MeterSpec("power", "energy", "electricity", "kWh"),
    MeterSpec("coal", "energy", "raw_coal", "kg"),
    MeterSpec("clinker", "production", None, "t"),
)
KILN_HEAT_OUT = MeterSpec("heat-out", "energy", "heat", "MJ", direction="export")
"""With ``waste_heat_mj_per_t``: the cooler and preheater waste heat sent out (to a dryer
next door, say), metered at the line's boundary."""


def kiln_meters(p: KilnParams) -> tuple[MeterSpec, ...]:
    return (*KILN_METERS, KILN_HEAT_OUT) if p.waste_heat_mj_per_t > 0 else KILN_METERS


def kiln_line_segments(p: KilnParams, rng: random.Random) -> Iterator[Segment]:
    """``kiln_segments``, with the exported heat (in proportion to the clinker made) when
    the kiln sends waste heat out; the random draws are the same either way."""
    segments = kiln_segments(p, rng)
    return (_exporting(segments, 2, p.waste_heat_mj_per_t) if p.waste_heat_mj_per_t > 0
            else segments)

_KILN_PERSISTENCE = 0.95  # minute-to-minute correlation of the kiln's wandering


def kiln_segments(p: KilnParams, rng: random.Random) -> Iterator[Segment]:
    """Minute by minute: clinker, coal and electricity rates, each wandering around its mean."""
    a = _KILN_PERSISTENCE
    b = math.sqrt(1.0 - a * a)
    feed = coal = power = 0.0
    clinker_per_s = p.clinker_t_per_day / 86_400.0
    while True:
        feed = a * feed + b * rng.gauss(0.0, p.feed_noise)
        coal = a * coal + b * rng.gauss(0.0, p.coal_noise)
        power = a * power + b * rng.gauss(0.0, p.power_noise)
        clinker = clinker_per_s * max(0.0, 1.0 + feed)
        yield Segment(
            60.0,
            (
                clinker * p.electricity_kwh_per_t * max(0.0, 1.0 + power),
                clinker * p.coal_kg_per_t * max(0.0, 1.0 + coal),
                clinker,
            ),
            (0.0, 0.0, 0.0),
        )


# --- a generic line, defined entirely in its scenario file --------------------------------


@dataclass(frozen=True, slots=True)
class GenericEnergy:
    """One energy meter of a generic line: what it draws per tonne and when idle."""

    meter: str
    carrier: str  # a carrier of the reference data
    unit: str  # that carrier's unit
    per_t: float  # units per tonne of output
    idle_per_h: float = 0.0  # units per hour drawn whatever the output
    noise: float = 0.0  # minute-to-minute relative spread


@dataclass(frozen=True, slots=True)
class GenericParams:
    """A line of any product: an output rate, and energy meters proportional to it.

    ``batch_min`` 0 counts the output continuously; otherwise the output made during
    each batch of that many minutes is counted at once at its end (a weighed batch).
    """

    output_t_per_h: float
    energy: tuple[GenericEnergy, ...]
    production_meter: str = "output"
    output_noise: float = 0.0
    batch_min: float = 0.0

    def __post_init__(self) -> None:
        if self.output_t_per_h < 0 or self.batch_min < 0:
            raise ValueError("output_t_per_h and batch_min must not be negative")
        if not self.energy:
            raise ValueError("a generic line needs at least one [plant.energy.<meter>] table")
        names = [e.meter for e in self.energy] + [self.production_meter]
        if len(set(names)) != len(names):
            raise ValueError(f"meter names repeat: {', '.join(names)}")

    def start_phase_s(self) -> float:
        return 0.0

    @classmethod
    def from_table(cls, plant: dict[str, Any]) -> GenericParams:
        """From a scenario's ``[plant]`` table, whose ``energy`` holds one table per meter."""
        table = dict(plant)
        energy = table.pop("energy", None)
        if not isinstance(energy, dict) or not energy:
            raise ValueError("a generic line needs [plant.energy.<meter>] tables")
        return cls(energy=tuple(GenericEnergy(meter=name, **spec)
                                for name, spec in energy.items()), **table)


def generic_meters(p: GenericParams) -> tuple[MeterSpec, ...]:
    return (*(MeterSpec(e.meter, "energy", e.carrier, e.unit) for e in p.energy),
            MeterSpec(p.production_meter, "production", None, "t"))


def generic_segments(p: GenericParams, rng: random.Random) -> Iterator[Segment]:
    """Minute by minute: the output wanders, each meter draws per tonne plus its idle load."""
    a = _KILN_PERSISTENCE
    b = math.sqrt(1.0 - a * a)
    wander = 0.0
    made = 0.0  # output of the batch so far
    minute = 0
    while True:
        wander = a * wander + b * rng.gauss(0.0, p.output_noise)
        output = p.output_t_per_h / 3600.0 * max(0.0, 1.0 + wander)
        rates = [
            (e.per_t * output + e.idle_per_h / 3600.0) * max(0.0, 1.0 + rng.gauss(0.0, e.noise))
            for e in p.energy
        ]
        minute += 1
        if p.batch_min <= 0:
            yield Segment(60.0, (*rates, output), (*(0.0 for _ in rates), 0.0))
            continue
        made += output * 60.0
        step = 0.0
        if minute >= p.batch_min:
            step, made, minute = made, 0.0, 0
        yield Segment(60.0, (*rates, 0.0), (*(0.0 for _ in rates), step))


# --- lines ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessModel:
    """A model of one kind of line: its meters, parameter type and segment generator.

    A model whose meters depend on its parameters has ``meters_of``: the generic line
    (``meters`` empty), and the EAF and kiln, whose export meters exist only with their
    parameters (``meters`` are those without). ``params_from`` builds its parameters
    from a scenario's ``[plant]`` table when that is not a flat list of the parameters.
    """

    name: str
    product: str  # the product of the reference data's national levels
    meters: tuple[MeterSpec, ...]
    params_type: type
    segments: Callable[[Any, random.Random], Iterator[Segment]]
    meters_of: Callable[[Any], tuple[MeterSpec, ...]] | None = None
    params_from: Callable[[dict[str, Any]], Any] | None = None

    def meters_for(self, params: Any) -> tuple[MeterSpec, ...]:
        """The line's meters under ``params``, in the order of the segments' rates."""
        return self.meters_of(params) if self.meters_of is not None else self.meters


MODELS: dict[str, ProcessModel] = {
    "eaf": ProcessModel("eaf", "eaf_steel", EAF_METERS, EafParams, eaf_line_segments,
                        meters_of=eaf_meters),
    "potline": ProcessModel(
        "potline", "aluminium_liquid", POTLINE_METERS, PotlineParams, potline_segments
    ),
    "kiln": ProcessModel("kiln", "cement_clinker", KILN_METERS, KilnParams, kiln_line_segments,
                         meters_of=kiln_meters),
    "generic": ProcessModel("generic", "", (), GenericParams, generic_segments,
                            meters_of=generic_meters, params_from=GenericParams.from_table),
}


def line_model(line: str) -> ProcessModel:
    """The model a line name ``<model>-<n>`` names; ``ValueError`` saying what exists."""
    m = _LINE_NAME.fullmatch(line)
    if m is None or m.group(1) not in MODELS:
        raise ValueError(
            f"line {line!r} is not <model>-<n> with model one of {', '.join(MODELS)} "
            "(for example eaf-1, potline-1, kiln-1, generic-1)"
        )
    return MODELS[m.group(1)]


def sample_totals(
    segments: Iterable[Segment], times_s: Iterable[float], *, origin_s: float = 0.0
) -> Iterator[tuple[float, ...]]:
    """Each meter's true cumulative count at each time, counted from ``origin_s``.

    Times are plant seconds on the segments' clock (the first segment starts at
    0), non-decreasing and at least ``origin_s``. A step at a segment's end is
    counted at every time from that end on.
    """
    it = iter(segments)
    seg = next(it)
    seg_start = 0.0
    base = [0.0] * len(seg.rates)

    def move_to(t: float) -> None:
        nonlocal seg, seg_start
        while t >= seg_start + seg.duration_s:
            for i, (rate, step) in enumerate(zip(seg.rates, seg.steps, strict=True)):
                base[i] += rate * seg.duration_s + step
            seg_start += seg.duration_s
            seg = next(it)

    move_to(origin_s)
    origin = [b + r * (origin_s - seg_start) for b, r in zip(base, seg.rates, strict=True)]
    last_t = origin_s
    for t in times_s:
        if t < last_t:
            raise ValueError(f"times must not decrease: {t} after {last_t}")
        last_t = t
        move_to(t)
        yield tuple(
            b + r * (t - seg_start) - o
            for b, r, o in zip(base, seg.rates, origin, strict=True)
        )


def line_totals(
    line: str, params: Any, times_s: Iterable[float], *, seed: int,
    events: Sequence[Event] = (),
) -> Iterator[tuple[float, ...]]:
    """A line's meters' true cumulative counts (in ``line_model(line).meters_for(params)``
    order).

    ``times_s`` are plant seconds since the line is first observed (0 = start),
    non-decreasing; the counts start at 0 there. The same line, parameters and
    seed always give the same counts; lines of the same model with different
    numbers run independently. ``events`` of this line are laid over the model
    (``wattline.simulators.events``); others are ignored.
    """
    from wattline.simulators.events import apply_events

    model = line_model(line)
    if not isinstance(params, model.params_type):
        raise TypeError(f"{line} takes {model.params_type.__name__}, got {type(params).__name__}")
    rng = random.Random(f"{seed}/{line}/plant")
    phase = rng.uniform(0.0, params.start_phase_s())
    segments = model.segments(params, rng)
    own = [e for e in events if e.line == line]
    if own:
        segments = apply_events(segments, model.meters_for(params), own, origin_s=phase)
    return sample_totals(segments, (phase + t for t in times_s), origin_s=phase)
