"""``wattline demo``: broker, simulated gateways, collector and a live intensity table."""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import pyarrow as pa
from rich.console import Console
from rich.live import Live
from rich.table import Table

from wattline.contract.reference_data import NationalLevel, load_reference
from wattline.ingest.app.broker import EmbeddedBroker, start_embedded_broker
from wattline.ingest.app.daemon import Collector
from wattline.ingest.config import settings_from_mapping

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


def _level_text(level: NationalLevel | None) -> str:
    if level is None:
        return "-"
    return f"{level.benchmark:g}/{level.baseline:g}\n{level.unit}"


def render_table(latest: LatestIntensity, windows: list[str], elapsed_s: float,
                 messages: float, broker_kind: str) -> Table:
    reference = load_reference()
    snap = latest.snapshot()
    table = Table(
        title=f"wattline demo: rolling energy intensity per line "
        f"({elapsed_s:.0f} s, {messages:.0f} messages, broker: {broker_kind})",
        caption="kgce/t and kWh/t per window; '-' while the window has no production. "
        "National levels: benchmark / baseline (NDRC 2021/2023, GB standards).",
    )
    table.add_column("line", no_wrap=True)
    table.add_column("plant UTC")
    for w in windows:
        table.add_column(f"{w}\nkgce/t", justify="right")
        table.add_column(f"{w}\nkWh/t", justify="right")
    table.add_column("national\nlevel")
    for line in DEMO_LINES:
        model = line.split("-")[0]
        cells = [f"{line}\n[dim]{DESCRIPTION_OF_MODEL[model]}[/dim]"]
        newest = max((snap[(line, w)].tick_ms for w in windows if (line, w) in snap), default=None)
        cells.append(time.strftime("%H:%M", time.gmtime(newest / 1000)) if newest else "-")
        for w in windows:
            row = snap.get((line, w))
            cells.append(f"{row.kgce_per_t:,.0f}" if row and row.kgce_per_t is not None else "-")
            cells.append(f"{row.kwh_per_t:,.0f}" if row and row.kwh_per_t is not None else "-")
        cells.append(_level_text(reference.levels.get(PRODUCT_OF_MODEL[model])))
        table.add_row(*cells)
    return table


def lines_with_intensity(latest: LatestIntensity) -> set[str]:
    return {
        line
        for (line, _w), row in latest.snapshot().items()
        if row.kgce_per_t is not None and math.isfinite(row.kgce_per_t)
    }


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
    """Run the demo; True when every line showed a finite kgce/t by the end."""
    from wattline.simulators.publisher import simulate

    console = console or Console()
    broker: EmbeddedBroker | None = None
    own_store = store is None
    store_dir = store or tempfile.mkdtemp(prefix="wattline-demo-store-")
    if mqtt_url is None:
        console.print("starting a broker ...")
        broker = start_embedded_broker(prefer_mosquitto=broker_choice != "in-process")
        if broker_choice == "mosquitto" and broker.kind != "mosquitto":
            broker.stop()
            raise RuntimeError("--broker mosquitto: no mosquitto binary found; install the "
                               "Debian package mosquitto or use --broker auto")
        mqtt_url = broker.url
        broker_kind = broker.kind
    else:
        broker_kind = mqtt_url
    latest = LatestIntensity()
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
    collector = Collector(settings, on_results=latest.update)
    stop = threading.Event()
    started = time.monotonic()
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
    windows = list(settings.windows)

    def table() -> Table:
        received = collector.metrics.registry.get_sample_value(
            "wattline_messages_received_total", {"topic_kind": "reading"}
        )
        return render_table(latest, windows, time.monotonic() - started, received or 0.0,
                            broker_kind)

    try:
        collector.start()
        collector.source.connected.wait(10)
        console.print(
            f"broker {mqtt_url} ({broker_kind}); store {store_dir}; metrics "
            f"http://127.0.0.1:{metrics_port}/metrics; plant clock x{speed:g}"
            + (f"; stopping after {duration_s:g} s" if duration_s else "; Ctrl-C stops")
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
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stop.set()
        if sim_thread.is_alive():
            sim_thread.join(10)
        time.sleep(0.5)  # let the last published readings arrive
        collector.stop()
        if broker is not None:
            broker.stop()
        console.print(table())
        if own_store:
            shutil.rmtree(store_dir, ignore_errors=True)
    missing = set(DEMO_LINES) - lines_with_intensity(latest)
    if missing:
        console.print(f"[yellow]no intensity yet for {', '.join(sorted(missing))}: "
                      "run longer (--duration) or faster (--speed)[/yellow]")
    return not missing
