"""``wattline bench ingest --durable``: what durability and a real database cost the collector.

The same collector, on the same broker and loads as ``bench ingest`` (single readings
and 100-reading batches, at QoS 1, where acknowledgements are what durability is
about), two ways in one run, in alternating rounds:

- **plain**: the collector with no sink and no state directory, as ``bench ingest``
  measures it;
- **durable**: the collector with ``state_dir`` (a fresh temporary folder per round:
  every batch goes to the write-ahead log and is fsynced before its messages are
  acknowledged to the broker; checkpoints every ``checkpoint_every``, and at the end),
  and a real InfluxDB sink: a VictoriaMetrics started on a free port (or
  ``influx_url``), written through the spool's writer, as ``wattline run`` builds it.

Each reports its fastest flood, from the publishers' release to the end of the batch
that held the last message; lost is expected minus handled over all floods (must be 0).
``durable / plain`` is the figure to steer by. After each durable flood the bench waits
for the writer to deliver what it took (so the next round starts level) and reports
that drain, the points written, the checkpoints taken, and the write-ahead log's
fsyncs (one per batch) with the messages per batch they covered.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt

from wattline.benchmarks.ingest import (
    CollectorConsumer,
    Probe,
    Publishers,
    Run,
    _best,
    broker_url,
    flood,
    plant_loads,
    warm_kernels,
)
from wattline.benchmarks.report import BenchResult, machine, rate
from wattline.benchmarks.sink import influx_server
from wattline.ingest.config import parse_mqtt_url

DURABLE_LOADS = ("single", "batch100")
DURABLE_VARIANTS = ("plain", "durable")
DURABLE_QOS = 1
BUCKET = "wattline_bench"
DRAIN_TIMEOUT_S = 120.0
TARGET = 0.8
"""The target: durable at least this share of plain, single and batch."""


def _durable_settings(url: str, state_dir: Path, checkpoint_every: str) -> dict[str, Any]:
    return {"influx_url": url, "influx_org": "wattline", "influx_bucket": BUCKET,
            "state_dir": str(state_dir), "checkpoint_every": checkpoint_every}


def _wait_delivered(consumer: CollectorConsumer, timeout_s: float = DRAIN_TIMEOUT_S) -> float:
    """Seconds until the InfluxDB writer has nothing left to deliver (spooled or queued)."""
    began = time.perf_counter()
    deadline = began + timeout_s
    while time.perf_counter() < deadline:
        health = consumer.collector.sink_health()
        if all(h.healthy and not h.backlog for h in health.values()):
            return time.perf_counter() - began
        time.sleep(0.02)
    raise RuntimeError(f"the InfluxDB writer still had a backlog after {timeout_s:.0f} s")


def run_durable_bench(
    *,
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    messages: int = 50_000,
    batch_messages: int = 5_000,
    publishers: int = 2,
    lines_per_publisher: int = 5,
    meters_per_line: int = 5,
    topic_prefix: str = "factory",
    rounds: int = 3,
    checkpoint_every: str = "60s",
    state_parent: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """The collector with ``state_dir`` and a VictoriaMetrics sink against itself without,
    on single-reading and 100-reading messages at QoS 1, ``rounds`` alternating floods each.

    State folders are made under ``state_parent`` (default: the system's temporary
    folder): give the disk the daemon's ``--state-dir`` will really be on.
    """
    if min(messages, batch_messages, publishers, rounds) <= 0:
        raise ValueError("messages, batch_messages, publishers and rounds must be positive")
    began = time.perf_counter()
    now_ms = int(time.time() * 1000)
    sizes = {"single": messages, "batch100": batch_messages}
    loads_of = {name: plant_loads(name, sizes[name], publishers, lines_per_publisher,
                                  meters_per_line, topic_prefix, "p", now_ms)
                for name in DURABLE_LOADS}
    runs: dict[tuple[str, str], list[Run]] = {}
    extra: dict[str, dict[str, float]] = {name: {"drain_s": 0.0, "points": 0.0,
                                                 "checkpoints": 0.0, "fsyncs": 0.0,
                                                 "dropped": 0.0, "sink_errors": 0.0}
                                          for name in DURABLE_LOADS}
    collector_log = logging.getLogger("wattline.collector")
    saved_level = collector_log.level
    collector_log.setLevel(logging.ERROR)  # "no sink configured" is the plain variant's point
    warm_kernels(progress)
    base = Path(tempfile.mkdtemp(prefix="wattline-bench-state-", dir=state_parent))
    try:
        with influx_server(influx_url) as (db_url, server), \
                broker_url(mqtt_url) as (url_text, broker_kind):
            url = parse_mqtt_url(url_text)
            progress(f"broker {url.host}:{url.port} ({broker_kind}); database {db_url}; "
                     f"state under {base}; starting {publishers} publisher process(es) ...")
            probe = Probe(url, topic_prefix)
            try:
                pubs = Publishers(publishers, url)
            except BaseException:
                probe.close()
                raise
            try:
                for load_name in DURABLE_LOADS:
                    loads = loads_of[load_name]
                    expected = sum(x.messages for x in loads)
                    for round_no in range(rounds):
                        order = DURABLE_VARIANTS if round_no % 2 == 0 \
                            else tuple(reversed(DURABLE_VARIANTS))
                        for variant in order:
                            state_dir = base / f"{load_name}-{round_no}"
                            settings = (_durable_settings(db_url, state_dir, checkpoint_every)
                                        if variant == "durable" else None)
                            progress(f"{load_name} QoS {DURABLE_QOS}, {variant}, round "
                                     f"{round_no + 1}: {expected:,} messages ...")
                            consumer = CollectorConsumer(url_text, DURABLE_QOS, topic_prefix,
                                                         settings)
                            consumer.start()
                            try:
                                probe.warm(consumer)
                                batches_before = consumer.sample("wattline_batches_total")
                                run = flood(pubs, consumer, loads, DURABLE_QOS)
                                runs.setdefault((variant, load_name), []).append(run)
                                line = (f"  {run.msgs_per_s:,.0f} msg/s, "
                                        f"{run.readings_per_s:,.0f} readings/s, lost "
                                        f"{run.lost:,}")
                                e = extra[load_name]
                                e["dropped"] += consumer.dropped()
                                if variant == "durable":
                                    drain = _wait_delivered(consumer)
                                    batches = (consumer.sample("wattline_batches_total")
                                               - batches_before)
                                    e["drain_s"] = max(e["drain_s"], drain)
                                    e["fsyncs"] += batches
                                    e["points"] += _points_written(consumer)
                                    e["sink_errors"] += _sink_errors(consumer)
                                    line += (f"; {batches:,.0f} logged batches "
                                             f"({run.handled / max(batches, 1):,.1f} msg each), "
                                             f"writer drained in {drain:.2f} s")
                                progress(line)
                            finally:
                                consumer.stop()
                            if variant == "durable":
                                extra[load_name]["checkpoints"] += consumer.sample(
                                    "wattline_checkpoints_total")
                                shutil.rmtree(state_dir, ignore_errors=True)
            finally:
                probe.close()
                pubs.close()
                collector_log.setLevel(saved_level)
            server_kind = "given" if server is None else "victoria-metrics (own)"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    progress(f"done in {time.perf_counter() - began:.0f} s")
    params = {"messages": messages, "batch_messages": batch_messages,
              "publishers": publishers, "lines": publishers * lines_per_publisher,
              "meters_per_line": meters_per_line, "rounds": rounds, "qos": DURABLE_QOS,
              "checkpoint_every": checkpoint_every, "broker": broker_kind,
              "influx_server": server_kind, "paho_mqtt": paho.mqtt.__version__, **machine()}
    return durable_result(runs, extra, params)


def _points_written(consumer: CollectorConsumer) -> float:
    total = 0.0
    for family in consumer.metrics.registry.collect():
        if family.name == "wattline_sink_points_written":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _sink_errors(consumer: CollectorConsumer) -> float:
    total = 0.0
    for family in consumer.metrics.registry.collect():
        if family.name == "wattline_sink_write_errors":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _per_s(value: float, unit: str) -> str:
    return f"{rate(value)[:-2].rstrip()} {unit}/s"


def durable_result(all_runs: dict[tuple[str, str], list[Run]],
                   extra: dict[str, dict[str, float]], params: dict[str, Any]) -> BenchResult:
    """The table, notes and JSON figures of one ``--durable`` run."""
    runs = {key: _best(rounds) for key, rounds in all_runs.items()}
    result = BenchResult()
    f: dict[str, Any] = {}
    met = True
    for load_name in DURABLE_LOADS:
        plain, durable = runs[("plain", load_name)], runs[("durable", load_name)]
        key = f"qos{DURABLE_QOS}_{load_name}"
        ratio = durable.msgs_per_s / plain.msgs_per_s if plain.msgs_per_s > 0 else 0.0
        met &= ratio >= TARGET
        for variant, run in (("plain", plain), ("durable", durable)):
            f[f"{variant}_{key}_msgs_per_s"] = run.msgs_per_s
            f[f"{variant}_{key}_readings_per_s"] = run.readings_per_s
            f[f"{variant}_{key}_lost"] = run.lost
            f[f"{variant}_{key}_rounds_msgs_per_s"] = [r.msgs_per_s
                                                        for r in all_runs[(variant, load_name)]]
        e = extra[load_name]
        f[f"durable_over_plain_{key}"] = ratio
        medians = [statistics.median(r.msgs_per_s for r in all_runs[(v, load_name)])
                   for v in DURABLE_VARIANTS]
        f[f"durable_over_plain_{key}_median"] = medians[1] / medians[0] if medians[0] else 0.0
        f[f"durable_{key}_drain_s"] = e["drain_s"]
        f[f"durable_{key}_points_written"] = int(e["points"])
        f[f"durable_{key}_sink_errors"] = int(e["sink_errors"])
        f[f"durable_{key}_checkpoints"] = int(e["checkpoints"])
        f[f"durable_{key}_wal_fsyncs"] = int(e["fsyncs"])
        handled = sum(r.handled for r in all_runs[("durable", load_name)])
        f[f"durable_{key}_messages_per_fsync"] = handled / e["fsyncs"] if e["fsyncs"] else None
        f[f"collector_{key}_dropped"] = int(e["dropped"])
        unit = "msg" if load_name == "single" else "readings"
        value = (lambda run: run.msgs_per_s) if load_name == "single" \
            else (lambda run: run.readings_per_s)
        name = f"{load_name} QoS {DURABLE_QOS}"
        result.row(f"{name} durable + VictoriaMetrics", _per_s(value(durable), unit))
        result.row(f"{name} plain, no sink", _per_s(value(plain), unit), f"{ratio:.2f}",
                   "baseline")
        result.row(f"{name} median round, durable / plain",
                   f"{f[f'durable_over_plain_{key}_median']:.2f}")
        result.row(f"{name} lost plain/durable", f"{plain.lost:,} / {durable.lost:,}",
                   agree="yes" if plain.lost == durable.lost == 0 else "NO")
        per_fsync = f[f"durable_{key}_messages_per_fsync"]
        result.row(f"{name} log fsyncs, msg each",
                   f"{int(e['fsyncs']):,}, {per_fsync or 0:,.1f}")
    f["durable_target_met"] = met
    f["lost_qos1"] = sum(run.lost for run in runs.values())
    f.update(params)
    result.figures = f
    result.notes += [
        f"load: {params['messages']:,} single-reading and {params['batch_messages']:,} "
        f"100-reading messages per flood at QoS {DURABLE_QOS}, from {params['publishers']} "
        f"publisher process(es), {params['lines']} lines x {params['meters_per_line']} "
        f"meters; broker {params['broker']}",
        f"durable: --state-dir (a fresh folder per flood; write-ahead log fsynced per batch "
        f"before its acknowledgements, checkpoint every {params['checkpoint_every']} and at "
        f"stop) and an InfluxDB sink ({params['influx_server']}) behind the spool's writer; "
        "plain: no sink, no state directory",
        f"rates: fastest of {params['rounds']} floods each, the two alternating; ratio column = "
        "durable over plain (messages/s); the writer's drain after each durable flood is "
        "outside the timing and in the JSON",
        f"target durable/plain (fastest rounds) >= {TARGET} single and batch: "
        f"{'yes' if met else 'NO'}; lost at QoS 1: {f['lost_qos1']:,} (must be 0)",
    ]
    return result
