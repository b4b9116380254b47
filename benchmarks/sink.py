"""``wattline bench sink``: the InfluxDB writer and the spool, each against a baseline.

Three measures, each as a rate and as a ratio over a baseline measured in the
same run, rounds of subject and baseline taking turns so that a noisy neighbour
slows both alike; the best round of each is reported:

- **InfluxDB writer, batched**: points per second ``InfluxSink.write`` gets to a
  server with batches of ``batch_points`` rows of a synthetic results table
  (``INTENSITY_SCHEMA``). Baseline: the same sink writing one point per request.
  The server is ``influx_url``, or a VictoriaMetrics started on a free port in a
  temporary folder; with our own server, the points stored are counted back and
  compared with the points written.
- **raw pre-joined POST**, the database's own limit for the same rows: the batches
  encoded as line protocol before the timing, then each one gzipped at the writer's
  level and posted in one request over a kept-alive connection (``sink_raw``). The
  writer's ratio to it is what the writer's own work costs. Also the same bodies
  gzipped before the timing (the server's share alone).
- **spool write**: MB/s of ``Spool.append`` (one Arrow IPC segment per batch,
  written under a hidden name, fsynced, renamed, folder fsynced). Baseline: the
  same bytes written and fsynced as plain files in the same folder.
- **spool drain**: MB/s of ``Spool.read`` then ``Spool.remove`` of every segment,
  oldest first. Baseline: reading the plain files back and unlinking them.

MB here is 10^6 bytes.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import influxdb_client
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from wattline.benchmarks.report import BenchResult, machine, rate
from wattline.benchmarks.sink_raw import RawPoster
from wattline.contract.schemas import INTENSITY_SCHEMA
from wattline.ingest.app.broker import free_port
from wattline.ingest.durable.spool import Spool
from wattline.ingest.sinks.influx import GZIP_LEVEL, InfluxSink
from wattline.ingest.sinks.line_protocol import MEASUREMENT, encode_intensity

MB = 1_000_000
TICK_MS = 10_000
SITES = ("north", "south", "east")
LINES_PER_SITE = 4
WINDOWS = ("15m", "1h", "24h")
WINDOW_HOURS = {"15m": 0.25, "1h": 1.0, "24h": 24.0}
IDLE_SHARE = 0.1
"""Share of rows whose window produced nothing: their intensities are null."""
BATCHED_SITE_PREFIX = "batched-"
SINGLE_SITE_PREFIX = "single-"
RAW_SITE_PREFIX = "raw-"
PRECOMPRESSED_SITE_PREFIX = "rawgz-"
WARMUP_SITE_PREFIX = "warmup-"
VM_START_TIMEOUT_S = 30.0
VM_STOP_TIMEOUT_S = 10.0
STORED_SETTLE_S = 15.0  # how long the count of stored points may take to settle


# -- the synthetic results --------------------------------------------------------------------


def synthetic_intensity(rows: int, *, first_tick_ms: int, site_prefix: str = "",
                        seed: int = 0) -> pa.Table:
    """``rows`` rows of ``INTENSITY_SCHEMA`` as the pipeline emits them, ticks 10 s apart.

    Every tick holds one row per site, line and window (3 sites x 4 lines x 3
    windows), rows ordered by tick, then line, then window, as ``intensity_table``
    orders them; the table stops after ``rows`` rows, mid-tick if need be. Sums grow
    with the window's length; about a tenth of the rows are idle windows, whose
    ``kgce_per_t`` and ``kwh_per_t`` are null. Site names start with ``site_prefix``.
    """
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    rng = np.random.default_rng(seed)
    keys = [(f"{site_prefix}{site}", f"line-{j}", window)
            for site in SITES for j in range(LINES_PER_SITE) for window in WINDOWS]
    per_tick = len(keys)
    index = np.arange(rows)
    key = index % per_tick
    sites = pa.array([k[0] for k in keys], pa.string()).take(pa.array(key))
    lines = pa.array([k[1] for k in keys], pa.string()).take(pa.array(key))
    windows = pa.array([k[2] for k in keys], pa.string()).take(pa.array(key))
    time_ms = first_tick_ms + (index // per_tick).astype(np.int64) * TICK_MS
    hours = np.array([WINDOW_HOURS[k[2]] for k in keys])[key]
    electricity_kwh = rng.uniform(800.0, 1200.0, rows) * hours
    energy_kgce = electricity_kwh * 0.1229 + rng.uniform(50.0, 150.0, rows) * hours
    idle = rng.random(rows) < IDLE_SHARE
    production_t = np.where(idle, 0.0, rng.uniform(8.0, 12.0, rows) * hours)
    # The rest of the energy is natural gas burnt on site; electricity at the grid factor.
    co2_direct_t = (energy_kgce - electricity_kwh * 0.1229) / 1.2143 * 0.001994
    co2_indirect_t = electricity_kwh * 0.5306 / 1000
    with np.errstate(divide="ignore", invalid="ignore"):
        kgce_per_t = energy_kgce / production_t
        kwh_per_t = electricity_kwh / production_t
        co2_per_t = (co2_direct_t + co2_indirect_t) / production_t
    return pa.Table.from_arrays(
        [sites, lines, windows, pa.array(time_ms), pa.array(energy_kgce),
         pa.array(electricity_kwh), pa.array(production_t),
         pa.array(kgce_per_t, mask=idle), pa.array(kwh_per_t, mask=idle),
         pa.array(co2_direct_t), pa.array(co2_indirect_t), pa.array(co2_per_t, mask=idle)],
        schema=INTENSITY_SCHEMA,
    )


def split_batches(table: pa.Table, batch_rows: int) -> list[pa.Table]:
    """``table`` cut into consecutive tables of ``batch_rows`` rows (the last may be shorter)."""
    return [table.slice(start, batch_rows).combine_chunks()
            for start in range(0, table.num_rows, batch_rows)]


def field_values(table: pa.Table) -> int:
    """How many field values the table's points carry: five sums (energy, electricity,
    production, CO2 direct and indirect) plus non-null intensities."""
    return 5 * table.num_rows + sum(len(table.column(name)) - table.column(name).null_count
                                    for name in ("kgce_per_t", "kwh_per_t", "co2_per_t"))


# -- a VictoriaMetrics of our own ----------------------------------------------------------------


def find_victoria_metrics() -> str | None:
    """The ``victoria-metrics`` program from PATH or /usr/bin, or None."""
    found = shutil.which("victoria-metrics")
    if found:
        return found
    candidate = "/usr/bin/victoria-metrics"
    return candidate if os.access(candidate, os.X_OK) else None


def _http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


class VictoriaMetricsServer:
    """``victoria-metrics`` on 127.0.0.1 and a free port, its data in a temporary folder.

    Started by the constructor, which returns once ``/health`` answers ``OK``;
    ``stop()`` ends it (SIGTERM, then SIGKILL) and removes the folder.
    """

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="wattline-bench-vm-")
        self._log = open(Path(self._dir.name) / "victoria-metrics.log", "wb")  # noqa: SIM115
        self._process = subprocess.Popen(
            [binary, f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={Path(self._dir.name) / 'data'}", "-retentionPeriod=100y",
             "-search.latencyOffset=0s"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + VM_START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self._process.returncode}:\n"
                                   f"{self._log_tail()}")
            with contextlib.suppress(OSError):
                status, body = _http_get(f"{self.url}/health", timeout_s=1.0)
                if status == 200 and body.strip() == b"OK":
                    return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"victoria-metrics did not answer /health within "
                                   f"{VM_START_TIMEOUT_S:.0f} s:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = (Path(self._dir.name) / "victoria-metrics.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stored_values(self, site_regex: str) -> Counter[str]:
        """Samples stored per series name over ``energy_intensity_*{site=~site_regex}``.

        Asks the server to flush what it buffers first, so that everything written
        so far is counted.
        """
        status, body = _http_get(f"{self.url}/internal/force_flush")
        if status != 200:
            raise RuntimeError(f"victoria-metrics force_flush answered {status}: {body[:200]!r}")
        selector = f'{{__name__=~"{MEASUREMENT}_.*",site=~"{site_regex}"}}'
        query = urllib.parse.urlencode({"match[]": selector, "format": "__name__"})
        status, body = _http_get(f"{self.url}/api/v1/export/csv?{query}", timeout_s=120.0)
        if status != 200:
            raise RuntimeError(f"victoria-metrics export answered {status}: {body[:300]!r}")
        return Counter(row[0] for row in csv.reader(io.StringIO(body.decode())) if row)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(VM_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(VM_STOP_TIMEOUT_S)
        self._log.close()
        self._dir.cleanup()


@contextmanager
def influx_server(influx_url: str | None) -> Iterator[tuple[str, VictoriaMetricsServer | None]]:
    """The server to write to: ``influx_url``, or a VictoriaMetrics of our own (also yielded)."""
    if influx_url:
        yield influx_url, None
        return
    binary = find_victoria_metrics()
    if binary is None:
        raise RuntimeError("victoria-metrics is not installed: `make setup` (as root) installs "
                           "it; or give --influx-url")
    server = VictoriaMetricsServer(binary)
    try:
        yield server.url, server
    finally:
        server.stop()


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One timed round: how much it moved (points or bytes) and in how many seconds."""

    amount: float
    seconds: float

    @property
    def per_s(self) -> float:
        return self.amount / self.seconds if self.seconds > 0 else 0.0


