"""``wattline report energy`` over a Parquet store: the JSON and HTML it writes, and its
one-line refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

from tests.report_rows import line_rows, write_store
from wattline.ingest.app.cli import main

CONFIG = '''
[lines."demo/eaf-1"]
product = "eaf_steel"
batch = true

[lines."demo/kiln-1"]
product = "cement_clinker"
'''


def _store(tmp_path: Path, *tables: tuple[pa.Table, pa.Table]) -> Path:
    return write_store(tmp_path / "store", *tables)


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "wattline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["report", "energy", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once for the module: the tests only read it."""
    return _store(
        tmp_path_factory.mktemp("plant"),
        line_rows("demo", "eaf-1", "2026-09-01", 91, saving=0.05, saving_from="2026-11-01",
                  batches_per_shift=4, seed=1),
        line_rows("demo", "kiln-1", "2026-09-01", 91, kgce_per_t=105.0, seed=2))


def test_json_gives_each_line_its_baseline_and_savings(plant: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code, output = _run("--store", plant, "--config", _config(tmp_path), "--from",
                        "2026-11-01", "--to", "2026-11-30", "--baseline-from", "2026-09-01",
                        "--baseline-to", "2026-10-31", "--format", "json", "--out", out)
    assert code == 0, output
    assert f"wrote the energy report of 2 line(s), 2026-11-01 to 2026-11-30, to {out}" in output
    doc = orjson.loads(out.read_bytes())
    eaf, kiln = doc["lines"]
    assert (eaf["line"], kiln["line"]) == ("demo/eaf-1", "demo/kiln-1")
    assert eaf["model"]["periods"] == kiln["model"]["periods"] == 61
    assert len(eaf["days"]) == 30 and len(eaf["shifts"]) == 90
    assert len(eaf["batches"]) == 30 * 3 * 4 and kiln["batches"] is None  # not a batch line
    assert eaf["cusum_slope_share"] == pytest.approx(0.05, abs=0.002)
    assert abs(kiln["cusum_slope_share"]) < 0.002


def test_the_default_baseline_is_the_year_before_from(plant: Path, tmp_path: Path) -> None:
    code, output = _run("--store", plant, "--config", _config(tmp_path), "--from",
                        "2026-11-01", "--to", "2026-11-30", "--line", "demo/kiln-1",
                        "--format", "json")
    assert code == 0, output
    doc = orjson.loads(output)
    assert (doc["baseline_from"], doc["baseline_to"]) == ("2025-11-01", "2026-10-31")
    assert [line["line"] for line in doc["lines"]] == ["demo/kiln-1"]
    assert doc["lines"][0]["model"]["periods"] == 61  # what the store holds of that year


def test_shifts_can_be_the_model_periods(plant: Path, tmp_path: Path) -> None:
    code, output = _run("--store", plant, "--config", _config(tmp_path), "--from",
                        "2026-11-01", "--to", "2026-11-30", "--line", "demo/eaf-1",
                        "--model-period", "shift", "--format", "json")
    assert code == 0, output
    line = orjson.loads(output)["lines"][0]
    assert line["model"]["periods"] == 61 * 3 and len(line["savings"]) == 90


def test_html_is_one_page_with_every_chart(plant: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, output = _run("--store", plant, "--config", _config(tmp_path), "--from",
                        "2026-11-01", "--to", "2026-11-30", "--out", out)
    assert code == 0, output
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == 2 * 5 + 1  # days, shifts, model, expected, cusum; batches
    assert "<script" not in page and "http://" not in page.replace(
        "http://www.w3.org", "").replace("http://purl.org", "").replace(
        "http://creativecommons.org", "")


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2027-01-01", "--to", "2027-01-31", "--baseline-from", "2026-12-01",
      "--baseline-to", "2026-12-31"], "the store holds no periods from 2027-01-01"),
    (["--from", "2026-11-01", "--to", "2026-11-30", "--baseline-from", "2026-10-25",
      "--baseline-to", "2026-10-31"], "demo/eaf-1: no baseline model over its 7 final day(s)"),
    (["--from", "2026-11-01", "--to", "2026-11-30", "--line", "demo/eaf-9"],
     "the store has no periods of line 'demo/eaf-9'"),
    (["--from", "2026-11-31", "--to", "2026-11-30"], "expected a date YYYY-MM-DD"),
    (["--from", "2026-11-30", "--to", "2026-11-01"], "is before the first"),
    (["--from", "2026-11-01", "--to", "2026-11-30", "--baseline-from", "2026-09-01"],
     "give both --baseline-from and --baseline-to"),
])
def test_a_report_that_cannot_be_made_is_one_line(plant: Path, tmp_path: Path,
                                                  args: list[str], message: str) -> None:
    code, output = _run("--store", plant, "--config", _config(tmp_path), *args)
    assert code != 0
    assert message in output
    assert "Traceback" not in output
    assert len([ln for ln in output.splitlines() if ln.startswith("Error")]) == 1


