"""Five simulated weeks of a kiln through a real Mosquitto and the daemon into its Parquet
store, then ``wattline report energy`` on that store: the kiln saves 5 % from day 20 on
(``simulate --improve kiln-1@20dx0.95``), and the report's CUSUM slope is that saving,
as the simulator's truth states it.

The capture is recorded with ``simulate --record``, starting at a UTC midnight (so the
days, and the figures, are the same from one run to the next), and replayed as fast as
the broker takes it; the daemon's ``--max-past`` reaches back to its start. Stoppages
(``--idle``) on some days make the daily production vary, so that the baseline model
can tell base load from energy per tonne. The newest day may still be open (it ended
less than ``period_grace`` ago, or has not ended), so the report stops at the last day
that ended more than three hours ago."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from tests.e2e.gateway import wait_until_subscribed
from tests.processes import Mosquitto, Wattline, wait_until
from wattline.ingest.app.cli import main
from wattline.ingest.reports.store_periods import PlantDays, final_periods
from wattline.simulators.events import parse_idle, parse_improve
from wattline.simulators.expectations import saving_rows
from wattline.simulators.replay import read_capture

pytestmark = pytest.mark.e2e

DAYS = 35
SPEED = 1000.0
IMPROVE = "kiln-1@20dx0.95"
STOPPAGES = [(20, 4), (70, 10), (118, 7), (190, 14), (260, 3), (330, 9), (410, 12),
             (470, 6), (545, 5), (600, 11), (650, 8), (700, 5), (760, 9),
             (815, 4)]  # (hour since the start, hours)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def test_a_report_on_the_daemons_store_shows_the_simulated_saving(
    make_mosquitto: Callable[..., Mosquitto],
    wattline_daemon: Callable[..., Wattline],
    make_publisher: Callable[..., mqtt.Client],
    site: str,
    tmp_path: Path,
) -> None:
    capture = tmp_path / "kiln.jsonl"
    idles = [f"kiln-1@{start}h+{hours}h" for start, hours in STOPPAGES]
    runner = CliRunner()
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() - timedelta(days=DAYS - 1), datetime.min.time(),
                                UTC)
    recorded = runner.invoke(main, [
        "simulate", "--lines", "kiln-1", "--site", site, "--rate", "600", "--duration",
        str((now - midnight).total_seconds() / SPEED), "--speed", str(SPEED), "--seed", "7",
        "--improve", IMPROVE,
        *(arg for idle in idles for arg in ("--idle", idle)), "--record", str(capture)])
    assert recorded.exit_code == 0, recorded.output
    start_ms = read_capture(capture)[0].t_ms
    truth = saving_rows([parse_improve(IMPROVE), *map(parse_idle, idles)], site=site,
                        start_ms=start_ms)
    (saving,) = truth
    assert saving["saving_share"] == pytest.approx(0.05)

    broker = make_mosquitto()
    config = tmp_path / "wattline.toml"
    config.write_text(f'[lines."{site}/kiln-1"]\nproduct = "cement_clinker"\n')
    store = tmp_path / "store"
    daemon = wattline_daemon(["--mqtt-url", broker.url, "--store", str(store), "--config",
                              str(config), "--emit-every", "15m", "--windows", "1h,24h",
                              "--max-past", f"{DAYS + 5}d"])
    wait_until_subscribed(daemon, make_publisher(broker), site, timeout_s=30)
    replayed = runner.invoke(main, ["simulate", "--replay", str(capture), "--speed", "0",
                                    "--mqtt-url", broker.url])
    assert replayed.exit_code == 0, replayed.output

    # Whole days: the baseline before the improvement's day, the report after it.
    improved = _day(saving["from_ms"])
    baseline = (_day(start_ms) + timedelta(days=1), improved - timedelta(days=1))
    report = (improved + timedelta(days=1),
              _day(int(datetime.now(UTC).timestamp() * 1000) - 3 * 3_600_000)
              - timedelta(days=1))
    days = PlantDays(baseline[0], report[1])
    wait_until(lambda: final_periods(store, "day", days, site=site).num_rows == len(days),
               timeout_s=120, interval_s=1.0, what="every day final in the store")

    result = runner.invoke(main, [
        "report", "energy", "--store", str(store), "--config", str(config), "--line",
        f"{site}/kiln-1", "--from", str(report[0]), "--to", str(report[1]),
        "--baseline-from", str(baseline[0]), "--baseline-to", str(baseline[1]),
        "--format", "json"])
    assert result.exit_code == 0, result.output
    (line,) = orjson.loads(result.output)["lines"]
    assert line["model"]["periods"] == (baseline[1] - baseline[0]).days + 1 >= 12
    assert line["model"]["r_squared"] > 0.95
    assert len(line["savings"]) == (report[1] - report[0]).days + 1
    assert line["cusum_slope_share"] == pytest.approx(saving["saving_share"], abs=0.002)
    assert line["total_saving_share"] == pytest.approx(saving["saving_share"], abs=0.002)
