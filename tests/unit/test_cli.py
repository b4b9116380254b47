"""The `wattline` command line: flags built from the settings schema, help that reads like a
manual, and the commands registered from their own modules."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from wattline.ingest.app.cli import daemon_options, main, resolve_settings
from wattline.ingest.config import SCHEMA, Settings

# Every flag `wattline run` has had; scripts, unit files and compose files use them.
RUN_FLAGS = {
    "--config", "--mqtt-url", "--topic-prefix", "--topic-template", "--client-id", "--qos",
    "--mqtt-protocol", "--persistent-session", "--clean-session", "--session-expiry",
    "--mqtt-password-file", "--mqtt-ca-file", "--mqtt-cert-file", "--mqtt-key-file",
    "--subscribe-lines", "--mqtt-share-group", "--sparkplug", "--no-sparkplug", "--source",
    "--nats-stream", "--partitions", "--lease-ttl", "--influx-url",
    "--influx-org", "--influx-api", "--influx-db", "--influx-rp", "--influx-user",
    "--influx-password-file",
    "--influx-bucket", "--influx-token", "--influx-token-file", "--store", "--store-retention",
    "--state-dir", "--spool-dir", "--spool-max-bytes", "--dead-letter-dir", "--checkpoint-every",
    "--metrics-port", "--metrics-host", "--emit-every", "--windows", "--allowed-lateness",
    "--watermark-wall-clock", "--no-watermark-wall-clock",
    "--min-production-t", "--plant-timezone", "--shifts", "--period-grace", "--grid-factor",
    "--max-future",
    "--max-past", "--max-payload-bytes", "--max-lines",
    "--max-meters", "--influx-timeout", "--influx-health-timeout",
    "--batch-max-messages", "--batch-max-wait", "--queue-max-messages", "--alert-for",
    "--spike-ratio", "--spike-clear-ratio", "--spike-short-window", "--spike-long-window",
    "--surge-window", "--surge-k", "--level-window", "--stale-after", "--alert-topic",
    "--no-alert-topic", "--log-level", "--summary-every", "--debug", "--help",
}


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")}


def test_run_keeps_every_flag_it_had() -> None:
    assert _options(main.commands["run"]) | {"--help"} == RUN_FLAGS


def test_run_help_lists_the_flags_under_their_sections_in_order() -> None:
    text = _help("run")
    titles = [section.title for section in Settings.sections()]
    headings = re.findall(r"^(\S[^:\n]*):$", text, flags=re.MULTILINE)
    assert headings[-len(titles):] == titles
    for section in Settings.sections():
        block = text.split(f"\n{section.title}:\n", 1)[1].split("\n\n", 1)[0]
        for spec in section.specs():
            if not spec.is_table:
                assert spec.flag in block, (section.title, spec.flag)


def test_each_flag_shows_its_help_default_and_environment_variable() -> None:
    text = " ".join(_help("run").split())
    for spec in SCHEMA:
        if spec.is_table:
            continue
        assert " ".join(spec.help.split()) in text, spec.name
        assert f"[env var: {spec.envvar}]" in text, spec.name
    assert "[default: 15m,1h,24h]" in text and "[default: 4]" in text
    assert "[default: clean session]" in text and "[default: on]" in text


def test_help_texts_say_nothing_about_how_wattline_was_written() -> None:
    def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        found = [path]
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += commands(command, (*path, name))
            else:
                found.append((*path, name))
        return found

    for path in commands(main):
        text = _help(*path)
        assert not re.search(r"\b(stop|issue|section) \d|contract", text, re.IGNORECASE), path


def test_simulate_and_bench_are_registered_with_their_options() -> None:
    assert {"run", "check-config", "demo", "simulate", "bench", "warmup"} <= set(main.commands)
    bench = main.commands["bench"]
    assert isinstance(bench, click.Group)
    assert set(bench.commands) == {"kernels", "ingest", "sink", "startup"}
    assert {"--record", "--replay", "--truth", "--faults", "--spike", "--target-rate",
            "--format"} <= _options(main.commands["simulate"])
    assert {"--json", "--messages", "--shared-collectors", "--rounds", "--durable",
            "--state-parent"} <= _options(bench.commands["ingest"])
    assert {"--json", "--warm-starts", "--cold", "--compare-pythonpath"} <= _options(
        bench.commands["startup"])
    assert {"--json", "--points", "--spool-dir", "--influx-token"} <= _options(
        bench.commands["sink"])


def test_report_energy_is_registered_with_its_options() -> None:
    report = main.commands["report"]
    assert isinstance(report, click.Group)
    assert _options(report.commands["energy"]) == {
        "--store", "--from", "--to", "--baseline-from", "--baseline-to", "--line", "--config",
        "--model-period", "--variables", "--format", "--out"}
    assert "--improve" in _options(main.commands["simulate"])


@click.command()
@daemon_options
@click.pass_context
def show(ctx: click.Context, config_file: str | None, **flags: object) -> None:
    s = resolve_settings(ctx, config_file, **flags)
    click.echo(json.dumps({"qos": s.qos, "persistent_session": s.persistent_session,
                           "sparkplug": s.sparkplug, "spike_ratio": s.spike_ratio,
                           "stale_after_ms": s.stale_after_ms, "log_level": s.log_level}))


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, {"qos": 1, "persistent_session": False, "sparkplug": False, "spike_ratio": 1.5,
              "stale_after_ms": 300_000, "log_level": "info"}),
    (["--qos", "0", "--persistent-session", "--sparkplug", "--spike-ratio", "2",
      "--stale-after", "1m", "--log-level", "debug"], {},
     {"qos": 0, "persistent_session": True, "sparkplug": True, "spike_ratio": 2.0,
      "stale_after_ms": 60_000, "log_level": "debug"}),
    (["--clean-session", "--no-sparkplug"],
     {"WATTLINE_PERSISTENT_SESSION": "true", "WATTLINE_SPARKPLUG": "1", "WATTLINE_QOS": "2"},
     {"qos": 2, "persistent_session": False, "sparkplug": False, "spike_ratio": 1.5,
      "stale_after_ms": 300_000, "log_level": "info"}),
])
def test_flags_and_environment_arrive_typed(args: list[str], env: dict[str, str],
                                            expected: dict) -> None:
    result = CliRunner().invoke(show, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_a_flag_outside_its_choices_is_refused_by_the_command_line() -> None:
    result = CliRunner().invoke(show, ["--log-level", "loud"])
    assert result.exit_code != 0 and "--log-level" in result.output