def test_a_line_without_a_product_is_one_line_naming_it(plant: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, '[lines."demo/eaf-1"]\nproduct = "eaf_steel"\n')
    code, output = _run("--store", plant, "--config", config, "--from", "2026-11-01", "--to",
                        "2026-11-30")
    assert code == 1
    assert output.startswith("Error: demo/kiln-1 has no product")
    assert len(output.strip().splitlines()) == 1


def test_a_baseline_production_does_not_explain_is_refused_with_r_squared(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path, line_rows("demo", "kiln-1", "2026-09-01", 91, noise=0.03,
                                       base_kgce_per_shift=40_000.0, kgce_per_t=1.0,
                                       tonnes_per_shift=(495.0, 505.0)))
    code, output = _run("--store", store, "--config", _config(tmp_path), "--from",
                        "2026-11-01", "--to", "2026-11-30")
    assert code == 1
    assert "demo/kiln-1: no baseline model over its 61 final day(s)" in output
    assert "below 0.75" in output and len(output.strip().splitlines()) == 1


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    code, output = _run("--store", tmp_path / "nowhere", "--from", "2026-11-01", "--to",
                        "2026-11-30")
    assert code == 1 and "no store at" in output


def test_a_relevant_variable_from_a_csv_enters_the_model(tmp_path: Path) -> None:
    periods, batches = line_rows("demo", "kiln-1", "2026-09-01", 91, seed=5,
                                 kgce_per_t=105.0)
    rows = periods.to_pylist()
    days = sorted(r["time_ms"] for r in rows if r["period"] == "day")
    degree_days = {t: float((i * 7) % 13) for i, t in enumerate(days)}
    for r in rows:  # 300 kgce per degree-day, spread over the day's three shifts
        extra = 300.0 * degree_days[r["time_ms"] - r["time_ms"] % 86_400_000]
        if r["period"] == "shift":
            extra /= 3
        elif r["period"] == "month":
            extra = 0.0
        r["energy_kgce"] += extra
    store = _store(tmp_path, (pa.Table.from_pylist(rows, schema=periods.schema),
                              batches))
    csv_path = tmp_path / "degree_days.csv"
    csv_path.write_text("period,degree_days\n" + "".join(
        f"{datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%d},{v}\n"
        for t, v in degree_days.items()))
    args = ["--store", store, "--config", _config(tmp_path), "--from", "2026-11-01", "--to",
            "2026-11-30", "--baseline-from", "2026-09-01", "--baseline-to", "2026-10-31",
            "--format", "json"]
    code, output = _run(*args, "--variables", csv_path)
    assert code == 0, output
    model = orjson.loads(output)["lines"][0]["model"]
    assert model["variables"]["degree_days"] == pytest.approx(300.0, rel=0.05)
    assert model["per_t"] == pytest.approx(105.0, rel=0.01)
    code, output = _run(*args)
    assert code == 0, output
    assert orjson.loads(output)["lines"][0]["model"]["r_squared"] < model["r_squared"]

    csv_path.write_text("period,degree_days\n2026-09-01,5\n")
    code, output = _run(*args, "--variables", csv_path)
    assert code == 1
    assert "relevant variable 'degree_days' has no value for 60 period(s), the first " \
           "2026-09-02" in output
    csv_path.write_text("period,degree_days\n2026-09-01,warm\n")
    code, output = _run(*args, "--variables", csv_path)
    assert code == 1 and f"{csv_path}:2: degree_days of 2026-09-01 is not a number" in output
