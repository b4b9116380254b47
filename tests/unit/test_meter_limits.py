"""The meter registry's bounds (max_lines, max_meters) and meter descriptions (direction,
max_rate, rollover), on their own and through the pipeline's decoder and metrics."""

from __future__ import annotations

import json
import logging

import pytest

from wattline.contract.errors import ConfigError
from wattline.contract.reference_data import load_reference
from wattline.ingest.config import settings_from_mapping
from wattline.ingest.config_tables import parse_meters
from wattline.ingest.decode.meta import MeterMeta
from wattline.ingest.decode.registry import (
    REFUSED,
    REFUSED_REMEMBERED,
    MeterDescription,
    MeterDescriptionError,
    MeterRegistry,
    state_nbytes,
)
from wattline.ingest.pipeline import Message, Pipeline
from wattline.kernels import KernelConfig, new_state

T0 = 1_732_406_400_000


def registry(max_lines: int = 3, max_meters: int = 5) -> tuple[MeterRegistry, list]:
    reg = MeterRegistry(load_reference(), max_lines=max_lines, max_meters=max_meters)
    refused: list = []
    reg.on_refused = lambda meter, limit: refused.append((meter, limit))
    return reg, refused


# -- the registry's bounds ------------------------------------------------------------------


def test_a_new_line_beyond_max_lines_is_refused_and_reported_once() -> None:
    reg, refused = registry(max_lines=2)
    assert reg.meter_index("s", "a", "energy", "m") == 0
    assert reg.meter_index("s", "b", "energy", "m") == 1
    assert reg.meter_index("s", "c", "energy", "m") == REFUSED
    assert reg.meter_index("s", "c", "energy", "m") == REFUSED
    assert refused == [(("s", "c", "energy", "m"), "max_lines")]
    assert reg.meter_index("s", "a", "production", "p") == 2  # known lines still grow
    assert (reg.n_lines, reg.n_meters) == (2, 3)
    assert reg.line_names == ["a", "b"]


def test_a_new_meter_beyond_max_meters_is_refused_even_on_a_known_line() -> None:
    reg, refused = registry(max_lines=10, max_meters=2)
    reg.meter_index("s", "a", "energy", "m1")
    reg.meter_index("s", "a", "energy", "m2")
    assert reg.meter_index("s", "a", "energy", "m3") == REFUSED
    assert reg.meter_index("s", "a", "energy", "m1") == 0  # known meters keep their number
    assert refused == [(("s", "a", "energy", "m3"), "max_meters")]
    assert reg.table().n_meters == 2


def test_refused_meters_are_remembered_within_a_bound() -> None:
    reg, refused = registry(max_lines=1)
    reg.meter_index("s", "a", "energy", "m")
    for k in range(REFUSED_REMEMBERED + 10):
        reg.meter_index("s", f"flood-{k}", "energy", "m")
    reg.meter_index("s", "flood-0", "energy", "m")  # forgotten when the memory filled: again
    assert len(refused) == REFUSED_REMEMBERED + 11
    assert len(reg._refused) <= REFUSED_REMEMBERED


def test_meta_of_a_meter_beyond_the_limits_is_not_kept() -> None:
    reg, refused = registry(max_lines=1, max_meters=2)
    reg.meter_index("s", "a", "energy", "m")
    assert not reg.apply_meta("s", "b", "energy", "m", MeterMeta(mode="delta"))
    assert refused == [(("s", "b", "energy", "m"), "max_lines")]
    # Meta of not yet seen meters of a known line: at most max_meters of them are kept.
    assert reg.apply_meta("s", "a", "energy", "m2", MeterMeta(mode="delta"))
    assert reg.apply_meta("s", "a", "energy", "m3", MeterMeta(mode="delta"))
    assert not reg.apply_meta("s", "a", "energy", "m4", MeterMeta(mode="delta"))
    assert reg.apply_meta("s", "a", "energy", "m", MeterMeta(mode="delta"))  # a known meter
    assert len(reg.snapshot()["meta"]) == 3  # type: ignore[arg-type]


