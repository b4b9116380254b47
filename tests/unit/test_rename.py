"""The config file's [rename] table: validated once at load (one-line errors with the
file's line), applied to every input form before the meter registry, and never able to
make two sources one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattline.contract import sparkplug_b as spb
from wattline.contract.errors import ConfigError
from wattline.ingest.config import check_config_file, settings_from_mapping
from wattline.ingest.config_tables import parse_renames
from wattline.ingest.decode.rename import Renames
from wattline.ingest.pipeline import Message, Pipeline

T0 = 1_732_406_400_000
TABLE = {"Sparkplug B Devices": "plant-a", "Sparkplug B Devices/EAF 1": "eaf-1",
         "Sparkplug B Devices/EAF 1/energy/Main Incomer": "main",
         "gw/Line 3": "line-3"}


# -- the table, at load ----------------------------------------------------------------------


def test_sites_lines_and_meters_are_keyed_as_the_gateway_names_them() -> None:
    assert parse_renames(TABLE) == TABLE


@pytest.mark.parametrize(("table", "problem"), [
    ({"a/b/c": "x"}, "a key is a site"),
    ({"a/b/energy/m/extra": "x"}, "a key is a site"),
    ({"a//b": "x"}, "a key is a site"),
    ({" a": "x"}, "a key is a site"),
    ({"a/b/gas/m": "x"}, "kind must be energy or production"),
    ({"a": 3}, "expected the new name, a string"),
    ({"a": {"b": "c"}}, "expected the new name, a string"),  # an unquoted dotted key
    ({"a": ""}, "is not a name"),
    ({"a": "x\ty"}, "is not a name"),
    ({"a": "x "}, "is not a name"),
    ({"a": ".."}, "is not a name"),
    ({"a": "x" * 65}, "is not a name"),
])
def test_a_key_or_name_that_is_no_name_is_refused(table: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        parse_renames(table)
    assert err.value.key == f"rename.{next(iter(table))!r}"


@pytest.mark.parametrize("table", [
    {"A": "x", "B": "x"},
    {"S/a": "x", "S/b": "x"},
    {"S/L/energy/a": "x", "S/L/energy/b": "x"},
])
def test_two_sources_renamed_onto_one_name_are_refused(table: dict) -> None:
    with pytest.raises(ConfigError, match="two sources would write as one") as err:
        parse_renames(table)
    assert err.value.key == f"rename.{list(table)[1]!r}"


def test_one_name_in_different_places_is_no_collision() -> None:
    table = {"A/a": "x", "B/b": "x", "A/a/energy/m": "x", "A/a/production/m": "x", "A": "x"}
    assert parse_renames(table) == table


def test_an_error_is_one_line_naming_the_file_and_the_entry_line(tmp_path: Path) -> None:
    path = tmp_path / "wattline.toml"
    path.write_text('emit_every = "10s"\n\n[rename]\n"Plant A" = "plant-a"\n'
                    '"Plant B" = "plant-a"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        check_config_file(str(path))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:5: rename.'Plant B': 'Plant A' is renamed to 'plant-a'")


def test_the_table_reaches_the_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "wattline.toml"
    path.write_text('[rename]\n"Sparkplug B Devices" = "plant-a"\n', encoding="utf-8")
    assert check_config_file(str(path)).decode.rename == {"Sparkplug B Devices": "plant-a"}
    assert settings_from_mapping({}).decode.rename == {}


# -- the table at work -----------------------------------------------------------------------


def test_a_site_rename_covers_its_lines_and_meters_and_keys_stay_the_gateways() -> None:
    renames = Renames(TABLE)
    assert renames.meter("Sparkplug B Devices", "EAF 1", "energy", "Main Incomer") == (
        "plant-a", "eaf-1", "energy", "main")
    assert renames.meter("Sparkplug B Devices", "EAF 2", "production", "x") == (
        "plant-a", "EAF 2", "production", "x")
    assert renames.meter("gw", "Line 3", "energy", "m") == ("gw", "line-3", "energy", "m")
    assert renames.meter("other", "EAF 1", "energy", "Main Incomer") == (
        "other", "EAF 1", "energy", "Main Incomer")
    assert not Renames({}) and Renames(TABLE)


def test_a_name_an_entry_gives_is_refused_to_a_gateway_publishing_it_itself() -> None:
    renames = Renames(TABLE)
    assert renames.meter("plant-a", "x", "energy", "m") is None
    assert "site 'plant-a'" in renames.taken("plant-a", "x", "energy", "m")
    assert renames.meter("Sparkplug B Devices", "eaf-1", "energy", "m") is None
    assert "line 'eaf-1'" in renames.taken("Sparkplug B Devices", "eaf-1", "energy", "m")
    assert renames.meter("Sparkplug B Devices", "EAF 1", "energy", "main") is None
    assert "meter 'main'" in renames.taken("Sparkplug B Devices", "EAF 1", "energy", "main")
    # Only in its place: another site's line, or a production meter, may be so named.
    assert renames.meter("gw", "eaf-1", "production", "main") == (
        "gw", "eaf-1", "production", "main")


def test_two_names_may_swap() -> None:
    renames = Renames(parse_renames({"A": "B", "B": "A"}))
    assert renames.meter("A", "l", "energy", "m") == ("B", "l", "energy", "m")
    assert renames.meter("B", "l", "energy", "m") == ("A", "l", "energy", "m")


# -- through the pipeline ----------------------------------------------------------------------


def _reading(topic: str, k: int, v: float) -> Message:
    ts = T0 + 1000 * k
    return Message(topic, json.dumps({"ts": ts, "v": v}).encode(), ts / 1000)


def _pipeline(**settings: object) -> Pipeline:
    values = {"max_past": "100000d", "rename": TABLE, **settings}
    return Pipeline(settings_from_mapping(values), [], clock=lambda: T0 / 1000 + 60)


def test_json_topics_and_their_meta_reach_the_registry_renamed() -> None:
    pipeline = _pipeline(meters={"plant-a/eaf-1/energy/main": {"carrier": "natural_gas"}})
    topic = "factory/Sparkplug B Devices/EAF 1/energy/Main Incomer"
    pipeline.process([Message(f"{topic}/meta", b'{"unit": "m3"}', T0 / 1000),
                      _reading(topic, 0, 1.0), _reading(topic, 1, 2.0)])
    assert pipeline.registry.meter_names() == [("plant-a", "eaf-1", "energy", "main")]
    desc = pipeline.registry.description("plant-a", "eaf-1", "energy", "main")
    assert (desc.carrier, desc.unit) == ("natural_gas", "m3")  # the file's table and meta
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_line_last_reading_timestamp_seconds",
                  {"site": "plant-a", "line": "eaf-1"}) is not None


def test_a_gateway_publishing_a_name_given_to_another_is_refused_and_counted() -> None:
    pipeline = _pipeline()
    pipeline.process([_reading("factory/plant-a/eaf-1/energy/m", 0, 1.0),
                      _reading("factory/Sparkplug B Devices/EAF 1/energy/Main Incomer", 0, 1.0),
                      _reading("factory/plant-a/eaf-1/energy/m", 1, 2.0)])
    assert pipeline.registry.meter_names() == [("plant-a", "eaf-1", "energy", "main")]
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_payload_errors_total", {"reason": "name_taken"}) == 2


def test_sparkplug_b_ids_are_renamed_and_a_taken_name_refused() -> None:
    pipeline = _pipeline(sparkplug=True)
    birth = spb.encode([
        spb.Metric(name="energy/Main Incomer", alias=1, timestamp=T0,
                   datatype=spb.DataType.DOUBLE, value=1.0),
        spb.Metric(name="energy/main", alias=2, timestamp=T0,
                   datatype=spb.DataType.DOUBLE, value=1.0),
        spb.Metric(name="bdSeq", datatype=spb.DataType.INT64, value=0)],
        timestamp=T0, seq=0)
    pipeline.process([Message("spBv1.0/Sparkplug B Devices/NBIRTH/EAF 1", birth,
                              T0 / 1000)])
    assert pipeline.registry.meter_names() == [("plant-a", "eaf-1", "energy", "main")]
    sample = pipeline.metrics.registry.get_sample_value
    assert sample("wattline_payload_errors_total", {"reason": "name_taken"}) == 1
