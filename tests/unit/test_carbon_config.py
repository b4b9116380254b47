"""Carbon settings: the grid factor, a meter's measured calorific value or CO2 factor in
the config file and in meta, and the meter table they make; check-config's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from wattline.contract.errors import PayloadError
from wattline.contract.reference_data import load_reference
from wattline.ingest.app.cli import main
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.decode.meta import decode_meta
from wattline.ingest.decode.registry import MeterRegistry

REF = load_reference()
COAL = REF.carriers["raw_coal"]
KJ_PER_KGCE = 29_307.0


def _table(meters: dict, **settings: object) -> tuple[MeterRegistry, dict[str, int]]:
    """A registry of the config's meters, each registered; their numbers by name."""
    parsed = settings_from_mapping({"meters": meters, **settings})
    registry = MeterRegistry(REF, parsed.meters, grid_kgco2_per_kwh=parsed.grid_factor)
    index = {name: registry.meter_index(*name.split("/")) for name in meters}
    return registry, index


def test_the_default_grid_factor_is_the_newest_national_one() -> None:
    newest = max((g for g in REF.grid_factors if g.region == "CN"), key=lambda g: g.year)
    assert REF.national_grid_factor == newest
    registry, at = _table({"p/l/energy/power": {"carrier": "electricity"}})
    table = registry.table()
    assert table.co2_indirect_per_unit[at["p/l/energy/power"]] == newest.kgco2_per_kwh / 1000
    assert table.co2_direct_per_unit[at["p/l/energy/power"]] == 0.0


def test_a_configured_grid_factor_scales_with_the_meters_unit_and_sign() -> None:
    registry, at = _table({"p/l/energy/power": {"carrier": "electricity", "unit": "MWh"},
                           "p/l/energy/solar-out": {"carrier": "electricity",
                                                    "direction": "export"}},
                          grid_factor=0.5703)
    t = registry.table()
    assert t.co2_indirect_per_unit[at["p/l/energy/power"]] == pytest.approx(0.5703, rel=1e-15)
    assert t.co2_indirect_per_unit[at["p/l/energy/solar-out"]] == pytest.approx(
        -0.5703 / 1000, rel=1e-15)


def test_fuels_burnt_are_scope_1_and_bought_heat_scope_2() -> None:
    registry, at = _table({"p/l/energy/coal": {"carrier": "raw_coal", "unit": "t"},
                           "p/l/energy/steam": {"carrier": "steam"},
                           "p/l/production/clinker": {}})
    t = registry.table()
    coal, steam = at["p/l/energy/coal"], at["p/l/energy/steam"]
    clinker = at["p/l/production/clinker"]
    assert (t.co2_direct_per_unit[coal], t.co2_indirect_per_unit[coal]) == (
        pytest.approx(COAL.tco2_per_unit * 1000, rel=1e-15), 0.0)
    assert (t.co2_direct_per_unit[steam], t.co2_indirect_per_unit[steam]) == (
        0.0, REF.carriers["steam"].tco2_per_unit)
    assert (t.co2_direct_per_unit[clinker], t.co2_indirect_per_unit[clinker]) == (0.0, 0.0)


def test_a_measured_calorific_value_sets_the_kgce_and_scales_the_co2_per_unit_of_energy() -> None:
    ncv = 23_000.0  # kJ/kg, a better coal than the reference's 0.7143 kgce/kg
    registry, at = _table({"p/l/energy/coal": {"carrier": "raw_coal", "ncv_kj_per_unit": ncv}})
    t, m = registry.table(), at["p/l/energy/coal"]
    assert t.kgce_per_unit[m] == pytest.approx(ncv / KJ_PER_KGCE, rel=1e-15)
    per_kj = COAL.tco2_per_unit / (COAL.kgce_per_unit * KJ_PER_KGCE)
    assert t.co2_direct_per_unit[m] == pytest.approx(ncv * per_kj, rel=1e-15)