def best(rounds: list[Timed]) -> float:
    """The fastest round's rate."""
    return max(r.per_s for r in rounds)


def write_points(sink: InfluxSink, batches: list[pa.Table]) -> Timed:
    """Write every batch with ``sink.write``, one request each; the points and seconds."""
    began = time.perf_counter()
    for batch in batches:
        sink.write(batch)
    return Timed(sum(b.num_rows for b in batches), time.perf_counter() - began)


def raw_post(poster: RawPoster, bodies: list[bytes], points: int, *,
             compress: bool) -> Timed:
    """POST each body in one request, gzipping it inside the timing when ``compress``."""
    began = time.perf_counter()
    for body in bodies:
        poster.post(poster.compress(body) if compress else body)
    return Timed(points, time.perf_counter() - began)


def spool_write(spool: Spool, batches: list[pa.Table]) -> Timed:
    """``Spool.append`` every batch; the bytes of the segments written and the seconds."""
    written = 0
    began = time.perf_counter()
    for batch in batches:
        written += spool.append(batch, "intensity").size
    return Timed(written, time.perf_counter() - began)


def spool_drain(spool: Spool) -> tuple[Timed, int]:
    """``Spool.read`` and ``Spool.remove`` every segment, oldest first; also the rows read."""
    drained = rows = 0
    began = time.perf_counter()
    while (segment := spool.oldest()) is not None:
        rows += spool.read(segment).num_rows
        spool.remove(segment)
        drained += segment.size
    return Timed(drained, time.perf_counter() - began), rows