def test_a_checkpoint_is_restored_whole_whatever_the_limits() -> None:
    big, _ = registry(max_lines=10, max_meters=10)
    for k in range(6):
        big.meter_index("s", f"l{k}", "energy", "m")
    big.apply_meta("s", "l1", "energy", "m", MeterMeta(direction="export", max_rate=50.0))
    small, refused = registry(max_lines=2, max_meters=2)
    small.restore(big.snapshot())
    assert small.n_meters == 6 and refused == []
    assert small.description("s", "l1", "energy", "m").direction == "export"
    assert small.description("s", "l1", "energy", "m").max_rate == 50.0
    assert small.meter_index("s", "new", "energy", "m") == REFUSED


def test_a_checkpoint_from_before_direction_and_max_rate_still_restores() -> None:
    reg, _ = registry()
    reg.restore({"meters": ["s/a/energy/m"], "meta": {"s/a/energy/m": {
        "carrier": "electricity", "unit": "kWh", "mode": "counter", "rollover": 0.0}}})
    assert reg.description("s", "a", "energy", "m") == MeterDescription.default("energy")


def test_the_registry_size_grows_with_its_meters_and_not_with_refusals() -> None:
    reg, _ = registry(max_lines=100, max_meters=100)
    empty = reg.nbytes()
    for k in range(100):
        reg.meter_index("s", f"line-{k}", "energy", "incomer")
    full = reg.nbytes()
    per_meter = (full - empty) / 100
    assert 100 < per_meter < 2000
    for k in range(1000):
        reg.meter_index("s", f"flood-{k}", "energy", "incomer")
    assert reg.nbytes() - full < 1000 * per_meter  # a refused name costs less than a meter
    assert reg.n_meters == 100


def test_state_nbytes_counts_every_kernel_array() -> None:
    state = new_state(KernelConfig(), n_lines=3, n_meters=7)
    assert state_nbytes(state) == sum(a.nbytes for a in vars(state).values())
    assert state_nbytes(state) > 3 * KernelConfig().ring_ticks * 3 * 8


# -- descriptions ---------------------------------------------------------------------------


def test_direction_and_max_rate_come_from_meta_and_the_file_wins() -> None:
    configured = parse_meters({"s/a/energy/m": {"max_rate": 100, "direction": "import"}})
    reg = MeterRegistry(load_reference(), configured)
    reg.apply_meta("s", "a", "energy", "m", MeterMeta(direction="export", max_rate=5.0))
    reg.apply_meta("s", "a", "energy", "other", MeterMeta(direction="export", max_rate=5.0))
    reg.meter_index("s", "a", "energy", "m")
    reg.meter_index("s", "a", "energy", "other")
    reg.meter_index("s", "a", "energy", "plain")
    assert reg.description("s", "a", "energy", "m").max_rate == 100.0
    assert reg.description("s", "a", "energy", "m").direction == "import"
    assert reg.description("s", "a", "energy", "other").direction == "export"
    assert reg.description("s", "a", "energy", "plain").direction == "import"
    assert reg.max_rates_per_hour().tolist() == [100.0, 5.0, 0.0]
    assert reg.table().max_rate.tolist() == [100.0, 5.0, 0.0]  # what the kernels judge by


def test_a_production_meter_cannot_export() -> None:
    reg, _ = registry()
    with pytest.raises(MeterDescriptionError, match="export"):
        reg.apply_meta("s", "a", "production", "p", MeterMeta(direction="export"))
    reg.apply_meta("s", "a", "production", "p", MeterMeta(direction="import"))
    with pytest.raises(ConfigError, match="production"):
        parse_meters({"s/a/production/p": {"direction": "export"}})


