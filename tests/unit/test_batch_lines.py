"""Batch lines through the pipeline (decode, kernels, batch kernel, results) with a
recording sink, across a restart from a checkpoint; the config keys; the line protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from wattline.contract.errors import ConfigError
from wattline.contract.schemas import BATCH_SCHEMA
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.config_tables import parse_lines
from wattline.ingest.pipeline import Message, Pipeline
from wattline.ingest.sinks.line_protocol import encode_batches

T0 = 1_732_406_400_000
KGCE = 0.1229
GRID_T_PER_KWH = 0.5306 / 1000  # tCO2 per kWh at the default (2023 national) grid factor
TAPS = {20: 80.0, 45: 95.0}  # step: tonnes tapped


class BatchSink:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[pa.Table] = []

    def open(self) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        pass

    def write_batches(self, table: pa.Table) -> None:
        self.batches.append(table)

    def close(self) -> None:
        pass


def _messages(steps: range, heat_ids: dict[int, object] | None = None) -> list[Message]:
    """Ten-second steps of an EAF; ``heat_ids``: per step the ladle reading's ``batch``."""
    msgs = []
    for k in steps:
        ts = T0 + 10_000 * k
        tonnes = sum(t for step, t in TAPS.items() if step <= k)
        for kind, meter, value in (("energy", "incomer", 100.0 * k),
                                   ("production", "ladle", 10.0 + tonnes)):
            doc = {"ts": ts, "v": value}
            if kind == "production" and heat_ids and k in heat_ids:
                doc["batch"] = heat_ids[k]
            msgs.append(Message(f"factory/s/eaf-1/{kind}/{meter}", json.dumps(doc).encode(),
                                ts / 1000))
    return msgs


def _pipeline(sink: BatchSink, state_dir: Path | None = None) -> Pipeline:
    settings = {"max_past": "100000d", "windows": "1m,2m", "lines": {"s/eaf-1": {"batch": True}}}
    if state_dir is not None:
        settings["state_dir"] = str(state_dir)
    return Pipeline(settings_from_mapping(settings), [sink], clock=lambda: T0 / 1000 + 3600)


def _rows(sink: BatchSink) -> list[dict]:
    return pa.concat_tables([BATCH_SCHEMA.empty_table(), *sink.batches]).to_pylist()


EXPECTED = [
    {"site": "s", "line": "eaf-1", "batch": f"eaf-1-{T0 + 200_000}", "time_ms": T0 + 200_000,
     "energy_kgce": pytest.approx(2000 * KGCE, rel=1e-12), "electricity_kwh": 2000.0,
     "production_t": 80.0, "kgce_per_t": pytest.approx(25 * KGCE, rel=1e-12),
     "kwh_per_t": 25.0, "duration_s": 200.0, "co2_direct_t": 0.0,
     "co2_indirect_t": pytest.approx(2000 * GRID_T_PER_KWH, rel=1e-12),
     "co2_per_t": pytest.approx(25 * GRID_T_PER_KWH, rel=1e-12)},
    {"site": "s", "line": "eaf-1", "batch": f"eaf-1-{T0 + 450_000}", "time_ms": T0 + 450_000,
     "energy_kgce": pytest.approx(2500 * KGCE, rel=1e-12), "electricity_kwh": 2500.0,
     "production_t": 95.0, "kgce_per_t": pytest.approx(2500 * KGCE / 95, rel=1e-12),
     "kwh_per_t": pytest.approx(2500 / 95, rel=1e-12), "duration_s": 250.0,
     "co2_direct_t": 0.0, "co2_indirect_t": pytest.approx(2500 * GRID_T_PER_KWH, rel=1e-12),
     "co2_per_t": pytest.approx(2500 * GRID_T_PER_KWH / 95, rel=1e-12)},
]


def test_each_tap_of_a_batch_line_is_one_batch_with_the_energy_since_the_last() -> None:
    sink = BatchSink()
    _pipeline(sink).process(_messages(range(61)))
    assert _rows(sink) == EXPECTED


def test_a_batch_is_written_only_once_the_watermark_passes_its_close() -> None:
    sink = BatchSink()
    pipeline = _pipeline(sink)
    pipeline.process(_messages(range(23)))  # newest 220 s, watermark 190 s: before the tap
    assert _rows(sink) == []
    pipeline.process(_messages(range(23, 24)))  # watermark 200 s: the tap's tick is out
    assert _rows(sink) == EXPECTED[:1]


def test_a_line_without_batch_writes_no_batches() -> None:
    sink = BatchSink()
    Pipeline(settings_from_mapping({"max_past": "100000d", "windows": "1m,2m"}), [sink],
             clock=lambda: T0 / 1000 + 3600).process(_messages(range(61)))
    assert sink.batches == []


def test_an_open_batch_survives_a_restart_from_a_checkpoint(tmp_path: Path) -> None:
    first = BatchSink()
    pipeline = _pipeline(first, tmp_path / "state")
    pipeline.process(_messages(range(31)))  # the second heat is open at 300 s
    assert pipeline.checkpoint()
    second = BatchSink()
    _pipeline(second, tmp_path / "state").process(_messages(range(31, 61)))
    assert _rows(first) + _rows(second) == EXPECTED