def raw_write(folder: Path, contents: list[bytes]) -> tuple[Timed, list[Path]]:
    """Each of ``contents`` written to a file of its own in ``folder`` and fsynced."""
    paths = [folder / f"raw-{i:06d}.bin" for i in range(len(contents))]
    began = time.perf_counter()
    for path, data in zip(paths, contents, strict=True):
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Timed(sum(len(c) for c in contents), time.perf_counter() - began), paths


def raw_read(paths: list[Path]) -> Timed:
    """Each file read whole, then unlinked, in order."""
    read = 0
    began = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            read += len(f.read())
        path.unlink()
    return Timed(read, time.perf_counter() - began)


def ipc_file_bytes(table: pa.Table) -> bytes:
    """The table as the Arrow IPC file a spool segment holds."""
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts), or ``unknown``."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    found, length = "unknown", -1
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > length:
            found, length = fields[2], len(mount_point)
    return found


def run_sink_bench(
    *,
    influx_url: str | None = None,
    influx_org: str = "wattline",
    influx_bucket: str = "wattline_bench",
    influx_token: str = "",
    points: int = 100_000,
    batch_points: int = 5_000,
    single_points: int = 2_000,
    spool_mb: float = 64.0,
    spool_dir: str | os.PathLike[str] | None = None,
    rounds: int = 3,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Measure the InfluxDB writer and the spool, each against its baseline.

    ``points`` points per batched round in batches of ``batch_points``;
    ``single_points`` (at most ``points``) one-point requests per baseline round;
    about ``spool_mb`` MB of ``batch_points``-row segments per spool round, in a
    temporary folder under ``spool_dir`` (default: the system's temporary folder).
    Each measure runs ``rounds`` times, alternating with its baseline; the best
    round of each counts. With ``influx_url``, points go to that server's
    ``influx_bucket`` (sites named ``batched-*``, ``single-*``, ``warmup-*``) and
    are not counted back.
    """
    if min(points, batch_points, single_points, rounds) <= 0 or spool_mb <= 0:
        raise ValueError("points, batch_points, single_points, spool_mb and rounds must be "
                         "positive")
    single_points = min(single_points, points)
    began = time.perf_counter()
    now_ms = int(time.time() * 1000) // TICK_MS * TICK_MS
    per_tick = len(SITES) * LINES_PER_SITE * len(WINDOWS)
    span_ms = -(-points // per_tick) * TICK_MS
    # Every round's points at a time range of their own, all of them ending a minute ago.
    first_tick_ms = now_ms - rounds * span_ms - 60_000
    figures: dict[str, Any] = {}

    progress("building the synthetic results ...")
    batched_rounds = [
        split_batches(synthetic_intensity(points, first_tick_ms=first_tick_ms + r * span_ms,
                                          site_prefix=BATCHED_SITE_PREFIX, seed=r),
                      batch_points)
        for r in range(rounds)]
    single_rounds = [
        split_batches(synthetic_intensity(single_points, first_tick_ms=first_tick_ms + r * span_ms,
                                          site_prefix=SINGLE_SITE_PREFIX, seed=100 + r), 1)
        for r in range(rounds)]
    warmup = synthetic_intensity(min(batch_points, 100), first_tick_ms=first_tick_ms,
                                 site_prefix=WARMUP_SITE_PREFIX)
    raw_rounds = [
        [encode_intensity(b) for b in split_batches(synthetic_intensity(
            points, first_tick_ms=first_tick_ms + r * span_ms, site_prefix=RAW_SITE_PREFIX,
            seed=r), batch_points)]
        for r in range(rounds)]
    precompressed_rounds = [
        [gzip.compress(encode_intensity(b), compresslevel=GZIP_LEVEL)
         for b in split_batches(synthetic_intensity(
             points, first_tick_ms=first_tick_ms + r * span_ms,
             site_prefix=PRECOMPRESSED_SITE_PREFIX, seed=r), batch_points)]
        for r in range(rounds)]
    values_written = sum(field_values(b) for batches in batched_rounds for b in batches)
    points_written = rounds * points

    with influx_server(influx_url) as (url, server):
        server_kind = "given" if server is None else "victoria-metrics (own)"
        progress(f"InfluxDB writer: {url} ({server_kind}); {rounds} rounds of {points:,} "
                 f"points in batches of {batch_points:,}, and {single_points:,} one at a time")
        sink = InfluxSink(url, influx_org, influx_bucket, influx_token)
        poster = RawPoster(url, influx_org, influx_bucket, influx_token, level=GZIP_LEVEL)
        try:
            sink.write(warmup)  # connection and first-request costs, outside every round
            sink.write(warmup.slice(0, 1))
            poster.post(poster.compress(encode_intensity(warmup)))
            batched: list[Timed] = []
            single: list[Timed] = []
            raw: list[Timed] = []
            precompressed: list[Timed] = []
            for r in range(rounds):
                batched.append(write_points(sink, batched_rounds[r]))
                raw.append(raw_post(poster, raw_rounds[r], points, compress=True))
                single.append(write_points(sink, single_rounds[r]))
                precompressed.append(raw_post(poster, precompressed_rounds[r], points,
                                              compress=False))
                progress(f"  round {r + 1}: batched {batched[-1].per_s:,.0f} points/s, "
                         f"raw POST {raw[-1].per_s:,.0f} points/s, single "
                         f"{single[-1].per_s:,.0f} points/s, raw pre-gzipped "
                         f"{precompressed[-1].per_s:,.0f} points/s")
        finally:
            sink.close()
            poster.close()
        if server is not None:
            progress("counting the points stored ...")
            # VictoriaMetrics registers new series in its index in the background: a series
            # created just before the count can be missing from an export for a few
            # seconds even after a flush, so the count is asked again until it settles.
            deadline = time.monotonic() + STORED_SETTLE_S
            while True:
                stored = server.stored_values(f"{BATCHED_SITE_PREFIX}.*")
                raw_stored = server.stored_values(
                    f"({RAW_SITE_PREFIX}|{PRECOMPRESSED_SITE_PREFIX}).*")
                complete = (stored[f"{MEASUREMENT}_energy_kgce"] >= points_written
                            and raw_stored[f"{MEASUREMENT}_energy_kgce"] >= 2 * points_written)
                if complete or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            points_stored: int | None = stored[f"{MEASUREMENT}_energy_kgce"]
            values_stored: int | None = sum(stored.values())
            raw_points_stored: int | None = raw_stored[f"{MEASUREMENT}_energy_kgce"]
        else:
            points_stored = values_stored = raw_points_stored = None

    figures["influx_batched_points_per_s"] = best(batched)
    figures["influx_single_points_per_s"] = best(single)
    figures["influx_batched_over_single"] = (figures["influx_batched_points_per_s"]
                                             / figures["influx_single_points_per_s"])
    figures["raw_post_points_per_s"] = best(raw)
    figures["influx_batched_over_raw"] = (figures["influx_batched_points_per_s"]
                                          / figures["raw_post_points_per_s"])
    figures["raw_precompressed_points_per_s"] = best(precompressed)
    figures["influx_batched_over_raw_precompressed"] = (
        figures["influx_batched_points_per_s"] / figures["raw_precompressed_points_per_s"])
    figures["raw_points_stored_ok"] = (None if raw_points_stored is None
                                       else raw_points_stored == 2 * points_written)
    figures["influx_batched_rounds_points_per_s"] = [t.per_s for t in batched]
    figures["raw_post_rounds_points_per_s"] = [t.per_s for t in raw]
    figures["raw_precompressed_rounds_points_per_s"] = [t.per_s for t in precompressed]
    figures["influx_single_rounds_points_per_s"] = [t.per_s for t in single]
    figures["points_written"] = points_written
    figures["points_stored"] = points_stored
    figures["field_values_written"] = values_written
    figures["field_values_stored"] = values_stored
    figures["points_stored_ok"] = (None if points_stored is None
                                   else points_stored == points_written
                                   and values_stored == values_written)

    spool_batches = batched_rounds[0]
    contents = [ipc_file_bytes(b) for b in spool_batches]
    mean_size = sum(len(c) for c in contents) / len(contents)
    segments = max(1, round(spool_mb * MB / mean_size))
    spool_tables = [spool_batches[i % len(spool_batches)] for i in range(segments)]
    raw_contents = [contents[i % len(contents)] for i in range(segments)]
    base = Path(tempfile.mkdtemp(prefix="wattline-bench-spool-", dir=spool_dir))
    try:
        filesystem = filesystem_of(base)
        progress(f"spool: {rounds} rounds of {segments:,} segments of {batch_points:,} rows "
                 f"({segments * mean_size / MB:,.1f} MB) in {base} ({filesystem})")
        s_write: list[Timed] = []
        r_write: list[Timed] = []
        s_drain: list[Timed] = []
        r_read: list[Timed] = []
        rows_read_ok = True
        spool_rows = sum(t.num_rows for t in spool_tables)
        for r in range(rounds):
            folder = base / f"round-{r}"
            spool = Spool(folder, max_bytes=max(1 << 40, 4 * segments * int(mean_size)))
            s_write.append(spool_write(spool, spool_tables))
            timed, paths = raw_write(folder, raw_contents)
            r_write.append(timed)
            timed, rows = spool_drain(spool)
            s_drain.append(timed)
            r_read.append(raw_read(paths))
            rows_read_ok &= rows == spool_rows and spool.dropped_segments == 0
            shutil.rmtree(folder, ignore_errors=True)
            progress(f"  round {r + 1}: write spool {s_write[-1].per_s / MB:,.1f} MB/s, raw "
                     f"{r_write[-1].per_s / MB:,.1f} MB/s; drain spool "
                     f"{s_drain[-1].per_s / MB:,.1f} MB/s, raw read {r_read[-1].per_s / MB:,.1f} "
                     "MB/s")
    finally:
        shutil.rmtree(base, ignore_errors=True)

    figures["spool_write_mb_per_s"] = best(s_write) / MB
    figures["raw_write_mb_per_s"] = best(r_write) / MB
    figures["spool_write_over_raw"] = (figures["spool_write_mb_per_s"]
                                       / figures["raw_write_mb_per_s"])
    figures["spool_drain_mb_per_s"] = best(s_drain) / MB
    figures["raw_read_mb_per_s"] = best(r_read) / MB
    figures["spool_drain_over_raw"] = (figures["spool_drain_mb_per_s"]
                                       / figures["raw_read_mb_per_s"])
    figures["spool_segments"] = segments
    figures["spool_segment_bytes"] = mean_size
    figures["spool_rows_read_ok"] = rows_read_ok
    progress(f"done in {time.perf_counter() - began:.0f} s")

    figures.update({
        "points": points, "batch_points": batch_points, "single_points": single_points,
        "spool_mb": spool_mb, "rounds": rounds, "influx_server": server_kind,
        "spool_filesystem": filesystem, "influxdb_client": influxdb_client.__version__,
        "pyarrow": pa.__version__, **machine(),
    })
    return _result(figures)


# -- the report --------------------------------------------------------------------------------


def _mb_per_s(value: float) -> str:
    return f"{value:,.1f} MB/s"


def _points_per_s(value: float) -> str:
    return f"{rate(value)[:-2].rstrip()} points/s"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def _result(figures: dict[str, Any]) -> BenchResult:
    """The table rows and notes of one run, over its figures."""
    result = BenchResult(figures=figures)
    f = figures
    result.row("influx batched write", _points_per_s(f["influx_batched_points_per_s"]))
    result.row("raw pre-joined gzip POST", _points_per_s(f["raw_post_points_per_s"]),
               f"{f['influx_batched_over_raw']:.2f}", "baseline")
    result.row("raw POST, gzipped before", _points_per_s(f["raw_precompressed_points_per_s"]),
               f"{f['influx_batched_over_raw_precompressed']:.2f}", "baseline")
    result.row("influx single-point write", _points_per_s(f["influx_single_points_per_s"]),
               f"{f['influx_batched_over_single']:,.1f}x", "baseline")
    if f["points_stored_ok"] is None:
        result.row("influx stored = written", f"{f['points_written']:,} written", agree="n/a")
    else:
        result.row("influx stored = written",
                   f"{f['points_stored']:,} / {f['points_written']:,} points",
                   agree=_verdict(f["points_stored_ok"]))
    result.row("spool append", _mb_per_s(f["spool_write_mb_per_s"]))
    result.row("raw write+fsync", _mb_per_s(f["raw_write_mb_per_s"]),
               f"{f['spool_write_over_raw']:.2f}", "baseline")
    result.row("spool read+remove", _mb_per_s(f["spool_drain_mb_per_s"]))
    result.row("raw read+unlink", _mb_per_s(f["raw_read_mb_per_s"]),
               f"{f['spool_drain_over_raw']:.2f}", "baseline")
    result.row("spool rows read = written", f"{f['spool_segments']:,} segments x "
               f"{f['rounds']}", agree=_verdict(f["spool_rows_read_ok"]))

    result.notes += [
        f"rates: best of {f['rounds']} rounds, each subject alternating with its baseline; "
        "the ratio column, on each baseline row, is its subject's rate over the baseline's "
        "(the subject of the influx baselines is the influx batched write, of each spool "
        "baseline the spool row above it); per-round rates are in the JSON",
        f"influx: server {f['influx_server']}; batches of {f['batch_points']:,} rows "
        f"({f['points']:,} points per round) written by InfluxSink.write, one gzipped request "
        "each, line protocol encoded inside the timing; baseline: the same sink writing "
        f"{f['single_points']:,} points one per request (1-row tables)",
        "raw: the same rows as line protocol encoded before the timing (by the writer's own "
        f"encoder), one POST per batch of {f['batch_points']:,} rows to /api/v2/write over one "
        f"kept-alive http.client connection, gzipped at level {GZIP_LEVEL} (the writer's) inside "
        "the timing; 'gzipped before' also takes gzip out of the timing (the server alone); "
        "the influx batched rate over each is on its row",
        "data: synthetic INTENSITY_SCHEMA rows, 3 sites x 4 lines x 3 windows per 10 s tick, "
        f"about {IDLE_SHARE:.0%} idle rows with null intensities",
    ]
    if f["points_stored_ok"] is None:
        result.notes.append("stored = written: not checked, --influx-url was given (it may "
                            "not be VictoriaMetrics)")
    else:
        result.notes.append(
            f"stored = written: {_verdict(f['points_stored_ok'])}: energy_kgce samples "
            f"{f['points_stored']:,} of {f['points_written']:,} points, all field values "
            f"{f['field_values_stored']:,} of {f['field_values_written']:,} (VictoriaMetrics "
            "export after force_flush); raw POSTs' points stored: "
            f"{_verdict(f['raw_points_stored_ok'])}")
    result.notes += [
        f"spool: {f['spool_segments']:,} segments of {f['batch_points']:,} rows "
        f"({f['spool_segment_bytes'] / MB:,.2f} MB each, "
        f"{f['spool_segments'] * f['spool_segment_bytes'] / MB:,.1f} MB per round, MB = 10^6 "
        f"bytes) on {f['spool_filesystem']}; append = hidden file, fsync, rename, folder fsync; "
        "baseline: the same bytes written to plain files and fsynced in the same folder",
        "drain: Spool.read (memory-mapped, so pages are touched lazily) and Spool.remove "
        "(unlink, folder fsync) of every segment, oldest first; baseline: plain files read "
        "whole and unlinked; both read freshly written files from the page cache",
    ]
    return result
