"""Settings: flag > environment > config file > default, and errors that point at the line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wattline.contract.errors import ConfigError
from wattline.ingest.app.cli import daemon_options, main, resolve_settings
from wattline.ingest.config import SETTING_KEYS, settings_from_mapping

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "wattline.example.toml"


@click.command()
@daemon_options
@click.pass_context
def show(ctx: click.Context, config_file: str | None, **flags: object) -> None:
    """Resolve the daemon's settings as `wattline run` does and print a few as JSON."""
    try:
        s = resolve_settings(ctx, config_file, **flags)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps({"emit_every": s.emit_every, "windows": list(s.windows),
                           "topic_prefix": s.topic_prefix, "qos": s.qos}))


def _show(args: list[str], env: dict[str, str] | None = None) -> dict:
    result = CliRunner().invoke(show, args, env=env or {})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "wattline.toml"
    path.write_text('emit_every = "30s"\nwindows = ["5m", "1h"]\ntopic_prefix = "plant"\n')
    return path


def test_defaults_apply_when_nothing_is_given() -> None:
    assert _show([]) == {"emit_every": "10s", "windows": ["15m", "1h", "24h"],
                         "topic_prefix": "factory", "qos": 1}


def test_the_config_file_beats_the_defaults(config_file: Path) -> None:
    got = _show(["--config", str(config_file)])
    assert got["emit_every"] == "30s" and got["windows"] == ["5m", "1h"]


def test_the_environment_beats_the_config_file(config_file: Path) -> None:
    got = _show(["--config", str(config_file)], env={"WATTLINE_EMIT_EVERY": "1m"})
    assert got["emit_every"] == "1m"
    assert got["topic_prefix"] == "plant"  # untouched keys still come from the file


def test_a_flag_beats_the_environment(config_file: Path) -> None:
    got = _show(["--config", str(config_file), "--emit-every", "5s", "--windows", "1m,5m"],
                env={"WATTLINE_EMIT_EVERY": "1m"})
    assert got["emit_every"] == "5s" and got["windows"] == ["1m", "5m"]


def test_the_config_file_can_come_from_the_environment(config_file: Path) -> None:
    assert _show([], env={"WATTLINE_CONFIG": str(config_file)})["topic_prefix"] == "plant"


def test_an_unknown_key_is_named_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('# comment\nemit_every = "10s"\nwindow = "15m"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code != 0
    assert f"{path}:3: window: unknown key" in result.output
    assert "did you mean 'windows'?" in result.output


def test_a_bad_value_in_the_file_points_at_its_line_when_running(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('topic_prefix = "plant"\n\nemit_every = "ten seconds"\n')
    result = CliRunner().invoke(show, ["--config", str(path)])
    assert result.exit_code != 0
    assert f"{path}:3: emit_every:" in result.output


def test_a_window_must_be_a_multiple_of_the_tick() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"emit_every": "7s", "windows": "15m"})
    assert err.value.key == "windows"


def test_invalid_toml_says_where() -> None:
    result = CliRunner().invoke(main, ["check-config", "/dev/null/nope.toml"])
    assert result.exit_code != 0


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    result = CliRunner().invoke(main, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+)(?:\s*=|: not set here)", text,
                                flags=re.MULTILINE))
    missing = set(SETTING_KEYS) - documented - {"meters", "lines", "payloads", "rename"}  # tables
    assert not missing, f"deploy/wattline.example.toml does not mention {sorted(missing)}"
    assert "[meters." in text and "[lines." in text and "[[payloads]]" in text


def test_every_setting_has_a_flag_with_an_environment_variable() -> None:
    run_help = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for key in SETTING_KEYS:
        if key in ("meters", "lines", "payloads", "rename"):
            continue  # tables of meters, lines and payloads live in the config file only
        flag = "--" + key.replace("_", "-")
        assert flag in run_help, flag
        assert "WATTLINE_" + key.upper() in run_help, key
