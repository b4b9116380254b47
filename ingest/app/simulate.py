"""``wattline simulate``: simulated plant gateways published to a broker, or a capture
recorded or replayed.

The command checks its options, then runs one of four modes: load (``--target-rate``),
record (``--record``), replay (``--replay``) or a live simulation, optionally writing
what the collector should make of it (``--truth``).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wattline.ingest.config import LoggingSettings

__all__ = ["simulate"]


@click.command()
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
@click.option("--improve", "improvements", multiple=True, metavar="LINE@STARTxFACTOR",
              help="Inject an energy improvement: from START on the line's energy meters "
                   "count FACTOR times their rate, for good (a retrofit), e.g. "
                   "kiln-1@21dx0.95 saves 5 %; --truth then states the CUSUM slope an "
                   "energy report must show after START. Repeatable.")
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
                   "alert with the times it must start and end within, and each improvement's "
                   "or drift's energy saving (computed from the simulator's own model, none "
                   "of the collector's code).")
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
              help='json: JSON readings ({"ts": ..., "v": ...}); sparkplug: each line is a '
                   "Sparkplug B edge node (group = --site) sending NBIRTH then NDATA by alias, "
                   "read by `wattline run --sparkplug`.")
def simulate(mqtt_url: str, lines: str, site: str, rate: float, duration: float, speed: float,
             seed: int, topic_prefix: str, faults_text: str | None, drifts: tuple[str, ...],
             improvements: tuple[str, ...], idles: tuple[str, ...], spikes: tuple[str, ...],
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
    _check_capture_options(record_file, replay_file, speed)
    events = _events(spikes, idles, drifts, improvements)
    plan = _Plan(lines=_line_names(lines, line_count), site=site, rate_s=rate, seed=seed,
                 topic_prefix=topic_prefix, events=events,
                 payload_format=payload_format, scenarios=_scenarios(scenario_files),
                 faults=_faults(faults_text))
    if target_rate is not None:
        _load(mqtt_url, plan, target_rate, processes, duration)
        return
    if record_file is not None:
        _record(record_file, plan, duration, speed)
        return
    LoggingSettings(log_level="info").configure()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if replay_file is not None:
            _replay(mqtt_url, replay_file, speed, stop)
            return
        if truth_file is not None and not duration > 0:
            raise click.BadParameter("--truth needs a run of known length: give --duration",
                                     param_hint="--duration")
        summary = _publish(mqtt_url, plan, duration, speed, stop, truth_file,
                           truth_windows, truth_tick)
    except ConnectionError as err:
        raise click.ClickException(f"{err}; check --mqtt-url and that the broker is "
                                   "running") from None
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    click.echo(summary)


@dataclass(frozen=True)
class _Plan:
    """What to simulate, from the options: the same for every mode."""

    lines: list[str]
    site: str
    rate_s: float
    seed: int
    topic_prefix: str
    events: list[Any]
    payload_format: str
    scenarios: dict[str, Any]
    faults: Any


def _check_capture_options(record_file: str | None, replay_file: str | None,
                           speed: float) -> None:
    from wattline.simulators.replay import capture_format

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


def _events(spikes: tuple[str, ...], idles: tuple[str, ...], drifts: tuple[str, ...],
            improvements: tuple[str, ...] = ()) -> list[Any]:
    from wattline.simulators.events import parse_drift, parse_idle, parse_improve, parse_spike

    try:
        return ([parse_spike(s) for s in spikes] + [parse_idle(i) for i in idles]
                + [parse_drift(d) for d in drifts] + [parse_improve(i) for i in improvements])
    except ValueError as err:
        raise click.BadParameter(str(err),
                                 param_hint="--spike/--idle/--drift/--improve") from None


def _line_names(lines: str, line_count: int | None) -> list[str]:
    names = [x.strip() for x in lines.split(",") if x.strip()]
    if line_count is None:
        return names
    from wattline.simulators.load import line_names as numbered_lines

    return numbered_lines([n.rsplit("-", 1)[0] for n in names], line_count)


def _load(mqtt_url: str, plan: _Plan, target_rate: float, processes: int,
          duration: float) -> None:
    """Load mode: one reading per message at ``target_rate`` messages a second."""
    from wattline.simulators.load import run_load

    LoggingSettings(log_level="warning").configure()
    try:
        click.echo(run_load(mqtt_url, plan.lines, target_msgs_per_s=target_rate,
                            processes=processes, duration_s=duration or 10.0, site=plan.site,
                            rate_s=plan.rate_s, seed=plan.seed, topic_prefix=plan.topic_prefix))
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def _record(record_file: str, plan: _Plan, duration: float, speed: float) -> None:
    """Write what the run would publish to a capture file, without a broker."""
    from wattline.simulators.replay import record_schedule

    if not duration > 0:
        raise click.BadParameter("a recording needs a length: give a positive number of "
                                 "wall-clock seconds to record", param_hint="--duration")
    try:
        written = record_schedule(record_file, plan.lines, site=plan.site, rate_s=plan.rate_s,
                                  duration_s=duration, speed=speed, seed=plan.seed,
                                  topic_prefix=plan.topic_prefix, events=plan.events,
                                  payload_format=plan.payload_format, scenarios=plan.scenarios,
                                  faults=plan.faults)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write {record_file}: {err.strerror or err}; "
                                   "check that its folder exists and is writable") from None
    click.echo(f"wrote {written:,} messages to {record_file}")


def _replay(mqtt_url: str, replay_file: str, speed: float, stop: threading.Event) -> None:
    """Publish a capture, paced by ``speed``, reporting progress every tenth."""
    from wattline.simulators.replay import CaptureError, replay

    shown = [-1]

    def progress(sent: int, total: int) -> None:
        tenth = sent * 10 // total if total else 10
        if tenth > shown[0] and sent < total:
            click.echo(f"replayed {sent:,} of {total:,} messages", err=True)
            shown[0] = tenth

    try:
        click.echo(replay(mqtt_url, replay_file, speed=speed, stop=stop, progress=progress))
    except (CaptureError, FileNotFoundError) as err:
        raise click.ClickException(
            f"cannot replay {replay_file}: {err}. A capture is a file written by "
            "`wattline simulate --record`.") from None


def _publish(mqtt_url: str, plan: _Plan, duration: float, speed: float,
             stop: threading.Event, truth_file: str | None, truth_windows: str,
             truth_tick: float) -> Any:
    """Simulate live; with ``truth_file``, also write the expected results of the run."""
    from wattline.simulators.publisher import simulate as run_simulation

    start_ms = int(time.time() * 1000) - round(duration * speed * 1000)
    summary = run_simulation(
        mqtt_url,
        lines=plan.lines,
        site=plan.site,
        rate_s=plan.rate_s,
        duration_s=duration or None,
        speed=speed,
        seed=plan.seed,
        topic_prefix=plan.topic_prefix,
        stop=stop,
        events=plan.events,
        payload_format=plan.payload_format,
        start_ms=start_ms,
        scenarios=plan.scenarios,
        faults=plan.faults,
    )
    if truth_file is not None:
        from wattline.simulators.expectations import write_expectations
        from wattline.simulators.publisher import readings_per_message

        plant_s = duration * speed
        if summary.stopped and summary.last_reading_ms is not None:
            plant_s = (summary.last_reading_ms - start_ms) / 1000.0
        rows, alerts = write_expectations(
            truth_file, plan.lines, site=plan.site, start_ms=start_ms, plant_s=plant_s,
            rate_s=plan.rate_s, seed=plan.seed, topic_prefix=plan.topic_prefix,
            readings_per_message=readings_per_message(speed, plan.rate_s), events=plan.events,
            payload_format=plan.payload_format,
            windows=[w.strip() for w in truth_windows.split(",") if w.strip()],
            emit_every_s=truth_tick, scenarios=plan.scenarios, faults=plan.faults,
        )
        click.echo(f"wrote {rows:,} expected intensity rows and {alerts} expected "
                   f"alert(s) to {truth_file}")
    return summary


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
