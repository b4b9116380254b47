"""The ``wattline`` command: run the daemon, the demo, the simulators, the benchmarks."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from wattline.contract.errors import ConfigError, WattlineError
from wattline.ingest.app.systemd import notify as systemd_notify
from wattline.ingest.app.systemd import watchdog_interval_s
from wattline.ingest.config import (
    Settings,
    check_config_file,
    point_at_file,
    read_config_file,
    settings_from_mapping,
)

_EXPLICIT_SOURCES = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

log = logging.getLogger("wattline")

_DAEMON_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--mqtt-url",), {"help": "Broker to subscribe to: mqtt://[user:pass@]host:port "
                               "(mqtts:// for TLS). [default: mqtt://127.0.0.1:1883]"}),
    (("--topic-prefix",), {"help": "First level of the reading topics "
                                   "{prefix}/{site}/{line}/{kind}/{meter}. [default: factory]"}),
    (("--topic-template",), {"help": "Layout of the reading topics, for gateways that do not "
                                     "use the contract's: {site}, {line}, {kind} and {meter} "
                                     "each fill one level, {prefix} is --topic-prefix, other "
                                     "levels match literally; meta is the same plus /meta. "
                                     "[default: {prefix}/{site}/{line}/{kind}/{meter}]"}),
    (("--client-id",), {"help": "MQTT client id. [default: wattline]"}),
    (("--qos",), {"type": int, "help": "Subscription QoS, 0, 1 or 2. [default: 1]"}),
    (("--mqtt-protocol",), {"type": click.Choice(["3.1.1", "5"]),
                            "help": "MQTT protocol version. [default: 3.1.1]"}),
    (("--persistent-session/--clean-session",), {
        "help": "Keep the broker session (subscriptions and QoS 1/2 messages queued while "
                "the collector is away) across reconnects and restarts; needs a fixed "
                "--client-id. [default: clean session]"}),
    (("--session-expiry",), {"help": "MQTT 5: how long the broker keeps a persistent session "
                                     "after a disconnect. [default: 1h]"}),
    (("--mqtt-password-file",), {"help": "File holding the broker password (the user name "
                                         "goes in --mqtt-url)."}),
    (("--mqtt-ca-file",), {"help": "CA certificate(s) to verify the broker with (mqtts://)."}),
    (("--mqtt-cert-file",), {"help": "Client certificate for TLS client authentication."}),
    (("--mqtt-key-file",), {"help": "Private key of --mqtt-cert-file."}),
    (("--mqtt-share-group",), {"help": "Subscribe as $share/GROUP/... so that several "
                                       "collectors split the load (MQTT 5 shared "
                                       "subscriptions)."}),
    (("--sparkplug/--no-sparkplug",), {
        "help": "Also take Sparkplug B (spBv1.0/{group}/...): group = site, edge node = "
                "line, metrics named energy/<meter> or production/<meter>; asks nodes for a "
                "rebirth on a sequence gap or unknown alias. [default: off]"}),
    (("--influx-url",), {"help": "InfluxDB 2/3 (or any /api/v2/write server) to write "
                                 "energy_intensity points to, e.g. http://127.0.0.1:8086."}),
    (("--influx-org",), {"help": "InfluxDB organisation."}),
    (("--influx-bucket",), {"help": "InfluxDB bucket (required with --influx-url)."}),
    (("--influx-token",), {"help": "InfluxDB API token. Prefer --influx-token-file or the "
                                   "WATTLINE_INFLUX_TOKEN environment variable: flags show up "
                                   "in process lists."}),
    (("--influx-token-file",), {"help": "File holding the InfluxDB API token."}),
    (("--store",), {"help": "Directory of the local Parquet store (partitioned by date and "
                            "line)."}),
    (("--store-retention",), {"help": "Delete the store's days older than this, in whole "
                                      "days (e.g. 90d); past days are also compacted to one "
                                      "file per line. [default: keep everything]"}),
    (("--state-dir",), {"help": "Directory for kernel checkpoints (meter numbering, per-meter "
                                "last readings, window contents, watermarks): a restarted "
                                "daemon resumes its windows exactly. [default: none, windows "
                                "restart empty]"}),
    (("--spool-dir",), {"help": "Folder where InfluxDB batches wait, as Arrow files, while "
                                "the server is down; they are delivered in order once it is "
                                "back. [default: STATE_DIR/spool; none without --state-dir: "
                                "the pipeline then holds back instead]"}),
    (("--spool-max-bytes",), {"type": int, "help": "Size cap of the spool; past it the oldest "
                                                   "batch is dropped, counted and logged. "
                                                   "[default: 1073741824 (1 GiB)]"}),
    (("--dead-letter-dir",), {"help": "Folder for batches the server refuses for good (HTTP "
                                      "4xx), with its message. [default: "
                                      "STATE_DIR/dead-letter]"}),
    (("--checkpoint-every",), {"help": "How often to write a checkpoint to --state-dir, and "
                                       "always at shutdown. [default: 60s]"}),
    (("--metrics-port",), {"type": int, "help": "Port for Prometheus /metrics; 0 picks a free "
                                                "one. [default: 9464]"}),
    (("--metrics-host",), {"help": "Address /metrics listens on. [default: 127.0.0.1]"}),
    (("--emit-every",), {"help": "Tick period in event time; ticks align to multiples of it "
                                 "since the epoch. [default: 10s]"}),
    (("--windows",), {"help": "Comma-separated rolling windows, each a multiple of "
                              "--emit-every. [default: 15m,1h,24h]"}),
    (("--allowed-lateness",), {"help": "How far behind a line's newest reading a reading may "
                                       "still arrive. [default: 30s]"}),
    (("--min-production-t",), {"type": float, "help": "Production (t) a window needs to have "
                                                      "an intensity. [default: more than 0]"}),
    (("--max-future",), {"help": "Readings stamped further ahead of this machine's clock are "
                                 "dropped (ts_out_of_range). [default: 5m]"}),
    (("--max-past",), {"help": "Readings stamped further behind it are dropped. "
                               "[default: 30d]"}),
    (("--max-payload-bytes",), {"type": int, "help": "Larger MQTT payloads are rejected "
                                                     "(payload_too_large). [default: 1048576]"}),
    (("--batch-max-messages",), {"type": int, "help": "Messages per batch handed to the "
                                                      "kernels, at most. A batch holds Python's "
                                                      "lock while it is worked on, which delays "
                                                      "the MQTT thread's QoS 1 acknowledgements; "
                                                      "keep it modest. [default: 1000]"}),
    (("--batch-max-wait",), {"help": "How long a batch may wait to fill before it goes to the "
                                     "kernels. [default: 200ms]"}),
    (("--queue-max-messages",), {"type": int, "help": "Messages queued between the MQTT "
                                                      "client and the pipeline; when full, the "
                                                      "collector stops reading from the broker "
                                                      "(back-pressure). [default: 100000]"}),
    (("--alert-for",), {"type": int, "help": "Ticks in a row a rule must fire before its alert "
                                             "starts, and clear before it ends (hysteresis). "
                                             "[default: 3]"}),
    (("--spike-ratio",), {"type": float, "help": "Spike alert: the short window's kgce/t above "
                                                 "this times the long window's, while "
                                                 "producing. [default: 1.5]"}),
    (("--spike-clear-ratio",), {"type": float, "help": "The spike alert ends at or below this "
                                                       "ratio. [default: 1.2]"}),
    (("--spike-short-window",), {"help": "Window the spike rule watches. [default: the "
                                         "shortest of --windows]"}),
    (("--spike-long-window",), {"help": "Window the spike rule compares it with. [default: the "
                                        "longest of --windows]"}),
    (("--surge-window",), {"help": "Window of the energy rate (kgce/h) the power-surge rule "
                                   "watches; kept internally when it is not one of --windows. "
                                   "[default: 1m]"}),
    (("--surge-k",), {"type": float, "help": "Power surge: the rate above its rolling mean plus "
                                             "this many mean absolute deviations. "
                                             "[default: 4]"}),
    (("--level-window",), {"help": "Window compared with the product's national levels. "
                                   "[default: 24h, else the longest window]"}),
    (("--stale-after",), {"help": "Stale-line alert: no reading from a line for this long "
                                  "(wall clock). [default: 5m]"}),
    (("--alert-topic/--no-alert-topic",), {
        "help": "Publish each line's active alerts, retained, to "
                "{prefix}/{site}/{line}/alerts. [default: on]"}),
    (("--log-level",), {"type": click.Choice(["debug", "info", "warning", "error"]),
                        "help": "Log verbosity. [default: info]"}),
]


def _env_name(flag: str) -> str:
    """``--mqtt-url`` -> ``WATTLINE_MQTT_URL``; a ``--x/--no-x`` pair is named after ``--x``."""
    return "WATTLINE_" + flag.split("/")[0].lstrip("-").replace("-", "_").upper()


def daemon_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings flags shared by ``run`` and ``check-config``; each reads WATTLINE_<FLAG>."""
    for decls, attrs in reversed(_DAEMON_OPTIONS):
        func = click.option(*decls, envvar=_env_name(decls[0]), show_envvar=True,
                            default=None, **attrs)(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), envvar="WATTLINE_CONFIG",
        show_envvar=True, help="TOML config file; its keys are the flags' names with "
        "underscores (see deploy/wattline.example.toml).",
    )(func)
    return func


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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
      wattline bench kernels         measure the kernels
      wattline bench ingest          measure the MQTT collector
      wattline bench sink            measure the InfluxDB writer and the spool

    Every `run` flag can also come from an environment variable WATTLINE_<FLAG>
    or from the TOML file given with --config; a flag beats the environment,
    which beats the file, which beats the default.
    """


@main.command()
@daemon_options
@click.pass_context
def run(ctx: click.Context, config_file: str | None, **flags: Any) -> None:
    """Run the collector daemon until SIGTERM or Ctrl-C; SIGHUP re-reads --config.

    It subscribes to {prefix}/+/+/+/+ and {prefix}/+/+/+/+/meta, decodes JSON
    readings (one reading, a list, or columnar ts/v lists), and every
    --emit-every of event time writes one energy_intensity point per line
    and window:

    \b
      energy_intensity,site=S,line=L,window=15m energy_kgce=..,
          electricity_kwh=..,production_t=..,kgce_per_t=..,kwh_per_t=.. <ms>

    kgce_per_t and kwh_per_t are left out while a window's production is zero
    (the line is idle). Meters default to electricity in kWh (energy) and
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
    _setup_logging(settings.log_level)
    from wattline.ingest.app.daemon import Collector

    collector = Collector(settings)
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
    collector.start()
    watchdog_s = watchdog_interval_s()
    systemd_notify(f"READY=1\nSTATUS=collecting from {settings.mqtt_url}")
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
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def check_config(file: str) -> None:
    """Validate a TOML config FILE and say what is wrong, with its line."""
    try:
        settings = check_config_file(file)
        from wattline.contract.reference_data import load_reference
        from wattline.ingest.decode.registry import MeterRegistry

        MeterRegistry(load_reference(), settings.meters)
    except WattlineError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{file}: OK ({len(settings.meters)} meter(s) described, windows "
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

    _setup_logging("warning")
    try:
        ok = run_demo(duration_s=duration, mqtt_url=mqtt_url, store=store,
                      metrics_port=metrics_port, speed=speed, seed=seed, refresh_s=refresh,
                      broker_choice=broker_choice)
    except (RuntimeError, ConnectionError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if not ok:
        sys.exit(1)


@main.command()
@click.option("--mqtt-url", default="mqtt://127.0.0.1:1883", envvar="WATTLINE_MQTT_URL",
              show_envvar=True, show_default=True, help="Broker to publish to.")
@click.option("--lines", default="eaf-1,potline-1,kiln-1", show_default=True,
              help="Comma-separated lines, each <model>-<n> with model eaf, potline, kiln or "
                   "generic (see --scenario).")
@click.option("--site", default="demo", show_default=True, help="Site name in the topics.")
@click.option("--rate", type=float, default=10.0, show_default=True,
              help="Plant seconds between two readings of a meter.")
@click.option("--duration", type=float, default=60.0, show_default=True,
              help="Wall-clock seconds to publish for; 0 runs until Ctrl-C. With --record: "
                   "the run to record, duration x speed plant seconds; 0 is refused.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Plant seconds per wall-clock second. With --replay: recorded seconds per "
                   "wall-clock second, and 0 publishes without pauses, as fast as the broker "
                   "takes the messages.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed publishes the same bytes.")
@click.option("--topic-prefix", default="factory", show_default=True)
@click.option("--faults", "faults_text", default=None, metavar="NAME=VALUE,...",
              help="Gateway faults: duplicate, out_of_order and dropout (probabilities per "
                   "message or reading), reset (per poll), skew (s, each gateway's clock off "
                   "by up to this), uplink_loss (probability per message) and uplink_loss_s "
                   "(s, how long; readings then arrive in one burst), e.g. "
                   "duplicate=0.01,out_of_order=0.05,skew=2,uplink_loss=0.002.")
@click.option("--drift", "drifts", multiple=True, metavar="LINE@START+DURATIONxFACTOR",
              help="Inject an efficiency drift: the line's energy per tonne rises linearly "
                   "to FACTOR times over DURATION and stays there, e.g. kiln-1@1h+4hx1.3 "
                   "(takes a kiln above its national baseline). Repeatable.")
@click.option("--idle", "idles", multiple=True, metavar="LINE@START+DURATION",
              help="Inject an idle period: the line makes nothing and its energy meters "
                   "draw a tenth of their rate, e.g. eaf-1@2h+45m. Repeatable.")
@click.option("--spike", "spikes", multiple=True, metavar="LINE@START+DURATIONxFACTOR",
              help="Inject an energy spike: the line's energy meters count FACTOR times "
                   "their rate from START for DURATION of plant time since the run starts, "
                   "e.g. kiln-1@60m+20mx3. Repeatable.")
@click.option("--record", "record_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write what this run would publish to a capture FILE (.jsonl, .jsonl.gz or "
                   ".parquet) instead of publishing it, without a broker, then exit.")
@click.option("--replay", "replay_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Publish the capture FILE instead of simulating; --speed paces it.")
@click.option("--scenario", "scenario_files", multiple=True, metavar="MODEL=FILE",
              help="Describe MODEL's lines with your own scenario FILE (TOML, keys as in "
                   "the packaged simulators/scenarios/<model>.toml). `generic` lines "
                   "(generic-1, ...) are defined entirely this way: output rate, batch "
                   "weighing and one [plant.energy.<meter>] table per carrier. Repeatable.")
@click.option("--truth", "truth_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write what the collector should make of this run, as JSON Lines: "
                   "the exact intensity per line, tick and window, and each injected spike's "
                   "alert with the times it must start and end within (computed from the "
                   "simulator's own model, none of the collector's code).")
@click.option("--truth-windows", default="15m,1h,24h", show_default=True,
              help="Windows the --truth rows are for (the collector's --windows).")
@click.option("--truth-tick", type=float, default=10.0, show_default=True,
              help="Tick, in seconds, the --truth rows are for (the collector's --emit-every).")
@click.option("--target-rate", type=float, default=None, metavar="MSG/S",
              help="Load mode: publish one reading per message at this many messages a "
                   "second in all, from --processes processes, and report the rate achieved.")
@click.option("--processes", type=int, default=2, show_default=True,
              help="Publisher processes in load mode.")
@click.option("--line-count", type=int, default=None, metavar="N",
              help="Simulate N lines, named after the models of --lines in turn (eaf-1, "
                   "kiln-1, eaf-2, ...), e.g. for load mode.")
@click.option("--format", "payload_format", type=click.Choice(["json", "sparkplug"]),
              default="json", show_default=True,
              help="json: the contract's JSON readings; sparkplug: each line is a Sparkplug "
                   "B edge node (group = --site) sending NBIRTH then NDATA by alias, read "
                   "by `wattline run --sparkplug`.")
def simulate(mqtt_url: str, lines: str, site: str, rate: float, duration: float, speed: float,
             seed: int, topic_prefix: str, faults_text: str | None, drifts: tuple[str, ...],
             idles: tuple[str, ...], spikes: tuple[str, ...],
             record_file: str | None,
             replay_file: str | None, scenario_files: tuple[str, ...], truth_file: str | None,
             truth_windows: str, truth_tick: float, target_rate: float | None, processes: int,
             line_count: int | None, payload_format: str) -> None:
    """Publish simulated plant gateways to a broker, or record or replay a capture.

    Each line publishes its meters' cumulative registers as JSON readings on
    {prefix}/{site}/{line}/{kind}/{meter}, plus a retained meta message per
    meter. The plant clock starts duration x speed seconds in the past, so the
    stream ends near now.

    --record FILE writes what the run would publish to a capture file instead,
    without a broker, and exits: the same messages in the same order, batched
    as they would be at this --speed, each stamped with the plant time it is
    due. The extension picks the format: .jsonl or .jsonl.gz (JSON Lines, one
    message per line, payload in base64) or .parquet.

    --replay FILE publishes a capture instead of simulating: every message with
    its recorded topic, payload bytes, QoS and retain flag, in time order, the
    recorded gaps divided by --speed (0: no pauses). --lines, --site, --rate,
    --seed, --spike, --duration and --topic-prefix are ignored: the capture
    holds all of it. Payloads are not rewritten, so readings keep the
    timestamps they were recorded with: the collector's --max-past (30d by
    default) must reach back to them. Ctrl-C stops a replay early.

    \b
    Example: two hours of a kiln in a minute, with a 20-minute spike at 60 min
      wattline simulate --lines kiln-1 --duration 60 --speed 120 \\
          --spike kiln-1@60m+20mx3

    \b
    Example: record the same two hours to a file, without a broker
      wattline simulate --lines kiln-1 --duration 60 --speed 120 \\
          --spike kiln-1@60m+20mx3 --record kiln-spike.jsonl.gz

    \b
    Example: replay it ten times faster (in 6 s), then without pauses
      wattline simulate --replay kiln-spike.jsonl.gz --speed 1200
      wattline simulate --replay kiln-spike.jsonl.gz --speed 0
    """
    from wattline.simulators.events import parse_drift, parse_idle, parse_spike
    from wattline.simulators.publisher import simulate as run_simulation
    from wattline.simulators.replay import (
        CaptureError,
        capture_format,
        record_schedule,
        replay,
    )

    if record_file is not None and replay_file is not None:
        raise click.UsageError("--record and --replay cannot be combined: record a capture "
                               "in one run, then replay it in another.")
    for option, file in (("--record", record_file), ("--replay", replay_file)):
        if file is None:
            continue
        try:
            capture_format(file)
        except ValueError as err:
            raise click.BadParameter(f"{err}, e.g. {option} run.jsonl.gz",
                                     param_hint=option) from None
    if replay_file is not None:
        from pathlib import Path

        if not Path(replay_file).is_file():
            raise click.BadParameter(
                f"there is no capture file {replay_file!r}; write one first with "
                f"`wattline simulate ... --record {replay_file}`", param_hint="--replay")
        if not speed >= 0 or speed == float("inf"):
            raise click.BadParameter("with --replay, give a positive speed, or 0 to publish "
                                     "without pauses", param_hint="--speed")
    if replay_file is None and not speed > 0:
        raise click.BadParameter("give a positive number of plant seconds per second",
                                 param_hint="--speed")
    try:
        injected = ([parse_spike(s) for s in spikes] + [parse_idle(i) for i in idles]
                    + [parse_drift(d) for d in drifts])
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--spike/--idle/--drift") from None
    line_names = [x.strip() for x in lines.split(",") if x.strip()]
    if line_count is not None:
        from wattline.simulators.load import line_names as numbered_lines

        line_names = numbered_lines([n.rsplit("-", 1)[0] for n in line_names], line_count)
    scenarios = _scenarios(scenario_files)
    faults = _faults(faults_text)
    if target_rate is not None:
        from wattline.simulators.load import run_load

        _setup_logging("warning")
        try:
            click.echo(run_load(mqtt_url, line_names, target_msgs_per_s=target_rate,
                                processes=processes, duration_s=duration or 10.0, site=site,
                                rate_s=rate, seed=seed, topic_prefix=topic_prefix))
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        return
    if record_file is not None:
        if not duration > 0:
            raise click.BadParameter("a recording needs a length: give a positive number of "
                                     "wall-clock seconds to record", param_hint="--duration")
        try:
            written = record_schedule(record_file, line_names, site=site, rate_s=rate,
                                      duration_s=duration, speed=speed, seed=seed,
                                      topic_prefix=topic_prefix, events=injected,
                                      payload_format=payload_format, scenarios=scenarios,
                                      faults=faults)
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        except OSError as err:
            raise click.ClickException(f"cannot write {record_file}: {err.strerror or err}; "
                                       "check that its folder exists and is writable") from None
        click.echo(f"wrote {written:,} messages to {record_file}")
        return
    _setup_logging("info")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if replay_file is not None:
            shown = [-1]

            def progress(sent: int, total: int) -> None:
                tenth = sent * 10 // total if total else 10
                if tenth > shown[0] and sent < total:
                    click.echo(f"replayed {sent:,} of {total:,} messages", err=True)
                    shown[0] = tenth

            try:
                click.echo(replay(mqtt_url, replay_file, speed=speed, stop=stop,
                                  progress=progress))
            except (CaptureError, FileNotFoundError) as err:
                raise click.ClickException(
                    f"cannot replay {replay_file}: {err}. A capture is a file written by "
                    "`wattline simulate --record`.") from None
            return
        if truth_file is not None and not duration > 0:
            raise click.BadParameter("--truth needs a run of known length: give --duration",
                                     param_hint="--duration")
        start_ms = int(time.time() * 1000) - round(duration * speed * 1000)
        summary = run_simulation(
            mqtt_url,
            lines=line_names,
            site=site,
            rate_s=rate,
            duration_s=duration or None,
            speed=speed,
            seed=seed,
            topic_prefix=topic_prefix,
            stop=stop,
            events=injected,
            payload_format=payload_format,
            start_ms=start_ms,
            scenarios=scenarios,
            faults=faults,
        )
        if truth_file is not None:
            from wattline.simulators.expectations import write_expectations
            from wattline.simulators.publisher import readings_per_message

            plant_s = duration * speed
            if summary.stopped and summary.last_reading_ms is not None:
                plant_s = (summary.last_reading_ms - start_ms) / 1000.0
            rows, alerts = write_expectations(
                truth_file, line_names, site=site, start_ms=start_ms, plant_s=plant_s,
                rate_s=rate, seed=seed, topic_prefix=topic_prefix,
                readings_per_message=readings_per_message(speed, rate), events=injected,
                payload_format=payload_format,
                windows=[w.strip() for w in truth_windows.split(",") if w.strip()],
                emit_every_s=truth_tick, scenarios=scenarios, faults=faults,
            )
            click.echo(f"wrote {rows:,} expected intensity rows and {alerts} expected "
                       f"alert(s) to {truth_file}")
    except ConnectionError as err:
        raise click.ClickException(f"{err}; check --mqtt-url and that the broker is "
                                   "running") from None
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    click.echo(summary)


_FAULT_KEYS = {"duplicate": "duplicate_p", "out_of_order": "out_of_order_p",
               "out_of_order_max_s": "out_of_order_max_s", "dropout": "dropout_p",
               "reset": "reset_p", "skew": "clock_skew_s", "uplink_loss": "uplink_loss_p",
               "uplink_loss_s": "uplink_loss_s"}


def _faults(text: str | None) -> Any:
    """``--faults duplicate=0.01,skew=2`` as ``Faults``; None without the option."""
    if not text:
        return None
    from wattline.simulators.gateway import Faults

    values: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in _FAULT_KEYS:
            raise click.BadParameter(
                f"{part.strip()!r}: expected NAME=VALUE with NAME one of "
                f"{', '.join(_FAULT_KEYS)}", param_hint="--faults")
        try:
            values[_FAULT_KEYS[name]] = float(value)
        except ValueError:
            raise click.BadParameter(f"{name}: {value!r} is not a number",
                                     param_hint="--faults") from None
    try:
        return Faults(**values)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--faults") from None


def _scenarios(specs: tuple[str, ...]) -> dict[str, Any]:
    """``--scenario MODEL=FILE`` options as a scenario per model name."""
    from wattline.simulators.scenario import read_scenario

    out: dict[str, Any] = {}
    for spec in specs:
        model, sep, path = spec.partition("=")
        if not sep or not model or not path:
            raise click.BadParameter(f"expected MODEL=FILE, got {spec!r}",
                                     param_hint="--scenario")
        try:
            out[model] = read_scenario(model, path)
        except FileNotFoundError:
            raise click.BadParameter(f"no such file: {path}", param_hint="--scenario") from None
        except (ValueError, KeyError) as err:
            raise click.BadParameter(str(err), param_hint="--scenario") from None
    return out


@main.group()
def bench() -> None:
    """Benchmarks: each prints a table, and with --json ends with one JSON line.

    Figures are ratios against a baseline measured in the same run, since
    machines are shared and noisy.
    """


@bench.command("kernels")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object on the last line.")
@click.option("--readings", type=int, default=10_000_000, show_default=True)
@click.option("--lines", type=int, default=1000, show_default=True)
@click.option("--meters-per-line", type=int, default=10, show_default=True)
@click.option("--reference-readings", type=int, default=200_000, show_default=True,
              help="Readings given to the slow plain-Python reference.")
def bench_kernels(as_json: bool, readings: int, lines: int, meters_per_line: int,
                  reference_readings: int) -> None:
    """The intensity kernels against a bare sliding sum, plain Python and NumPy."""
    from wattline.benchmarks.kernels import run_kernel_bench
    from wattline.benchmarks.report import print_report

    def progress(text: str) -> None:
        click.echo(text, err=True)

    result = run_kernel_bench(readings=readings, lines=lines, meters_per_line=meters_per_line,
                              reference_readings=reference_readings, progress=progress)
    print_report("wattline bench kernels", result, as_json=as_json)


@bench.command("ingest")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object on the last line.")
@click.option("--mqtt-url", default=None,
              help="Use this broker instead of starting a Mosquitto on a free port; give a "
                   "--topic-prefix no running daemon subscribes to.")
@click.option("--messages", type=int, default=50_000, show_default=True,
              help="Single-reading messages per run.")
@click.option("--batch-messages", type=int, default=5_000, show_default=True,
              help="100-reading columnar batch messages per run.")
@click.option("--publishers", type=int, default=2, show_default=True,
              help="Publisher processes sharing each load.")
@click.option("--latency-seconds", type=float, default=2.0, show_default=True,
              help="Length of each paced latency run on the collector.")
@click.option("--topic-prefix", default="factory", show_default=True,
              help="First topic level of the benchmark's readings.")
@click.option("--shared-collectors", type=int, default=0, show_default=True, metavar="N",
              help="Also measure N `wattline run` processes on one MQTT 5 shared "
                   "subscription (each with its own interpreter), against the same bare "
                   "subscriber.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Floods per load for the bare subscriber and the collector, alternating; "
                   "each reports its fastest (a flood of batches lasts a fraction of a second, "
                   "so one is at the mercy of the machine's other work). The naive loop runs "
                   "once.")
def bench_ingest(as_json: bool, mqtt_url: str | None, messages: int, batch_messages: int,
                 publishers: int, latency_seconds: float, topic_prefix: str,
                 shared_collectors: int, rounds: int) -> None:
    """The collector against a bare paho subscriber and a hand-written json + Point loop.

    Single readings and 100-reading batches, at QoS 0 and QoS 1, published by
    separate processes as fast as they can; then publish-to-output latency at
    half the collector's rate, and messages lost.
    """
    from wattline.benchmarks.ingest import run_ingest_bench
    from wattline.benchmarks.report import print_report

    def progress(text: str) -> None:
        click.echo(text, err=True)

    try:
        result = run_ingest_bench(mqtt_url=mqtt_url, messages=messages,
                                  batch_messages=batch_messages, publishers=publishers,
                                  latency_seconds=latency_seconds, topic_prefix=topic_prefix,
                                  shared_collectors=shared_collectors, rounds=rounds,
                                  progress=progress)
    except (RuntimeError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    print_report("wattline bench ingest", result, as_json=as_json, subject="collector")


@bench.command("sink")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object on the last line.")
@click.option("--influx-url", default=None,
              help="Write to this InfluxDB (or /api/v2/write server) instead of starting a "
                   "VictoriaMetrics on a free port; stored points are then not counted back.")
@click.option("--influx-org", default="wattline", show_default=True,
              help="Organisation, with --influx-url.")
@click.option("--influx-bucket", default="wattline_bench", show_default=True,
              help="Bucket the benchmark's points go to, with --influx-url.")
@click.option("--influx-token", default="", envvar="WATTLINE_INFLUX_TOKEN", show_envvar=True,
              help="API token, with --influx-url.")
@click.option("--points", type=int, default=100_000, show_default=True,
              help="Points per batched InfluxDB round.")
@click.option("--batch-points", type=int, default=5_000, show_default=True,
              help="Rows per batch, for InfluxDB writes and spool segments.")
@click.option("--single-points", type=int, default=2_000, show_default=True,
              help="Points per one-point-per-request baseline round.")
@click.option("--spool-mb", type=float, default=64.0, show_default=True,
              help="Megabytes (10^6 bytes) of segments per spool round.")
@click.option("--spool-dir", type=click.Path(file_okay=False), default=None,
              help="Folder to spool in (a temporary folder is made inside it). "
                   "[default: the system's temporary folder]")
def bench_sink(as_json: bool, influx_url: str | None, influx_org: str, influx_bucket: str,
               influx_token: str, points: int, batch_points: int, single_points: int,
               spool_mb: float, spool_dir: str | None) -> None:
    """The InfluxDB writer and the spool, each against a baseline.

    Batched InfluxSink writes against one point per request; Spool.append
    against plain write + fsync of the same bytes; spool drain (read + remove)
    against plain read + unlink.
    """
    from wattline.benchmarks.report import print_report
    from wattline.benchmarks.sink import run_sink_bench

    def progress(text: str) -> None:
        click.echo(text, err=True)

    try:
        result = run_sink_bench(influx_url=influx_url, influx_org=influx_org,
                                influx_bucket=influx_bucket, influx_token=influx_token,
                                points=points, batch_points=batch_points,
                                single_points=single_points, spool_mb=spool_mb,
                                spool_dir=spool_dir, progress=progress)
    except (WattlineError, RuntimeError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    print_report("wattline bench sink", result, as_json=as_json, subject="row above")


if __name__ == "__main__":
    main()
