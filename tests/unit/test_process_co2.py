"""Process CO2 by mass balance in a [lines] table: the two forms, and one-line errors
naming the key."""

from __future__ import annotations

import pytest

from wattline.contract.errors import ConfigError
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.process_co2 import ProcessCo2


def _line(**keys: object) -> ProcessCo2 | None:
    settings = settings_from_mapping({"lines": {"s/kiln-1": {"product": "cement_clinker",
                                                             **keys}}})
    return settings.alerts.lines["s/kiln-1"].process_co2


def test_a_line_without_process_keys_has_no_process_co2() -> None:
    assert _line() is None


def test_process_co2_per_tonne_of_product_with_its_source() -> None:
    assert _line(process_co2_per_t=0.52, process_co2_source=" lab 2025 ") == ProcessCo2(
        per_t=0.52, source="lab 2025")


def test_process_co2_per_unit_of_material_is_their_product() -> None:
    got = _line(process_material="net anode", process_material_per_t=0.40625,
                process_co2_per_material=3.5, process_co2_source="balance")
    assert got == ProcessCo2(per_t=0.40625 * 3.5, source="balance", material="net anode",
                             material_per_t=0.40625, co2_per_material=3.5)


@pytest.mark.parametrize(("keys", "key", "says"), [
    ({"process_co2_per_t": 0.5}, "process_co2_source", "say where"),
    ({"process_co2_per_t": -1, "process_co2_source": "x"}, "process_co2_per_t", ">= 0"),
    ({"process_co2_per_t": "much", "process_co2_source": "x"}, "process_co2_per_t", ">= 0"),
    ({"process_co2_per_t": 0.5, "process_material": "anode", "process_co2_source": "x"},
     "process_material", "not both"),
    ({"process_material": "anode", "process_material_per_t": 0.4, "process_co2_source": "x"},
     "process_co2_per_material", "all of"),
    ({"process_material": "", "process_material_per_t": 0.4, "process_co2_per_material": 3,
      "process_co2_source": "x"}, "process_material", "as text"),
    ({"process_material": "anode", "process_material_per_t": 0, "process_co2_per_material": 3,
      "process_co2_source": "x"}, "process_material_per_t", "positive"),
    ({"process_co2_per_tonne": 0.5}, "process_co2_per_tonne", "unknown key"),
])
def test_wrong_process_keys_are_one_line_errors_naming_the_key(
        keys: dict[str, object], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        _line(**keys)
    assert err.value.key == f"lines.'s/kiln-1'.{key}"
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_example_of_the_cbam_docs_is_a_valid_config() -> None:
    import tomllib
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "cbam.md").read_text()
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    lines = settings_from_mapping(tomllib.loads(example)).alerts.lines
    kiln, potline = lines["plant-a/kiln-1"].process_co2, lines["plant-a/potline-1"].process_co2
    assert kiln is not None and kiln.per_t == 0.52
    assert potline is not None and potline.per_t == 0.41 * 3.593
    assert potline.material == "net anode"
