"""``wattline demo``: broker, simulated gateways, collector and a live intensity table.

The table fits 80 columns (the units are in its header, once per group); log records
print above it; Ctrl-C, SIGTERM and SIGHUP (closing the terminal) all stop the demo
cleanly, removing the broker it started and its temporary folders.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wattline.contract.reference_data import NationalLevel, load_reference
from wattline.ingest.app.broker import EmbeddedBroker, start_embedded_broker
from wattline.ingest.app.daemon import Collector
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.redact import LOG_FORMAT, RedactingFormatter

DEMO_LINES = ("eaf-1", "potline-1", "kiln-1")
DEMO_SITE = "demo"

# Which national level applies to each simulated model's product (reference data).
PRODUCT_OF_MODEL = {"eaf": "eaf_steel", "potline": "aluminium_liquid", "kiln": "cement_clinker"}
DESCRIPTION_OF_MODEL = {
    "eaf": "EAF steel",
    "potline": "Al potline",
    "kiln": "clinker kiln",
}


@dataclass
class LatestRow:
    tick_ms: int
    kgce_per_t: float | None
    kwh_per_t: float | None
    production_t: float


class LatestIntensity:
    """The newest row per (line, window), fed from the pipeline thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[tuple[str, str], LatestRow] = {}

    def update(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        cols = table.select(
            ["line", "window", "time_ms", "kgce_per_t", "kwh_per_t", "production_t"]
        ).to_pydict()
        with self._lock:
            for line, window, t, kgce, kwh, prod in zip(*cols.values(), strict=True):
                self.rows[(line, window)] = LatestRow(t, kgce, kwh, prod)

    def snapshot(self) -> dict[tuple[str, str], LatestRow]:
        with self._lock:
            return dict(self.rows)


UNITS = ("kgce/t", "kWh/t")


def _level_cell(level: NationalLevel | None, unit: str) -> str:
    """The national level in the group of its own unit ('' in the other): the benchmark
    above the baseline."""
    if level is None or level.unit != unit:
        return ""
    return f"{level.benchmark:,.0f}\n{level.baseline:,.0f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render_table(latest: LatestIntensity, windows: list[str], elapsed_s: float,
                 messages: float, broker_kind: str) -> Table:
    """The live table: per line, each window's kgce/t, then its kWh/t, each group with its
    national level; the units are in the header, once per group, so that it fits 80
    columns."""
    reference = load_reference()
    snap = latest.snapshot()
    table = Table(
        title=f"wattline demo: {elapsed_s:.0f} s, {messages:,.0f} messages, broker "
        f"{broker_kind}",
        caption="Rolling intensity per window; '-': no production in it yet. level: the "
        "national benchmark above the baseline (NDRC 2021/2023, GB standards).",
        caption_justify="left",
        box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False,
    )
    table.add_column("\nline", no_wrap=True)
    table.add_column("plant\nUTC", no_wrap=True)
    for unit, width in zip(UNITS, (6, 7), strict=True):  # kgce/t below 10,000, kWh/t 100,000
        for i, w in enumerate(windows):
            table.add_column(f"{unit if i == 0 else ''}\n{w}", justify="right", no_wrap=True,
                             min_width=width)
        table.add_column("\nlevel", justify="right", no_wrap=True, style="dim",
                         min_width=width)
    for line in DEMO_LINES:
        model = line.split("-")[0]
        level = reference.levels.get(PRODUCT_OF_MODEL[model])
        newest = max((snap[(line, w)].tick_ms for w in windows if (line, w) in snap),
                     default=None)
        cells = [f"{line}\n[dim]{DESCRIPTION_OF_MODEL[model]}[/dim]",
                 time.strftime("%H:%M", time.gmtime(newest / 1000)) if newest else "-"]
        for unit in UNITS:
            for w in windows:
                row = snap.get((line, w))
                cells.append(_number(None if row is None else
                                     row.kgce_per_t if unit == "kgce/t" else row.kwh_per_t))
            cells.append(_level_cell(level, unit))
        table.add_row(*cells)
    return table


def lines_with_intensity(latest: LatestIntensity) -> set[str]:
    return {
        line
        for (line, _w), row in latest.snapshot().items()
        if row.kgce_per_t is not None and math.isfinite(row.kgce_per_t)
    }