@pytest.mark.parametrize(("spec", "key"), [
    ({"rollover": 1e300}, "rollover"), ({"rollover": float("inf")}, "rollover"),
    ({"rollover": float("nan")}, "rollover"), ({"rollover": 2.0**65}, "rollover"),
    ({"rollover": 0}, "rollover"), ({"rollover": True}, "rollover"),
    ({"max_rate": 0}, "max_rate"), ({"max_rate": -1.0}, "max_rate"),
    ({"max_rate": float("inf")}, "max_rate"), ({"max_rate": "fast"}, "max_rate"),
    ({"direction": "outbound"}, "direction"), ({"direction": 1}, "direction"),
])
def test_a_bad_meter_table_value_names_the_meter_and_the_key(spec: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_meters({"plant/eaf-1/energy/incomer": spec})
    assert info.value.key == f"meters.'plant/eaf-1/energy/incomer'.{key}"
    assert "plant/eaf-1/energy/incomer" in str(info.value)


def test_a_unit_factor_that_is_not_positive_and_finite_is_refused() -> None:
    reference = load_reference()
    from wattline.ingest.decode import meter_factors as module

    broken = dict(module._UNIT_FACTORS)
    broken["kWh"] = {**broken["kWh"], "zWh": 0.0, "nanWh": float("nan")}
    original = module._UNIT_FACTORS
    module._UNIT_FACTORS = broken
    try:
        for unit in ("zWh", "nanWh"):
            desc = MeterDescription("electricity", unit, "counter", 0.0)
            with pytest.raises(MeterDescriptionError, match="positive and finite"):
                module.conversion_factors("energy", desc, reference)
    finally:
        module._UNIT_FACTORS = original


# -- through the pipeline -------------------------------------------------------------------


def _flood_messages(lines: int, readings: int = 3) -> list[Message]:
    msgs = []
    for k in range(readings):
        for n in range(lines):
            ts = T0 + 10_000 * k
            for kind, meter in (("energy", "incomer"), ("production", "scale")):
                msgs.append(Message(f"factory/s/line-{n}/{kind}/{meter}",
                                    json.dumps({"ts": ts, "v": 10.0 * k}).encode(), ts / 1000))
    return msgs


def test_readings_of_refused_meters_are_dropped_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "max_lines": 3,
                                               "max_meters": 5}), [],
                        clock=lambda: T0 / 1000 + 60)
    with caplog.at_level(logging.WARNING):
        pipeline.process(_flood_messages(10))
        pipeline.process(_flood_messages(10))
    sample = pipeline.metrics.registry.get_sample_value
    assert pipeline.registry.n_lines == 3 and pipeline.registry.n_meters == 5
    # Lines 0 and 1 take 4 meters, line 2's energy meter the fifth: its production meter
    # meets max_meters, the 7 lines after it max_lines. Each refused meter counts once.
    assert sample("wattline_meters_refused_total", {"limit": "max_meters"}) == 1
    assert sample("wattline_meters_refused_total", {"limit": "max_lines"}) == 14
    assert sample("wattline_readings_dropped_total", {"reason": "meter_limit"}) == 15 * 3 * 2
    assert sample("wattline_readings_received_total") == 2 * 10 * 2 * 3
    refusals = [r for r in caplog.records if "refused new meter" in r.getMessage()]
    assert len(refusals) == 2  # once a minute per limit
    assert any("--max-lines" in r.getMessage() for r in refusals)
    assert any("--max-meters" in r.getMessage() for r in refusals)


def test_no_metric_series_is_made_for_a_refused_line() -> None:
    pipeline = Pipeline(settings_from_mapping({"max_past": "100000d", "max_lines": 2,
                                               "windows": "1m,2m"}), [],
                        clock=lambda: T0 / 1000 + 600)
    pipeline.process(_flood_messages(50, readings=20))
    lines = {s.labels["line"] for family in pipeline.metrics.registry.collect()
             for s in family.samples if "line" in s.labels}
    assert lines == {"line-0", "line-1"}
    assert pipeline.state.n_lines <= 2 * 2 and pipeline.state.n_meters <= 2 * 4


def test_an_export_meter_has_the_negative_factors_of_its_import_twin() -> None:
    configured = parse_meters({"s/bof/energy/gas-out": {"carrier": "natural_gas",
                                                        "direction": "export"}})
    reg = MeterRegistry(load_reference(), configured)
    reg.apply_meta("s", "bof", "energy", "power-out", MeterMeta(direction="export"))
    reg.apply_meta("s", "bof", "energy", "gas-in", MeterMeta(carrier="natural_gas"))
    for meter in ("gas-out", "power-out", "gas-in", "power-in"):
        reg.meter_index("s", "bof", "energy", meter)
    reg.meter_index("s", "bof", "production", "steel")
    table = reg.table()
    gas, power = load_reference().carriers["natural_gas"], load_reference().carriers["electricity"]
    assert table.kgce_per_unit.tolist() == [-gas.kgce_per_unit, -power.kgce_per_unit,
                                            gas.kgce_per_unit, power.kgce_per_unit, 0.0]
    assert table.kwh_per_unit.tolist() == [0.0, -1.0, 0.0, 1.0, 0.0]
    assert table.t_per_unit.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