def test_a_batch_takes_the_id_its_closing_reading_carries() -> None:
    sink = BatchSink()
    _pipeline(sink).process(_messages(range(61), {20: "H2291", 45: 2292}))
    assert [r["batch"] for r in _rows(sink)] == ["H2291", "2292"]
    assert [{**r, "batch": None} for r in _rows(sink)] == [{**e, "batch": None}
                                                          for e in EXPECTED]


def test_an_id_on_a_reading_that_closes_no_batch_names_no_later_batch() -> None:
    sink = BatchSink()
    _pipeline(sink).process(_messages(range(61), {19: "early", 30: "between", 45: "H2"}))
    assert [r["batch"] for r in _rows(sink)] == [f"eaf-1-{T0 + 200_000}", "H2"]


@pytest.mark.parametrize("bad", [True, "", " H1", "x" * 65, "H\n1", 1.5, None, ["H1"]])
def test_a_batch_value_that_is_no_id_keeps_the_reading_and_the_default_id(bad: object) -> None:
    sink = BatchSink()
    _pipeline(sink).process(_messages(range(61), {20: bad, 45: "H2"}))
    assert _rows(sink)[0] == EXPECTED[0]
    assert _rows(sink)[1]["batch"] == "H2"


def test_an_id_waiting_for_its_close_survives_a_restart_from_a_checkpoint(
    tmp_path: Path,
) -> None:
    first = BatchSink()
    pipeline = _pipeline(first, tmp_path / "state")
    ids = {20: "H1", 45: "Öfen-3 H2"}
    pipeline.process(_messages(range(46), ids))  # the tap at 450 s is not out yet
    assert [r["batch"] for r in _rows(first)] == ["H1"]
    assert pipeline.checkpoint()
    second = BatchSink()
    _pipeline(second, tmp_path / "state").process(_messages(range(46, 61)))
    assert [r["batch"] for r in _rows(second)] == ["Öfen-3 H2"]


def test_batch_and_idle_kw_are_checked_and_name_the_line() -> None:
    lines = parse_lines({"s/eaf-1": {"batch": True, "idle_kw": 500}})
    assert lines["s/eaf-1"].batch and lines["s/eaf-1"].idle_kw == 500.0
    assert not parse_lines({"s/kiln": {"product": "cement_clinker"}})["s/kiln"].batch
    with pytest.raises(ConfigError, match=r"lines.'s/eaf-1'.batch"):
        parse_lines({"s/eaf-1": {"batch": "yes"}})
    with pytest.raises(ConfigError, match="batch = true"):
        parse_lines({"s/eaf-1": {"idle_kw": 500}})
    with pytest.raises(ConfigError, match=r"idle_kw"):
        parse_lines({"s/eaf-1": {"batch": True, "idle_kw": -1}})


def test_a_heat_at_twice_the_median_of_the_last_ones_starts_a_spike_alert() -> None:
    alerts: list[pa.Table] = []
    sink = BatchSink()
    sink.write_alerts = alerts.append  # type: ignore[attr-defined]
    msgs = []
    energy = 0.0
    for k in range(300):  # a heat every 10 steps: 1,000 kWh for 40 t, the 25th 1,900
        ts = T0 + 10_000 * k
        energy += 200.0 if k // 10 == 24 else 100.0
        msgs += [Message("factory/s/eaf-1/energy/incomer",
                         json.dumps({"ts": ts, "v": energy}).encode(), ts / 1000),
                 Message("factory/s/eaf-1/production/ladle",
                         json.dumps({"ts": ts, "v": 40.0 * (k // 10)}).encode(), ts / 1000)]
    settings = {"max_past": "100000d", "windows": "1m,2m",
                "lines": {"s/eaf-1": {"batch": True, "alert_for": 1}}}
    Pipeline(settings_from_mapping(settings), [sink], clock=lambda: T0 / 1000 + 3600
             ).process(msgs)
    spikes = [r for t in alerts for r in t.to_pylist() if r["rule"] == "spike"]
    assert [(r["state"], r["time_ms"]) for r in spikes] == [(1, T0 + 2_500_000),
                                                           (0, T0 + 2_600_000)]
    assert spikes[0]["value"] == pytest.approx(1900 * KGCE / 40, rel=1e-12)  # 241..250
    assert "batch" in spikes[0]["message"]


def test_batches_as_line_protocol_carry_the_id_and_every_field() -> None:
    table = pa.Table.from_pylist([
        {"site": "plant a", "line": "eaf-1", "batch": 'H"2291', "time_ms": T0,
         "energy_kgce": -1.5, "electricity_kwh": 10.0, "production_t": 2.0,
         "kgce_per_t": -0.75, "kwh_per_t": 5.0, "duration_s": 61.5, "co2_direct_t": 0.25,
         "co2_indirect_t": -0.5, "co2_per_t": -0.125}], schema=BATCH_SCHEMA)
    assert encode_batches(table).decode() == (
        'energy_batch,site=plant\\ a,line=eaf-1 batch="H\\"2291",energy_kgce=-1.5,'
        f"electricity_kwh=10.0,production_t=2.0,kgce_per_t=-0.75,kwh_per_t=5.0,"
        f"duration_s=61.5,co2_direct_t=0.25,co2_indirect_t=-0.5,co2_per_t=-0.125 {T0}\n")
