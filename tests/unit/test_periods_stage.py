"""The periods stage in the pipeline: rows to sinks that take them, line protocol, and
its state through a checkpoint and a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from wattline.contract.errors import ConfigError
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.pipeline import Message, Pipeline
from wattline.ingest.sinks.line_protocol import encode_periods

T0 = 1_768_431_600_000  # 2026-01-15 00:00 in Europe/Berlin


class PeriodSink:
    name = "recording"

    def __init__(self) -> None:
        self.periods: list[pa.Table] = []

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        pass

    def write_periods(self, table: pa.Table) -> None:
        self.periods.append(table)

    def close(self) -> None:
        pass


def _messages(site: str, first: int, last: int) -> list[Message]:
    """Steps ``first .. last`` of 10 minutes: 60 kWh and 1 t a step."""
    msgs = []
    for k in range(first, last + 1):
        ts = T0 + 600_000 * k
        for kind, meter, value in (("energy", "incomer", 60.0 * k),
                                   ("production", "scale", 1.0 * k)):
            payload = json.dumps({"ts": ts, "v": value}).encode()
            msgs.append(Message(f"factory/{site}/eaf-1/{kind}/{meter}", payload, ts / 1000))
    return msgs


def _pipeline(sink: PeriodSink, state_dir: Path | None = None, **more: object) -> Pipeline:
    settings = {"max_past": "100000d", "plant_timezone": "Europe/Berlin", **more}
    if state_dir is not None:
        settings["state_dir"] = str(state_dir)
    return Pipeline(settings_from_mapping(settings), [sink], clock=lambda: T0 / 1000 + 86400 * 3)


def _final_days(sink: PeriodSink) -> list[dict]:
    rows = pa.concat_tables(sink.periods).to_pylist() if sink.periods else []
    return [r for r in rows if r["final"] and r["period"] == "day" and r["time_ms"] == T0]


def test_the_pipeline_writes_a_final_local_day_to_sinks_that_take_periods() -> None:
    sink = PeriodSink()
    _pipeline(sink).process(_messages("s", -1, 6 * 27))
    (day,) = _final_days(sink)
    assert (day["site"], day["line"], day["electricity_kwh"], day["production_t"]) == (
        "s", "eaf-1", 24 * 6 * 60.0, 24 * 6 * 1.0)
    assert day["kwh_per_t"] == 60.0 and day["late_readings"] == 0


def test_period_rows_are_energy_period_points_at_the_periods_start() -> None:
    sink = PeriodSink()
    _pipeline(sink).process(_messages("s", -1, 6 * 27))
    (day,) = _final_days(sink)
    table = pa.Table.from_pylist([day], schema=sink.periods[0].schema)
    # Electricity is scope 2, at the default grid factor (the newest national one).
    assert day["co2_indirect_t"] == pytest.approx(8640 * 0.5306 / 1000, rel=1e-12)
    assert day["co2_per_t"] == pytest.approx(60 * 0.5306 / 1000, rel=1e-12)
    assert encode_periods(table).decode() == (
        f"energy_period,site=s,line=eaf-1,period=day energy_kgce={8640 * 0.1229!r},"
        f"electricity_kwh=8640.0,production_t=144.0,kgce_per_t={8640 * 0.1229 / 144!r},"
        f"kwh_per_t=60.0,co2_direct_t=0.0,co2_indirect_t={day['co2_indirect_t']!r},"
        f"co2_per_t={day['co2_per_t']!r},final=1i,late_readings=0i {T0}\n")


def test_a_day_of_a_line_with_a_product_carries_its_grade_and_gap_to_benchmark() -> None:
    sink = PeriodSink()
    _pipeline(sink, lines={"s/eaf-1": {"product": "eaf_steel"}}).process(
        _messages("s", -1, 6 * 27))
    (day,) = _final_days(sink)
    kgce_per_t = 60 * 0.1229  # far below the 61 kgce/t of grade 1
    assert (day["grade"], day["gap_to_benchmark"]) == (1, pytest.approx(kgce_per_t - 61))
    table = pa.Table.from_pylist([day], schema=sink.periods[0].schema)
    assert encode_periods(table).decode().endswith(
        f"late_readings=0i,grade=1i,gap_to_benchmark={kgce_per_t - 61!r} {T0}\n")
    rows = pa.concat_tables(sink.periods).to_pylist()
    assert {r["grade"] for r in rows if r["period"] == "shift"} == {None}
    assert {r["grade"] for r in rows if r["period"] == "month"} == {1}


def test_a_line_without_a_product_has_no_grade() -> None:
    sink = PeriodSink()
    _pipeline(sink).process(_messages("s", -1, 6 * 27))
    (day,) = _final_days(sink)
    assert day["grade"] is None and day["gap_to_benchmark"] is None


def test_production_that_arrives_20_minutes_late_gives_the_on_time_final_day() -> None:
    on_time, late = PeriodSink(), PeriodSink()
    steps = _messages("s", -1, 6 * 27)
    _pipeline(on_time).process(steps)
    # Each weighbridge record arrives with the energy reading of 20 minutes later.
    energy = [m for m in steps if "/energy/" in m.topic]
    production = [m for m in steps if "/production/" in m.topic]
    pipeline = _pipeline(late)
    for k, reading in enumerate(energy):
        held = [production[k - 2]._replace(received_s=reading.received_s)] if k >= 2 else []
        pipeline.process([reading, *held])
    pipeline.process([m._replace(received_s=energy[-1].received_s + 1200)
                      for m in production[-2:]])
    (day,) = _final_days(late)
    assert {**day, "late_readings": 0} == _final_days(on_time)[0]
    assert day["late_readings"] == 6 * 24  # every production reading of the day
    late_for_ticks = pipeline.metrics.registry.get_sample_value(
        "wattline_readings_dropped_total", {"reason": "late"})
    assert late_for_ticks >= 6 * 24  # the live ticks had passed each of them


def test_an_idle_period_leaves_its_ratios_out_of_the_point() -> None:
    sink = PeriodSink()
    msgs = [m for m in _messages("s", -1, 6 * 27) if "/energy/" in m.topic]
    _pipeline(sink).process(msgs)
    table = pa.Table.from_pylist(_final_days(sink), schema=sink.periods[0].schema)
    assert "per_t" not in encode_periods(table).decode()


def test_a_restart_from_a_checkpoint_neither_loses_nor_repeats_the_final_day(
        tmp_path: Path) -> None:
    straight = PeriodSink()
    _pipeline(straight).process(_messages("s", -1, 6 * 27))
    first, second = PeriodSink(), PeriodSink()
    before = _pipeline(first, tmp_path)
    before.process(_messages("s", -1, 6 * 20))
    assert before.checkpoint()
    before.durability.close()
    after = _pipeline(second, tmp_path)
    after.process(_messages("s", 6 * 20 + 1, 6 * 27))
    assert not _final_days(first)
    # The same final day; sums to rounding, as the periods kernel sums another cut of the
    # stream into calls in another order (kernels/periods.py).
    assert _final_days(second) == [
        {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in row.items()}
        for row in _final_days(straight)]


def test_shifts_may_be_a_list_in_the_config_file_or_comma_separated_text() -> None:
    listed = settings_from_mapping({"shifts": ["22:00", "06:00", "14:00"]})
    text = settings_from_mapping({"shifts": "22:00, 06:00,14:00"})
    assert listed.shift_starts == text.shift_starts == ["22:00", "06:00", "14:00"]


@pytest.mark.parametrize(("key", "value", "says"), [
    ("plant_timezone", "Europe/Berlinn", "plant_timezone: unknown time zone 'Europe/Berlinn'"),
    ("shifts", ["6:00"], "shifts: shift start '6:00' is not a time of day HH:MM"),
    ("shifts", "08:00,08:00", "shifts: shifts lists a start time twice"),
    ("period_grace", "-1h", "period_grace"),
])
def test_a_wrong_calendar_setting_is_a_one_line_error_naming_the_key(
        key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({key: value})
    assert says in str(caught.value) and "\n" not in str(caught.value)
