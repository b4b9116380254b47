"""The wheel is what users get: build it, install it in a fresh venv, and use it from there.

An editable install hides packaging mistakes (a missing data file, a top-level
``kernels`` leaking out, a console script pointing nowhere), so this builds the
wheel from the checkout, installs it with its dependencies into a new virtual
environment, and runs it from a folder outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 300


def _run(cmd: list[str], cwd: Path, timeout_s: float = BUILD_TIMEOUT_S) -> str:
    """Run a command, and on failure show its output (pip's reasons) in the assertion."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "WATTLINE_"))}
    done = subprocess.run(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, in an isolated build environment like pip's."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)], cwd=out)
    wheels = list(out.glob("wattline-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies (from the index, via pip's cache)."""
    env_dir = tmp_path_factory.mktemp("fresh-venv")
    venv.create(env_dir, with_pip=True, clear=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=env_dir)
    return env_dir


def _in_fresh_venv(env_dir: Path, code: str) -> str:
    """Run ``code`` isolated (-I: no checkout or cwd on sys.path) from outside the checkout."""
    return _run([str(env_dir / "bin" / "python"), "-I", "-c", code], cwd=env_dir).strip()


def test_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top_levels if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top_levels - dist_info == {"wattline"}
    assert "wattline/kernels/__init__.py" in names
    assert "wattline/ingest/__init__.py" in names
    assert "wattline/simulators/__init__.py" in names
    assert "wattline/contract/__init__.py" in names
    assert "wattline/benchmarks/__init__.py" in names
    for stage in ("app", "decode", "durable", "sinks", "sources"):
        assert f"wattline/ingest/{stage}/__init__.py" in names


def test_wheel_ships_the_reference_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "wattline/contract/data/energy.yaml" in names
    with zipfile.ZipFile(wheel).open("wattline/contract/data/energy.yaml") as ref:
        assert b"kgce_per_unit: 0.1229" in ref.read()


def test_installed_wheel_imports_from_the_venv_not_the_checkout(installed: Path) -> None:
    paths = _in_fresh_venv(
        installed,
        "import wattline.kernels, wattline.ingest, wattline.simulators\n"
        "for m in (wattline.kernels, wattline.ingest, wattline.simulators): print(m.__file__)",
    ).splitlines()
    assert len(paths) == 3
    for path in paths:
        assert Path(path).is_relative_to(installed), path


def test_installed_wheel_has_no_top_level_kernels(installed: Path) -> None:
    found = _in_fresh_venv(
        installed, "import importlib.util; print(importlib.util.find_spec('kernels'))"
    )
    assert found == "None"


def test_installed_wheel_reads_its_reference_data(installed: Path) -> None:
    text = _in_fresh_venv(
        installed,
        "from importlib.resources import files\n"
        "print(files('wattline.contract').joinpath('data/energy.yaml').read_text()[:20000])",
    )
    assert "carrier: electricity" in text


def test_installed_wattline_command_shows_help(installed: Path) -> None:
    out = _run([str(installed / "bin" / "wattline"), "--help"], cwd=installed, timeout_s=60)
    assert "wattline" in out and "run" in out


@pytest.mark.e2e
def test_installed_wattline_takes_sparkplug_readings_from_a_real_broker(
        installed: Path, mosquitto, wattline_daemon, site: str) -> None:
    """``pip install`` alone gives a working --sparkplug: no pysparkplug, no extra step."""
    import time

    import paho.mqtt.client as mqtt

    from tests.processes import wait_until
    from wattline.contract import sparkplug_b as spb

    assert _in_fresh_venv(installed, "import importlib.util\n"
                                     "print(importlib.util.find_spec('pysparkplug'))") == "None"
    daemon = wattline_daemon(["--mqtt-url", mosquitto.url, "--client-id", f"wl-{site}",
                              "--sparkplug"], program=[str(installed / "bin" / "wattline"),
                                                       "run"], ready_timeout_s=90)
    group, node = f"Sparkplug {site}", "EAF 1"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        def born() -> bool:  # QoS 0, as Sparkplug says: again until the daemon has one
            now = int(time.time() * 1000)
            client.publish(f"spBv1.0/{group}/NBIRTH/{node}", spb.encode(
                [spb.Metric(name="energy/Öfen-3", alias=1, timestamp=now,
                            datatype=spb.DataType.DOUBLE, value=100.0)],
                timestamp=now, seq=0)).wait_for_publish(5)
            return (daemon.metric("wattline_sparkplug_events_total", {"event": "birth"})
                    or 0) >= 1

        wait_until(born, timeout_s=60, interval_s=0.5, what="the daemon took an NBIRTH")
        now = int(time.time() * 1000) + 1000
        client.publish(f"spBv1.0/{group}/NDATA/{node}", spb.encode(
            [spb.Metric(alias=1, timestamp=now, value=104.0)], timestamp=now,
            seq=1)).wait_for_publish(5)
        wait_until(lambda: daemon.metric("wattline_line_last_reading_timestamp_seconds",
                                         {"site": group, "line": node}) == now / 1000,
                   timeout_s=30, what="the NDATA reading accepted")
        assert daemon.metric_sum("wattline_payload_errors_total") == 0
    finally:
        client.disconnect()
        client.loop_stop()