class ConsoleLogHandler(logging.Handler):
    """Log records printed through the demo's console: with a live table showing, rich
    prints them above it instead of through it."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(RedactingFormatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # A Text, not a str with print options: Live draws the table again within
            # this print, and options such as markup=False would apply to it too.
            style = "yellow" if record.levelno >= logging.WARNING else ""
            self.console.print(Text(self.format(record), style=style))
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: never raise from a log call
            self.handleError(record)


class DemoStopped(Exception):
    """SIGTERM or SIGHUP (the terminal closed) asked the demo to stop."""


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop_on_signal(signum: int, frame: object) -> None:
    for sig in _STOP_SIGNALS:  # once: a second signal must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    raise DemoStopped(signal.Signals(signum).name)


@contextlib.contextmanager
def _demo_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the demo as Ctrl-C does (main thread only: elsewhere the
    caller owns the signals); while it cleans up, no signal interrupts that."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop_on_signal) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP ignored for the time of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, *_STOP_SIGNALS)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(console: Console, *what: object) -> None:
    """Print, unless the terminal is gone (closing it sends SIGHUP, then writes fail)."""
    with contextlib.suppress(OSError):
        console.print(*what)


def run_demo(
    duration_s: float | None = None,
    mqtt_url: str | None = None,
    store: str | None = None,
    metrics_port: int = 9464,
    speed: float = 240.0,
    seed: int = 0,
    refresh_s: float = 2.0,
    console: Console | None = None,
    broker_choice: str = "auto",
) -> bool:
    """Run the demo; True when every line showed a finite kgce/t by the end.

    Ctrl-C, SIGTERM and SIGHUP stop it alike: the simulated gateways, the collector and
    the broker it started are stopped and its temporary folders removed. While it runs,
    log records print through ``console``, above the live table.
    """
    console = console or Console()
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    root.handlers = [ConsoleLogHandler(console)]
    try:
        with _demo_signals():
            return _run(duration_s, mqtt_url, store, metrics_port, speed, seed, refresh_s,
                        console, broker_choice)
    finally:
        root.handlers = saved_handlers


def _run(duration_s: float | None, mqtt_url: str | None, store: str | None,
         metrics_port: int, speed: float, seed: int, refresh_s: float, console: Console,
         broker_choice: str) -> bool:
    from wattline.simulators.publisher import simulate

    broker: EmbeddedBroker | None = None
    own_store = store is None
    store_dir = store or tempfile.mkdtemp(prefix="wattline-demo-store-")
    latest = LatestIntensity()
    collector: Collector | None = None
    stop = threading.Event()
    started = time.monotonic()
    sim_thread: threading.Thread | None = None
    broker_kind = mqtt_url or ""
    windows: list[str] = []

    def table() -> Table:
        received = None if collector is None else collector.metrics.registry.get_sample_value(
            "wattline_messages_received_total", {"topic_kind": "reading"})
        return render_table(latest, windows, time.monotonic() - started, received or 0.0,
                            broker_kind)

    try:
        if mqtt_url is None:
            console.print("starting a broker ...")
            broker = start_embedded_broker(prefer_mosquitto=broker_choice != "in-process")
            if broker_choice == "mosquitto" and broker.kind != "mosquitto":
                raise RuntimeError("--broker mosquitto: no mosquitto binary found; install "
                                   "the Debian package mosquitto or use --broker auto")
            mqtt_url = broker.url
            broker_kind = broker.kind
        settings = settings_from_mapping(
            {
                "mqtt_url": mqtt_url,
                "client_id": "wattline-demo",
                "store": store_dir,
                "metrics_port": metrics_port,
                # The simulated plant clock runs `speed` times faster than the wall clock.
                "max_future": "3650d",
                "watermark_wall_clock": False,
            }
        )
        windows = list(settings.windows)
        collector = Collector(settings, on_results=latest.update)
        plant_span_s = (duration_s or 3600.0) * speed
        sim_thread = threading.Thread(
            target=simulate,
            name="simulated-gateways",
            kwargs={
                "mqtt_url": mqtt_url,
                "lines": DEMO_LINES,
                "site": DEMO_SITE,
                "duration_s": duration_s,
                "speed": speed,
                "seed": seed,
                "start_ms": int((time.time() - plant_span_s) * 1000),
                "stop": stop,
            },
            daemon=True,
        )
        collector.start()
        collector.source.connected.wait(10)
        console.print(
            f"broker {mqtt_url} ({broker_kind}); store {store_dir}; metrics "
            f"http://127.0.0.1:{collector.metrics_port}/metrics; plant clock x{speed:g}"
            + (f"; stopping after {duration_s:g} s" if duration_s else "; Ctrl-C stops")
            + "; warnings and errors print above the table"
        )
        sim_thread.start()
        deadline = None if duration_s is None else started + duration_s
        if console.is_terminal:
            with Live(table(), console=console, refresh_per_second=4) as live:
                while sim_thread.is_alive() and (deadline is None or time.monotonic() < deadline):
                    time.sleep(refresh_s)
                    live.update(table())
        else:
            last_print = 0.0
            while sim_thread.is_alive() and (deadline is None or time.monotonic() < deadline):
                time.sleep(min(refresh_s, 1.0))
                if time.monotonic() - last_print >= max(refresh_s, 10.0):
                    console.print(table())
                    last_print = time.monotonic()
    except (KeyboardInterrupt, DemoStopped) as why:
        _say(console, f"stopping ({why or 'Ctrl-C'}) ...")
    finally:
        with _uninterrupted():
            stop.set()
            if sim_thread is not None and sim_thread.is_alive():
                sim_thread.join(10)
            if collector is not None:
                time.sleep(0.5)  # let the last published readings arrive
                collector.stop()
            if broker is not None:
                broker.stop()
            if own_store:
                shutil.rmtree(store_dir, ignore_errors=True)
        if collector is not None:
            _say(console, table())
    missing = set(DEMO_LINES) - lines_with_intensity(latest)
    if missing:
        _say(console, f"[yellow]no intensity yet for {', '.join(sorted(missing))}: "
             "run longer (--duration) or faster (--speed)[/yellow]")
    return not missing