def test_a_measured_co2_factor_wins_over_the_calorific_value_and_the_grid() -> None:
    registry, at = _table({
        "p/l/energy/coal": {"carrier": "raw_coal", "unit": "t", "ncv_kj_per_unit": 23_000.0,
                            "tco2_per_unit": 0.0021},
        "p/l/energy/ppa": {"carrier": "electricity", "tco2_per_unit": 0.0}})
    t = registry.table()
    assert t.co2_direct_per_unit[at["p/l/energy/coal"]] == pytest.approx(2.1, rel=1e-15)
    assert t.kgce_per_unit[at["p/l/energy/coal"]] == pytest.approx(23_000.0 / KJ_PER_KGCE
                                                                   * 1000, rel=1e-15)
    assert t.co2_indirect_per_unit[at["p/l/energy/ppa"]] == 0.0


def test_meta_gives_a_meters_measured_values_and_the_file_wins_over_it() -> None:
    meta = decode_meta(b'{"carrier": "natural_gas", "ncv_kj_per_unit": 36000, '
                       b'"tco2_per_unit": 0.00202}')
    assert (meta.ncv_kj_per_unit, meta.tco2_per_unit) == (36000.0, 0.00202)
    configured = settings_from_mapping(
        {"meters": {"p/l/energy/gas2": {"tco2_per_unit": 0.0019}}}).meters
    registry = MeterRegistry(REF, configured)
    for name in ("gas1", "gas2"):
        registry.apply_meta("p", "l", "energy", name, meta)
    one, two = (registry.meter_index("p", "l", "energy", n) for n in ("gas1", "gas2"))
    t = registry.table()
    assert t.co2_direct_per_unit[one] == 0.00202 and t.co2_direct_per_unit[two] == 0.0019
    assert t.kgce_per_unit[one] == pytest.approx(36000 / KJ_PER_KGCE, rel=1e-15)
    # A restart numbers and describes the meters as before.
    again = MeterRegistry(REF, configured)
    again.restore(registry.snapshot())
    assert again.table().co2_direct_per_unit.tolist() == t.co2_direct_per_unit.tolist()


@pytest.mark.parametrize("payload, key", [
    (b'{"ncv_kj_per_unit": -5}', "ncv_kj_per_unit"),
    (b'{"tco2_per_unit": 2.5}', "tco2_per_unit"),
    (b'{"tco2_per_unit": "0.002"}', "tco2_per_unit"),
])
def test_a_meta_value_that_cannot_be_a_measured_value_is_refused(payload: bytes,
                                                                  key: str) -> None:
    with pytest.raises(PayloadError, match=key):
        decode_meta(payload)


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "wattline.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize("text, line, key, words", [
    ('emit_every = "10s"\ngrid_factor = 530.6\n', 2, "grid_factor", "530.6 g/kWh"),
    # A meter's key is pointed at by its table's header, as every meter key is.
    ('[meters."p/l/energy/m"]\ncarrier = "raw_coal"\ntco2_per_unit = 1.978\n', 1,
     "meters.'p/l/energy/m'.tco2_per_unit", "t/kg"),
    ('\n[meters."p/l/energy/m"]\ncarrier = "electricity"\nncv_kj_per_unit = 3600\n', 2,
     "meters.'p/l/energy/m'", "no calorific value"),
    ('[meters."p/l/production/t"]\ntco2_per_unit = 0.001\n', 1,
     "meters.'p/l/production/t'", "production meter"),
])
def test_check_config_names_the_line_of_a_carbon_value_it_refuses(
        tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    code, out = _check(tmp_path, text)
    assert code != 0
    (message,) = out.strip().splitlines()  # one line, no traceback
    assert f"wattline.toml:{line}: {key}" in message and words in message, message


def test_check_config_takes_a_grid_factor_and_measured_values(tmp_path: Path) -> None:
    code, out = _check(tmp_path, 'grid_factor = 0.5703\n[meters."p/l/energy/coal"]\n'
                                 'carrier = "raw_coal"\nncv_kj_per_unit = 21500\n'
                                 'tco2_per_unit = 0.00201\n')
    assert code == 0, out
