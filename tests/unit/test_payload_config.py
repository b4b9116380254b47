"""[[payloads]] tables in the config file: the shipped mappings load, and every mistake is
a one-line error naming the table, the key and its line in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattline.contract.errors import ConfigError
from wattline.ingest.config import check_config_file
from wattline.ingest.sources.mqtt import subscription_filters

MAPPINGS = Path(__file__).resolve().parents[2] / "deploy" / "mappings"

GOOD = """\
emit_every = "10s"

[[payloads]]
topic = "iotgateway"
readings = "document.values"
tag = "reading.id"
value = "reading.v"
time = "reading.t"
[payloads.tags]
"Channel1.EAF1.MainIncomer" = "plant-a/eaf-1/energy/main-incomer"

[[payloads]]
topic = "node-red/+"
readings = "document.readings"
site = "document.site"
line = "document.line"
kind = "reading.kind"
meter = "reading.meter"
value = "reading.value"
time = "reading.time"
time_format = "rfc3339"

[lines."plant-a/eaf-1"]
product = "eaf_steel"
"""


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "wattline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_config_file(str(path))
    return info.value


def test_the_shipped_mappings_load_and_are_subscribed_to(tmp_path: Path) -> None:
    for name in ("kepware-iot-gateway.toml", "node-red.toml"):
        settings = check_config_file(str(MAPPINGS / name))
        assert len(settings.payloads) == 1
    path = tmp_path / "both.toml"
    path.write_text(GOOD)
    settings = check_config_file(str(path))
    assert [m.topic for m in settings.payloads] == ["iotgateway", "node-red/+"]
    from wattline.contract.topics import TopicTemplate

    filters = subscription_filters(TopicTemplate(), share_group="g",
                                   mapped=[m.topic for m in settings.payloads])
    assert filters[-2:] == ["$share/g/iotgateway", "$share/g/node-red/+"]


@pytest.mark.parametrize(("old", "new", "key", "line", "words"), [
    ('value = "reading.value"', 'value = "reading.[value"', "payloads[2].value", 19,
     "not a JMESPath expression"),
    ('value = "reading.v"', 'value = "v"', "payloads[1].value", 7,
     "reads none of document, topic and reading"),
    ('time_format = "rfc3339"', 'time_format = "iso"', "payloads[2].time_format", 21,
     "epoch_ms, epoch_s or rfc3339"),
    ('kind = "reading.kind"', 'knd = "reading.kind"', "payloads[2].knd", 17, "did you mean"),
    ('"Channel1.EAF1.MainIncomer" = "plant-a/eaf-1/energy/main-incomer"',
     '"Channel1.EAF1.MainIncomer" = "plant-a/eaf-1/water/main-incomer"',
     "payloads[1].tags.'Channel1.EAF1.MainIncomer'", 10, "neither energy nor production"),
    ('"Channel1.EAF1.MainIncomer" = "plant-a/eaf-1/energy/main-incomer"',
     '"Channel1.EAF1.MainIncomer" = "plant-a/eaf 1 /energy/main-incomer"',
     "payloads[1].tags.'Channel1.EAF1.MainIncomer'", 10, "is not a name"),
    ('topic = "node-red/+"', 'topic = "node-red/#/x"', "payloads[2].topic", 13,
     "# stands alone"),
    ('topic = "node-red/+"', 'topic = "iotgateway"', "payloads[2].topic", 13,
     "already the topic of [[payloads]] table 1"),
    ('line = "document.line"\n', "", "payloads[2]", 12, "needs line"),
    ('time = "reading.t"\n', "", "payloads[1]", 3, "needs 'time'"),
    ('time = "reading.t"', 'time = "reading.t"\nsite = "topic[0]"', "payloads[1].site", 9,
     "either by tag"),
    ('time = "reading.t"', 'time = "reading.t"\ngood = [true]', "payloads[1].good", 9,
     "needs a quality expression"),
    ('time = "reading.t"', 'time = "reading.t"\nquality = "reading.q"\ngood = [[1]]',
     "payloads[1].good", 10, "strings, numbers or booleans"),
])
def test_a_bad_mapping_names_its_table_key_and_line(tmp_path: Path, old: str, new: str,
                                                    key: str, line: int, words: str) -> None:
    assert old in GOOD
    err = error_of(tmp_path, GOOD.replace(old, new, 1))
    assert err.key == key
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"{tmp_path / 'wattline.toml'}:{line}: {key}: ")
    assert "\n" not in str(err)


def test_payloads_must_be_an_array_of_tables(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[payloads]\ntopic = "x"\n')
    assert err.key == "payloads" and "[[payloads]]" in str(err)


def test_check_config_names_the_mapped_topics(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wattline.ingest.app.cli import main

    path = tmp_path / "both.toml"
    path.write_text(GOOD)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "payload mappings on iotgateway, node-red/+" in result.output


def test_a_reload_of_the_same_mappings_changes_nothing_and_a_new_one_needs_a_restart(
        tmp_path: Path) -> None:
    from wattline.ingest.app.reload import plan_reload

    path = tmp_path / "both.toml"
    path.write_text(GOOD)
    current = check_config_file(str(path))
    assert plan_reload(current, check_config_file(str(path))).needs_restart == ()
    path.write_text(GOOD.replace('value = "reading.v"', 'value = "reading.value"'))
    plan = plan_reload(current, check_config_file(str(path)))
    assert plan.needs_restart == ("payloads",) and plan.settings.payloads == current.payloads
