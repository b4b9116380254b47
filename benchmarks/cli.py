"""``wattline bench``: the benchmark commands, each a table and, with --json, one JSON line.

The measuring is in ``kernels``, ``ingest`` and ``sink``; these commands only read the
options, report progress on stderr and print the result.
"""

from __future__ import annotations

import click

from wattline.contract.errors import WattlineError

__all__ = ["bench"]


@click.group()
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
@click.option("--stage-rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds of the stages (windows only, + batches, + periods, "
                   "all three); each stage reports its fastest.")
@click.option("--period-grace", "period_grace_s", type=click.FloatRange(min=0), default=7200.0,
              show_default=True, metavar="SECONDS",
              help="period_grace of the periods kernel in the stages (the daemon's default); "
                   "shorter than the stream's span, periods close during the run.")
def bench_kernels(as_json: bool, readings: int, lines: int, meters_per_line: int,
                  reference_readings: int, stage_rounds: int, period_grace_s: float) -> None:
    """The intensity kernels against a bare sliding sum, plain Python and NumPy; the batch
    and period kernels' cost against the windows-only kernel."""
    from wattline.benchmarks.kernels import run_kernel_bench
    from wattline.benchmarks.report import print_report

    def progress(text: str) -> None:
        click.echo(text, err=True)

    result = run_kernel_bench(readings=readings, lines=lines, meters_per_line=meters_per_line,
                              reference_readings=reference_readings,
                              stage_rounds=stage_rounds, period_grace_s=period_grace_s,
                              progress=progress)
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
              help="Also measure N `wattline run` processes in one MQTT 5 share group, "
                   "each subscribed to its own share of the lines (each with its own "
                   "interpreter), against the same bare subscriber.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Floods per load for the bare subscriber and the collector, alternating; "
                   "each reports its fastest (a flood of batches lasts a fraction of a second, "
                   "so one is at the mercy of the machine's other work). The naive loop runs "
                   "once.")
@click.option("--durable", is_flag=True,
              help="Instead: the collector with --state-dir (write-ahead log, checkpoints) "
                   "and a VictoriaMetrics sink against itself without, at QoS 1, single "
                   "and 100-reading messages, alternating rounds.")
@click.option("--influx-url", default=None,
              help="With --durable: write to this server instead of starting a "
                   "VictoriaMetrics on a free port.")
@click.option("--state-parent", type=click.Path(file_okay=False), default=None,
              help="With --durable: make the state folders inside this folder (the disk "
                   "--state-dir will use). [default: the system's temporary folder]")
@click.option("--checkpoint-every", default="60s", show_default=True,
              help="With --durable: the durable collector's checkpoint interval.")
@click.option("--peer", type=click.Choice(["node-red"]), default=None,
              help="Instead: the daemon (`wattline run`, no sinks) against this peer on the "
                   "same broker and loads, single and 100-reading messages at QoS 1, "
                   "alternating rounds: msg/s, readings/s, CPU per message, peak RSS.")
@click.option("--peer-cache", type=click.Path(file_okay=False), default=None,
              help="With --peer node-red: where Node-RED 4 is installed from npm (once). "
                   "[default: ~/.cache/wattline/node-red]")
@click.option("--source", type=click.Choice(["mqtt", "nats"]), default="mqtt",
              show_default=True,
              help="nats: instead, 1, 2 and 3 daemons sharing a partitioned JetStream stream "
                   "(a nats-server of its own), each daemon's and all together's readings/s, "
                   "with one MQTT collector on the same messages as the baseline.")
@click.option("--partitions", type=click.IntRange(1, 64), default=6, show_default=True,
              help="With --source nats: partitions of the stream.")
@click.option("--daemons", default="1,2,3", show_default=True,
              help="With --source nats: the numbers of daemons to measure, one run each.")
