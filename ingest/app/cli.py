"""The ``wattline`` command: the daemon (``run``), ``check-config`` and ``demo``, with
``simulate``, ``store`` and ``bench`` added from their own modules.

The settings' flags are built from the schema (``wattline.ingest.config``): one per
key, named after it, reading ``WATTLINE_<KEY>``, with the key's help text; ``run
--help`` lists them under their sections.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from wattline.benchmarks.cli import bench
from wattline.contract.errors import ConfigError, WattlineError
from wattline.ingest.app.nats_cli import nats_group
from wattline.ingest.app.report_cli import report
from wattline.ingest.app.simulate import simulate
from wattline.ingest.app.store_cli import store
from wattline.ingest.app.systemd import notify as systemd_notify
from wattline.ingest.app.systemd import watchdog_interval_s
from wattline.ingest.config import (
    SCHEMA,
    Duration,
    LoggingSettings,
    Settings,
    SettingSpec,
    check_config_file,
    point_at_file,
    read_config_file,
    settings_from_mapping,
)
from wattline.ingest.redact import redact_url

__all__ = ["daemon_options", "main", "resolve_settings"]

_EXPLICIT_SOURCES = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
_SECTION_TITLE = {spec.name: section.title for section in Settings.sections()
                  for spec in section.specs()}

log = logging.getLogger("wattline")


def _settings_option(spec: SettingSpec) -> Callable[[Any], Any]:
    """The flag of one setting: ``--<key>`` (a ``--<key>/--no-<key>`` pair for a boolean),
    reading ``WATTLINE_<KEY>``, left None unless given so that the file and the
    defaults apply."""
    if spec.kind is bool:
        decls = f"{spec.flag}/{spec.off_flag or '--no-' + spec.flag[2:]}"
    else:
        decls = spec.flag
    if spec.choices and spec.kind is str:
        kind: Any = click.Choice([str(c) for c in spec.choices])
    else:
        kind = {int: click.INT, float: click.FLOAT}.get(spec.kind)
    metavar = {Duration: "DURATION", tuple: "DURATION,..."}.get(spec.kind)
    shown = spec.shown_default
    text = f"{spec.help} [default: {shown}]" if shown is not None else spec.help
    return click.option(decls, spec.name, type=kind, metavar=metavar, default=None,
                        envvar=spec.envvar, show_envvar=True, help=text)


def daemon_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings flags, one per key of the schema, and ``--config``."""
    for spec in reversed(SCHEMA):
        if not spec.is_table:  # meters and lines are tables of the config file only
            func = _settings_option(spec)(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), envvar="WATTLINE_CONFIG",
        show_envvar=True, help="TOML config file; its keys are the flags' names with "
        "underscores (see deploy/wattline.example.toml).",
    )(func)
    return func


