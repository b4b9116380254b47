"""The energy report's HTML page in a real headless Chromium (Debian's ``chromium``, driven
by Playwright without its own browser download): no console error, every chart drawn,
nothing fetched from anywhere. A screenshot of the page and the page itself are kept in
``tests/artifacts/`` (gitignored) for a person to look at."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import missing_component
from tests.processes import ComponentMissing
from tests.report_rows import line_rows, write_store
from wattline.ingest.app.cli import main

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")


def _chromium() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    missing_component(ComponentMissing("chromium"))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # the test extra, installed by scripts/setup.sh
        missing_component(ComponentMissing("playwright (the Python package)"))

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _page_file(tmp_path: Path) -> tuple[Path, int]:
    """``wattline report energy`` over a store of a batch EAF line and a kiln, the EAF
    saving 5 % from November on."""
    store = write_store(
        tmp_path / "store",
        line_rows("demo", "eaf-1", "2026-09-01", 91, saving=0.05, saving_from="2026-11-01",
                  batches_per_shift=8, seed=1),
        line_rows("demo", "kiln-1", "2026-09-01", 91, seed=2, kgce_per_t=105.0))
    config = tmp_path / "wattline.toml"
    config.write_text('[lines."demo/eaf-1"]\nproduct = "eaf_steel"\nbatch = true\n'
                      '[lines."demo/kiln-1"]\nproduct = "cement_clinker"\n')
    path = tmp_path / "energy-report.html"
    result = CliRunner().invoke(main, [
        "report", "energy", "--store", str(store), "--config", str(config), "--from",
        "2026-11-01", "--to", "2026-11-30", "--baseline-from", "2026-09-01", "--baseline-to",
        "2026-10-31", "--format", "html", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path, 2


def test_the_report_opens_in_chromium_with_every_chart_and_no_console_error(
    browser: object, tmp_path: Path,
) -> None:
    path, lines = _page_file(tmp_path)
    page = browser.new_page(viewport={"width": 1100, "height": 1600})  # type: ignore[attr-defined]
    problems: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(path.as_uri(), wait_until="load")

    assert problems == []
    assert fetched == [path.as_uri()]  # the page alone: no script, style, font or image
    kinds = ("days", "shifts", "model", "expected", "cusum")
    for i in range(lines):
        for kind in kinds:
            chart = page.locator(f"#chart-{kind}-{i} > svg")
            assert chart.count() == 1, f"line {i} has no {kind} chart"
            assert chart.bounding_box()["height"] > 100  # drawn, not an empty element
    assert page.locator("figure[data-chart=batches] > svg").count() == 1  # the EAF only
    assert page.locator("figure[data-chart] > svg").count() == lines * len(kinds) + 1
    titles = page.locator("figure[data-chart=cusum] svg > title").evaluate_all(
        "titles => titles.map(t => t.textContent)")
    assert titles == ["CUSUM of savings"] * lines
    assert "demo / eaf-1" in page.locator("h2").all_inner_texts()[0]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "energy-report.png"), full_page=True)
    shutil.copyfile(path, ARTIFACTS / "energy-report.html")
    assert (ARTIFACTS / "energy-report.png").stat().st_size > 10_000
    page.close()