def bench_ingest(as_json: bool, mqtt_url: str | None, messages: int, batch_messages: int,
                 publishers: int, latency_seconds: float, topic_prefix: str,
                 shared_collectors: int, rounds: int, durable: bool, influx_url: str | None,
                 state_parent: str | None, checkpoint_every: str, peer: str | None,
                 peer_cache: str | None, source: str, partitions: int, daemons: str) -> None:
    """The collector against a bare paho subscriber and a hand-written json + Point loop.

    Single readings and 100-reading batches, at QoS 0 and QoS 1, published by
    separate processes as fast as they can; then publish-to-output latency at
    half the collector's rate, and messages lost. With --durable, what the
    write-ahead log, checkpoints and a real database cost the same collector.
    """
    from wattline.benchmarks.ingest import run_ingest_bench
    from wattline.benchmarks.report import print_report

    def progress(text: str) -> None:
        click.echo(text, err=True)

    if source == "nats":
        from wattline.benchmarks.ingest_nats import run_nats_bench

        try:
            counts = [int(x) for x in daemons.split(",") if x.strip()]
            if not counts or min(counts) < 1 or max(counts) > partitions:
                raise ValueError(f"--daemons: give 1 to {partitions} (the partitions) each")
            result = run_nats_bench(messages=messages, daemons=counts,
                                    partitions=partitions, progress=progress)
        except (RuntimeError, ValueError, OSError) as err:
            raise click.ClickException(str(err)) from None
        print_report("wattline bench ingest --source nats", result, as_json=as_json,
                     subject="")
        return
    if peer == "node-red":
        from pathlib import Path

        from wattline.benchmarks.ingest_nodered import run_nodered_bench
        from wattline.benchmarks.nodered_peer import DEFAULT_CACHE

        try:
            result = run_nodered_bench(mqtt_url=mqtt_url, messages=messages,
                                       batch_messages=batch_messages, publishers=publishers,
                                       topic_prefix=topic_prefix, rounds=rounds,
                                       peer_cache=Path(peer_cache) if peer_cache
                                       else DEFAULT_CACHE, progress=progress)
        except (RuntimeError, ValueError, OSError) as err:
            raise click.ClickException(str(err)) from None
        print_report("wattline bench ingest --peer node-red", result, as_json=as_json,
                     subject="wattline")
        return
    if durable:
        from wattline.benchmarks.ingest_durable import run_durable_bench

        try:
            result = run_durable_bench(mqtt_url=mqtt_url, influx_url=influx_url,
                                       messages=messages, batch_messages=batch_messages,
                                       publishers=publishers, topic_prefix=topic_prefix,
                                       rounds=rounds, checkpoint_every=checkpoint_every,
                                       state_parent=state_parent, progress=progress)
        except (RuntimeError, ValueError, OSError) as err:
            raise click.ClickException(str(err)) from None
        print_report("wattline bench ingest --durable", result, as_json=as_json,
                     subject="durable")
        return
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
    print_report("wattline bench sink", result, as_json=as_json, subject="subject")


@bench.command("startup")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object on the last line.")
@click.option("--mqtt-url", default=None,
              help="Use this broker instead of starting a Mosquitto on a free port.")
@click.option("--warm-starts", type=int, default=2, show_default=True,
              help="Starts after the cold one, with the cache it filled.")
@click.option("--cold/--no-cold", default=True, show_default=True,
              help="Time a first start with an empty compile cache, then warm starts on "
                   "what it compiled (else every start uses this environment's cache, filled "
                   "first by one untimed start).")
@click.option("--compare-pythonpath", default=None, metavar="DIR",
              help="Also start the daemon of another source tree (this PYTHONPATH), in "
                   "turns, each with a compile cache of its own.")
@click.option("--topic-prefix", default="factory", show_default=True)
def bench_startup(as_json: bool, mqtt_url: str | None, warm_starts: int, cold: bool,
                  compare_pythonpath: str | None, topic_prefix: str) -> None:
    """From starting `wattline run` to its first reading accepted, empty and warm cache.

    NUMBA_CACHE_DIR points at a fresh folder for the first start (a fresh machine);
    later starts reuse what it compiled (as after `wattline warmup`).
    """
    from wattline.benchmarks.report import print_report
    from wattline.benchmarks.startup import run_startup_bench

    def progress(text: str) -> None:
        click.echo(text, err=True)

    try:
        result = run_startup_bench(mqtt_url=mqtt_url, warm_starts=warm_starts, cold=cold,
                                   compare_pythonpath=compare_pythonpath,
                                   topic_prefix=topic_prefix, progress=progress)
    except (RuntimeError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    print_report("wattline bench startup", result, as_json=as_json, subject="-")