class SettingsCommand(click.Command):
    """A command whose ``--help`` lists the settings flags under their sections' titles."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                title = _SECTION_TITLE.get(param.name or "", "Options")
                groups.setdefault(title, []).append(record)
        # One width for every section, so that the help texts line up from one to the next.
        width = min(30, max(len(term) for rows in groups.values() for term, _ in rows))
        for title, rows in groups.items():
            with formatter.section(title):
                formatter.write_dl([(term.ljust(width), text) for term, text in rows])


def resolve_settings(ctx: click.Context, config_file: str | None, **flags: Any) -> Settings:
    """Merge flag > environment > config file > default, then validate."""
    merged: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for name, value in flags.items():
        source = ctx.get_parameter_source(name)
        if value is not None and source in _EXPLICIT_SOURCES:
            merged[name] = value
    try:
        return settings_from_mapping(merged)
    except ConfigError as err:
        if config_file and err.path is None and not any(
            ctx.get_parameter_source(k) in _EXPLICIT_SOURCES
            for k in (err.key.split(".")[0],) if k in flags
        ):
            point_at_file(err, config_file)
        raise


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="wattline")
def main() -> None:
    """wattline: live energy intensity (kgce/t, kWh/t) of factory lines from MQTT telemetry.

    Gateways publish meter readings and production counters to an MQTT broker
    (topics factory/{site}/{line}/{kind}/{meter}); `wattline run` subscribes,
    turns counter readings into deltas, sums them over rolling windows
    (15m, 1h, 24h by default) every tick (10 s of event time), and writes each
    line's energy, electricity, production and intensity to InfluxDB and/or a
    local Parquet store, with health and intensity metrics on /metrics.

    \b
    Start here:
      wattline demo                  three simulated lines, a broker and a live table
      wattline run --help            the daemon and all its settings
      wattline simulate --help       publish simulated gateways to a broker
      wattline check-config FILE     validate a config file
      wattline store tail --help     the newest points of a line in a Parquet store
      wattline report energy --help  energy per tonne against the levels and a baseline
      wattline report cbam --help    embedded emissions per line and CN code (EU CBAM)
      wattline bench kernels         measure the kernels
      wattline bench ingest          measure the MQTT collector
      wattline bench sink            measure the InfluxDB writer and the spool
      wattline bench startup         measure the first start, empty and warm compile cache
      wattline warmup                compile the kernels into the cache (at install)

    Every `run` flag can also come from an environment variable WATTLINE_<FLAG>
    or from the TOML file given with --config; a flag beats the environment,
    which beats the file, which beats the default.
    """


@main.command(cls=SettingsCommand)
@daemon_options
@click.option("--debug", is_flag=True, envvar="WATTLINE_DEBUG", show_envvar=True,
              help="Show the traceback of a start-up error, not only its one line.")
@click.pass_context
def run(ctx: click.Context, config_file: str | None, debug: bool, **flags: Any) -> None:
    """Run the collector daemon until SIGTERM or Ctrl-C; SIGHUP re-reads --config.

    It subscribes to {prefix}/+/+/+/+ and {prefix}/+/+/+/+/meta, decodes JSON
    readings (one reading, a list, or columnar ts/v lists), and every
    --emit-every of event time writes one energy_intensity point per line
    and window:

    \b
      energy_intensity,site=S,line=L,window=15m energy_kgce=..,
          electricity_kwh=..,production_t=..,kgce_per_t=..,kwh_per_t=..,
          co2_direct_t=..,co2_indirect_t=..,co2_per_t=.. <ms>

    kgce_per_t, kwh_per_t and co2_per_t are left out while a window's
    production is zero (the line is idle). Meters default to electricity in kWh (energy) and
    tonnes (production), as cumulative counters; a retained meta message
    {"carrier":..,"unit":..,"mode":"counter"|"delta","rollover":..} or a
    [meters."site/line/kind/meter"] table in the config file says otherwise.

    \b
    Example:
      wattline run --mqtt-url mqtt://127.0.0.1:1883 --store /var/lib/wattline/store \\
          --influx-url http://127.0.0.1:8086 --influx-org plant --influx-bucket energy \\
          --influx-token-file /etc/wattline/influx.token
    """
    try:
        settings = resolve_settings(ctx, config_file, **flags)
    except WattlineError as err:
        raise click.ClickException(str(err)) from None
    settings.logging.configure()
    from wattline.ingest.app.daemon import Collector
    from wattline.ingest.app.startup import startup_error

    try:
        collector = Collector(settings)
    except Exception as err:  # noqa: BLE001 - e.g. a missing optional piece: one line
        raise startup_error(err, settings, debug=debug) from None
    stop = threading.Event()

    reload = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        log.info("received %s: draining and stopping", signal.Signals(signum).name)
        stop.set()
        reload.set()  # wakes the loop

    def _on_hangup(signum: int, frame: object) -> None:
        reload.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_hangup)
    try:
        collector.start()
    except Exception as err:  # noqa: BLE001 - a folder or port it cannot use: one line
        raise startup_error(err, settings, debug=debug) from None
    watchdog_s = watchdog_interval_s()
    systemd_notify(f"READY=1\nSTATUS=collecting from {redact_url(settings.mqtt_url)}")
    stalled_logged = False
    while not stop.is_set():
        reload.wait(min(1.0, watchdog_s / 4) if watchdog_s else 1.0)
        if stop.is_set():
            break
        if reload.is_set():
            reload.clear()
            settings = _reload(ctx, config_file, flags, settings, collector)
        if not collector.pipeline.alive:
            break
        if watchdog_s is None:
            continue
        # Feed systemd's watchdog only while the pipeline is really turning: a hung
        # pipeline thread then gets the service restarted (Restart=on-failure).
        if collector.pipeline.flowing(within_s=watchdog_s / 2):
            systemd_notify("WATCHDOG=1")
            stalled_logged = False
        elif not stalled_logged:
            log.error("the pipeline has not moved for %.0f s; no longer feeding the watchdog",
                      watchdog_s / 2)
            stalled_logged = True
    systemd_notify("STOPPING=1")
    collector.stop()
    if collector.pipeline.failed is not None:
        raise click.ClickException(f"the pipeline failed: {collector.pipeline.failed!r}")


def _reload(ctx: click.Context, config_file: str | None, flags: dict[str, Any],
            current: Settings, collector: Any) -> Settings:
    """SIGHUP: re-read the config file, apply what may change live, log the rest."""
    from wattline.ingest.app.reload import plan_reload

    log.info("received SIGHUP: re-reading %s", config_file or "the settings (no --config)")
    try:
        new = resolve_settings(ctx, config_file, **flags)
    except (WattlineError, OSError) as err:
        log.error("the reloaded configuration is not valid, nothing changed: %s", err)
        return current
    plan = plan_reload(current, new)
    for key in plan.needs_restart:
        log.warning("%s changed in the file but needs a restart to take effect (kernel "
                    "state, MQTT session or sinks depend on it); still running with the old "
                    "value", key)
    if not plan.applied:
        log.info("reload: nothing to apply")
        return current
    logging.getLogger().setLevel(plan.settings.log_level.upper())
    collector.pipeline.request_reload(plan.settings)
    collector.settings = plan.settings
    log.info("reload: applying %s", ", ".join(plan.applied))
    return plan.settings


@main.command("check-config")
@click.argument("file", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--example", is_flag=True,
              help="Print an example config instead: every setting with its help, default "
              "or a typical value (the text of deploy/wattline.example.toml).")
def check_config(file: str | None, example: bool) -> None:
    """Validate a TOML config FILE and say what is wrong, with its line.

    \b
    wattline check-config /etc/wattline/wattline.toml
    wattline check-config --example > wattline.toml     a config to start from
    """
    if example:
        from wattline.ingest.config_example import example_config

        click.echo(example_config(), nl=False)
        return
    if file is None:
        raise click.UsageError("give a config FILE to check, or --example to print one")
    try:
        settings = check_config_file(file)
        from wattline.contract.reference_data import load_reference
        from wattline.ingest.config import point_at_file
        from wattline.ingest.decode.registry import MeterRegistry

        try:
            MeterRegistry(load_reference(), settings.meters,
                          grid_kgco2_per_kwh=settings.grid_factor)
        except ConfigError as err:
            point_at_file(err, file)
            raise
    except WattlineError as err:
        raise click.ClickException(str(err)) from None
    mapped = (f", payload mappings on {', '.join(m.topic for m in settings.payloads)}"
              if settings.payloads else "")
    if settings.rename:
        mapped += f", {len(settings.rename)} name(s) renamed"
    click.echo(f"{file}: OK ({len(settings.meters)} meter(s) described{mapped}, windows "
               f"{','.join(settings.windows)}, tick {settings.emit_every})")


@main.command()
@click.option("--duration", type=float, default=None,
              help="Stop by itself after this many seconds. [default: run until Ctrl-C]")
@click.option("--mqtt-url", default=None, envvar="WATTLINE_MQTT_URL", show_envvar=True,
              help="Use this broker instead of starting one (Mosquitto from PATH, or an "
                   "in-process broker).")
@click.option("--store", default=None, help="Parquet store directory. [default: a temporary "
              "directory, removed at exit]")
@click.option("--metrics-port", type=int, default=9464, show_default=True,
              help="Port for /metrics (0 picks a free one).")
@click.option("--speed", type=float, default=240.0, show_default=True,
              help="Plant seconds per wall-clock second, so a short demo covers hours.")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed.")
@click.option("--refresh", type=float, default=2.0, show_default=True,
              help="Seconds between table updates.")
@click.option("--broker", "broker_choice", type=click.Choice(["auto", "mosquitto", "in-process"]),
              default="auto", show_default=True,
              help="Broker to start when no --mqtt-url is given: auto takes Mosquitto when it "
                   "is installed and the in-process amqtt broker otherwise.")
def demo(duration: float | None, mqtt_url: str | None, store: str | None, metrics_port: int,
         speed: float, seed: int, refresh: float, broker_choice: str) -> None:
    """Three simulated lines through the whole pipeline, with a live table.

    Starts a broker (unless --mqtt-url is given), simulated gateways of an
    electric-arc-furnace steel shop (eaf-1), an aluminium potline (potline-1)
    and a cement kiln (kiln-1), the collector with its kernels, a local
    Parquet store and /metrics, then shows each line's rolling kgce/t and
    kWh/t next to its national benchmark and baseline levels. Ctrl-C stops it
    cleanly.
    """
    from wattline.ingest.app.demo import run_demo

    LoggingSettings(log_level="warning").configure()
    try:
        ok = run_demo(duration_s=duration, mqtt_url=mqtt_url, store=store,
                      metrics_port=metrics_port, speed=speed, seed=seed, refresh_s=refresh,
                      broker_choice=broker_choice)
    except (RuntimeError, ConnectionError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if not ok:
        sys.exit(1)


@main.command()
def warmup() -> None:
    """Compile every kernel the daemon may run into Numba's cache, batch lines' too.

    Run it once at install time, as the user the daemon runs as and with the same
    NUMBA_CACHE_DIR (scripts/setup.sh and the Dockerfile do): the daemon's first start
    then loads machine code in well under a second instead of compiling for tens of
    seconds. Safe to run again; with a warm cache it only loads.
    """
    import numba

    from wattline.ingest.warmup import warm_up_kernels

    seconds = warm_up_kernels(batch_lines=True)
    cache = os.environ.get("NUMBA_CACHE_DIR") or numba.config.CACHE_DIR or \
        "beside the package (__pycache__)"
    click.echo(f"kernels ready in {seconds:.1f} s; Numba cache: {cache}")


main.add_command(simulate)
main.add_command(store)
main.add_command(report)
main.add_command(bench)
main.add_command(nats_group)


if __name__ == "__main__":
    main()
