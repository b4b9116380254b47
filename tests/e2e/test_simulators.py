"""Simulators: plant magnitudes, gateway registers and payloads, ground truth, publishing."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence

import orjson
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.processes import Mosquitto, free_port, wait_until
from wattline.contract.reference_data import load_reference
from wattline.contract.topics import TopicTemplate
from wattline.ingest.decode.payloads import decode_meta, decode_readings
from wattline.simulators.gateway import Faults, GatewaySpec, MeterRegister
from wattline.simulators.plant import line_model, line_totals
from wattline.simulators.publisher import (
    Summary,
    generate,
    published_series,
    readings_per_message,
    schedule,
    simulate,
)
from wattline.simulators.scenario import load_scenario, parse_scenario
from wattline.simulators.truth import (
    MeterSeries,
    TruthRow,
    expected_intensity,
    window_ms,
    write_jsonl,
)

START_MS = 1_732_406_400_000  # 2024-11-24 00:00 UTC
DAY_S = 86_400.0
SEEDS = (0, 1, 2)


def totals_over(line: str, times_s: Sequence[float], seed: int) -> list[tuple[float, ...]]:
    params = load_scenario(line_model(line).name).params
    return list(line_totals(line, params, times_s, seed=seed))


def kgce(carrier: str, amount: float) -> float:
    return amount * load_reference().carriers[carrier].kgce_per_unit


# --- plant magnitudes -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_eaf_heats_take_350_to_500_kwh_per_tonne_and_40_to_60_minutes(seed: int) -> None:
    times = [10.0 * k for k in range(int(8 * 3600 / 10) + 1)]
    rows = totals_over("eaf-1", times, seed)
    taps = [i for i in range(1, len(rows)) if rows[i][2] > rows[i - 1][2]]
    assert len(taps) >= 6
    for a, b in itertools.pairwise(taps):
        tonnes = rows[b][2] - rows[a][2]
        kwh = rows[b][0] - rows[a][0]
        assert 350.0 <= kwh / tonnes <= 500.0
        assert 40 * 60 - 10 <= times[b] - times[a] <= 60 * 60 + 10
        assert 80.0 <= tonnes <= 120.0


@pytest.mark.parametrize("seed", SEEDS)
def test_eaf_burns_natural_gas_only_while_the_power_is_on(seed: int) -> None:
    times = [10.0 * k for k in range(int(4 * 3600 / 10) + 1)]
    rows = totals_over("eaf-1", times, seed)
    aux_kwh_per_step = load_scenario("eaf").params.auxiliary_kw * 10 / 3600
    for before, after in itertools.pairwise(rows):
        if after[1] > before[1]:  # gas flowed in this step: so did the arc
            assert after[0] - before[0] > aux_kwh_per_step * (1 + 1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_potline_uses_13000_to_13500_kwh_per_tonne_of_aluminium(seed: int) -> None:
    ((kwh, tonnes),) = totals_over("potline-1", [2 * DAY_S], seed)
    assert 13_000.0 <= kwh / tonnes <= 13_500.0
    pots = load_scenario("potline").params.pots
    assert 1.8 <= tonnes / 2 / pots <= 2.6  # reference: ~2 t per pot per day


@pytest.mark.parametrize("seed", SEEDS)
def test_potline_taps_one_pot_at_a_time_on_a_rota(seed: int) -> None:
    params = load_scenario("potline").params
    spacing_s = params.tap_interval_h * 3600 / params.pots
    times = [10.0 * k for k in range(int(3 * 3600 / 10) + 1)]
    rows = totals_over("potline-1", times, seed)
    taps = [times[i] for i in range(1, len(rows)) if rows[i][1] > rows[i - 1][1]]
    gaps = {round(b - a) for a, b in itertools.pairwise(taps)}
    assert gaps <= {round(spacing_s) - 10, round(spacing_s), round(spacing_s) + 10}


@pytest.mark.parametrize("seed", SEEDS)
def test_kiln_uses_100_to_120_kgce_per_tonne_of_clinker(seed: int) -> None:
    ((kwh, coal_kg, clinker_t),) = totals_over("kiln-1", [DAY_S], seed)
    per_t = (kgce("electricity", kwh) + kgce("raw_coal", coal_kg)) / clinker_t
    assert 100.0 <= per_t <= 120.0
    assert 48.0 <= kwh / clinker_t <= 61.0  # GB 16780-2021 grades, reference data


def test_meters_use_the_reference_units_of_their_carriers() -> None:
    carriers = load_reference().carriers
    for model in ("eaf", "potline", "kiln"):
        for meter in line_model(f"{model}-1").meters:
            if meter.kind == "energy":
                assert meter.carrier in carriers
                assert meter.unit == carriers[meter.carrier].unit
            else:
                assert (meter.carrier, meter.unit) == (None, "t")


def test_true_totals_never_decrease() -> None:
    for line in ("eaf-1", "potline-1", "kiln-1"):
        rows = totals_over(line, [7.0 * k for k in range(3000)], seed=5)
        for before, after in itertools.pairwise(rows):
            assert all(b <= a for b, a in zip(before, after, strict=True))


def test_unknown_line_model_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="eaf, potline, kiln"):
        line_model("blastfurnace-1")


# --- gateway registers ------------------------------------------------------------------------


increments = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 500.0, allow_nan=False)), min_size=2, max_size=80
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.9)), min_size=2, max_size=80),
    st.integers(0, 2**32),
    st.integers(10, 24),
    st.integers(0, 3),
)
def test_counter_register_only_falls_when_it_wraps(
    shares: list[float], seed: int, bits: int, decimals: int
) -> None:
    """Between two polls the meter counts less than one wrap (shares of the rollover)."""
    spec = GatewaySpec(decimals=decimals, bits=bits)
    register = MeterRegister(spec, random.Random(seed))
    steps = [share * 2**bits / 10**decimals for share in shares]
    totals = [sum(steps[: i + 1]) for i in range(len(steps))]
    values = [register.poll(t) for t in totals]
    assert all(v is not None for v in values)
    rollover = spec.rollover
    assert rollover is not None
    unwrapped = 0.0
    for before, after, t0, t1 in zip(values, values[1:], totals, totals[1:], strict=False):
        assert 0.0 <= after < rollover  # type: ignore[operator]
        delta = after - before if after >= before else after + rollover - before  # type: ignore[operator]
        # a register counts whole quanta, so a delta is off the true one by less than one
        assert abs(delta - (t1 - t0)) < 10.0**-decimals + 1e-6 * rollover
        unwrapped += delta
    assert abs(unwrapped - (totals[-1] - totals[0])) < 10.0**-decimals + 1e-6 * rollover


@settings(max_examples=40, deadline=None)
@given(increments, st.integers(0, 2**32))
def test_delta_register_publishes_increases_that_add_up(steps: list[float], seed: int) -> None:
    register = MeterRegister(GatewaySpec(decimals=2, mode="delta"), random.Random(seed))
    totals = [sum(steps[: i + 1]) for i in range(len(steps))]
    values = [register.poll(t) for t in totals]
    assert values[0] == 0.0
    assert all(v is not None and v >= 0.0 for v in values)
    assert math.isclose(sum(values), totals[-1] - totals[0], abs_tol=0.01 + 1e-9)  # type: ignore[arg-type]


def _wrapping(model: str, bits: int) -> dict:
    """The packaged scenario of ``model`` with every counter ``bits`` wide."""
    base = load_scenario(model)
    gateways = {
        name: dataclasses.replace(spec, bits=bits) if spec.mode == "counter" else spec
        for name, spec in base.gateways.items()
    }
    return {model: dataclasses.replace(base, gateways=gateways)}


def _decoded(messages: list[tuple[str, bytes, bool]]) -> dict[str, list[tuple[int, float]]]:
    """Readings per reading topic, decoded by the collector's decoder."""
    now_ms = START_MS + int(10 * DAY_S * 1000)
    out: dict[str, list[tuple[int, float]]] = {}
    for topic, payload, retain in messages:
        if retain:
            continue
        got = decode_readings(payload, now_ms=now_ms, max_past_ms=int(20 * DAY_S * 1000))
        assert got.dropped == {}
        out.setdefault(topic, []).extend(zip(got.ts_ms.tolist(), got.value.tolist(), strict=True))
    return out


def test_published_counters_never_decrease_except_on_a_wrap() -> None:
    scenarios = {**_wrapping("eaf", 17), **_wrapping("potline", 20), **_wrapping("kiln", 16)}
    messages = list(generate(start_ms=START_MS, plant_s=4 * 3600, seed=3, scenarios=scenarios))
    metas = {t.removesuffix("/meta"): decode_meta(p) for t, p, r in messages if r}
    wraps = 0
    for topic, readings in _decoded(messages).items():
        meta = metas[topic]
        if meta.mode == "delta":
            assert all(v >= 0 for _, v in readings)
            continue
        assert meta.rollover is not None
        for (_, before), (_, after) in itertools.pairwise(readings):
            if after < before:
                wraps += 1
                assert after + meta.rollover - before < meta.rollover / 2  # a wrap, not junk
    assert wraps > 10


def test_reset_fault_drops_a_counter_to_zero_and_it_counts_on() -> None:
    messages = list(
        generate(start_ms=START_MS, plant_s=6 * 3600, seed=4, faults=Faults(reset_p=0.01))
    )
    metas = {t.removesuffix("/meta"): decode_meta(p) for t, p, r in messages if r}
    resets = 0
    for topic, readings in _decoded(messages).items():
        if metas[topic].mode != "counter" or metas[topic].rollover is not None:
            continue
        for (_, before), (_, after) in itertools.pairwise(readings):
            if after < before:
                resets += 1
                assert after == 0.0
    assert resets > 0


# --- payloads and topics ------------------------------------------------------------------------


@pytest.mark.parametrize("per_message", [1, 3])
def test_every_message_parses_with_the_collectors_decoder_and_topics(per_message: int) -> None:
    template = TopicTemplate(prefix="plant/north")
    published = {
        (m.topic, m.payload): m.readings
        for m in schedule(
            start_ms=START_MS, plant_s=3600, site="s1", topic_prefix="plant/north",
            readings_per_message=per_message,
        )
    }
    messages = list(
        generate(start_ms=START_MS, plant_s=3600, site="s1", topic_prefix="plant/north",
                 readings_per_message=per_message)
    )
    metas = 0
    for topic, payload, retain in messages:
        parsed = template.parse(topic)
        assert parsed.site == "s1"
        assert parsed.is_meta == retain
        if retain:
            meta = decode_meta(payload)
            assert meta.unit and meta.mode in ("counter", "delta")
            assert (meta.carrier is None) == (parsed.kind == "production")
            metas += 1
            continue
        got = decode_readings(payload, now_ms=START_MS + 3_600_000)
        assert got.dropped == {}
        assert list(zip(got.ts_ms.tolist(), got.value.tolist(), strict=True)) == list(
            published[(topic, payload)]
        )
    assert metas == sum(len(line_model(x).meters) for x in ("eaf-1", "potline-1", "kiln-1"))
    reading_messages = [m for m in messages if not m[2]]
    assert all(len(decode_readings(p, now_ms=START_MS + 3_600_000)) <= per_message
               for _, p, _ in reading_messages)


def test_all_three_payload_forms_and_both_timestamp_forms_are_published() -> None:
    forms: Counter[str] = Counter()
    for _topic, payload, retain in generate(start_ms=START_MS, plant_s=600, readings_per_message=3):
        if retain:
            continue
        doc = orjson.loads(payload)
        if isinstance(doc, list):
            forms["list"] += 1
            stamp = doc[0]["ts"]
        elif isinstance(doc["ts"], list):
            forms["columnar"] += 1
            stamp = doc["ts"][0]
        else:
            forms["single"] += 1
            stamp = doc["ts"]
        forms[type(stamp).__name__] += 1
    for _, payload, retain in generate(start_ms=START_MS, plant_s=60):
        if not retain and isinstance(orjson.loads(payload)["ts"], int):
            forms["single"] += 1
    assert {"list", "columnar", "single", "int", "str"} <= set(forms)


def test_meta_messages_come_first_and_are_retained() -> None:
    messages = list(generate(start_ms=START_MS, plant_s=120))
    n_meta = sum(1 for _, _, r in messages if r)
    assert n_meta == 8
    assert all(r for _, _, r in messages[:n_meta])
    assert all(t.endswith("/meta") == r for t, _, r in messages)


# --- determinism --------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_bytes() -> None:
    def run(seed: int, faults: Faults | None = None) -> list[tuple[str, bytes, bool]]:
        return list(generate(start_ms=START_MS, plant_s=7200, seed=seed,
                             readings_per_message=2, faults=faults))

    assert run(7) == run(7)
    noisy = Faults(duplicate_p=0.1, out_of_order_p=0.1, dropout_p=0.05, reset_p=0.001)
    assert run(7, noisy) == run(7, noisy)
    assert run(7) != run(8)


def test_faults_leave_the_plant_unchanged() -> None:
    clean = published_series(start_ms=START_MS, plant_s=3600, seed=2)
    shuffled = published_series(
        start_ms=START_MS, plant_s=3600, seed=2,
        faults=Faults(duplicate_p=0.2, out_of_order_p=0.3),
    )
    for a, b in zip(clean, shuffled, strict=True):
        assert sorted(set(a.readings)) == sorted(set(b.readings))
        assert len(b.readings) > len(a.readings)  # duplicates were published


@pytest.mark.parametrize("per_message", [1, 3])
def test_held_back_readings_stay_within_the_collectors_lateness(per_message: int) -> None:
    """No reading lags its line's newest by 25 s or more, so none is late (30 s by default)."""
    newest: dict[str, int] = {}
    for msg in schedule(start_ms=START_MS, plant_s=6 * 3600, seed=1,
                        readings_per_message=per_message,
                        faults=Faults(out_of_order_p=0.3, out_of_order_max_s=25.0)):
        if msg.retain:
            continue
        line = msg.topic.split("/")[2]
        before = newest.get(line)
        if before is not None:
            assert min(ts for ts, _ in msg.readings) > before - 25_000
        newest[line] = max(before or 0, *(ts for ts, _ in msg.readings))


def test_held_back_messages_reach_the_collector_out_of_order() -> None:
    newest: dict[str, int] = {}
    behind = 0
    for msg in schedule(start_ms=START_MS, plant_s=6 * 3600, seed=1,
                        faults=Faults(out_of_order_p=0.3, out_of_order_max_s=25.0)):
        if msg.retain:
            continue
        (ts, _), = msg.readings
        behind += ts < newest.get(msg.topic, ts)
        newest[msg.topic] = max(ts, newest.get(msg.topic, ts))
    assert behind > 0


def test_dropouts_publish_fewer_readings() -> None:
    clean = published_series(start_ms=START_MS, plant_s=3600, seed=2)
    lossy = published_series(start_ms=START_MS, plant_s=3600, seed=2,
                             faults=Faults(dropout_p=0.2))
    assert sum(len(s.readings) for s in lossy) < sum(len(s.readings) for s in clean)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 100_000.0), st.sampled_from([0.5, 1.0, 5.0, 10.0, 30.0, 60.0]))
def test_a_message_spans_less_than_the_collectors_lateness(speed: float, rate_s: float) -> None:
    n = readings_per_message(speed, rate_s)
    assert n >= 1
    assert (n - 1) * rate_s <= 20.0


# --- ground truth -------------------------------------------------------------------------------


def brute_force(series: list[MeterSeries], ticks: list[int], windows: dict[str, int]) -> list:
    """Every tick and window summed reading by reading, straight from the contract's text."""
    factors = load_reference().carriers
    deltas: list[tuple[int, str, float]] = []  # (ts, quantity, amount)
    for s in series:
        seen: set[int] = set()
        ordered = []
        for ts, v in sorted(s.readings, key=lambda r: r[0]):  # stable: first published wins
            if ts not in seen:
                seen.add(ts)
                ordered.append((ts, v))
        previous = None
        for ts, v in ordered:
            if s.mode == "delta":
                d = v
            elif previous is None:
                previous = v
                continue
            elif v < previous:
                d = v + s.rollover - previous if s.rollover else v
            else:
                d = v - previous
            previous = v
            if s.kind == "production":
                deltas.append((ts, "t", d))
            else:
                deltas.append((ts, "kgce", d * factors[s.carrier].kgce_per_unit))
                if s.carrier == "electricity":
                    deltas.append((ts, "kwh", d))
    rows = []
    for tick in ticks:
        for name, span in windows.items():
            sums = {"kgce": 0.0, "kwh": 0.0, "t": 0.0}
            for ts, q, d in deltas:
                if tick - span < ts <= tick:
                    sums[q] += d
            rows.append((tick, name, sums["kgce"], sums["kwh"], sums["t"]))
    return rows


register_values = st.integers(0, 100_000).map(lambda n: n / 100)  # 0.01 resolution
readings_strategy = st.lists(st.tuples(st.integers(0, 40), register_values), max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    energy=readings_strategy,
    gas=readings_strategy,
    product=readings_strategy,
    rollover=st.sampled_from([None, 1000.0]),
    product_mode=st.sampled_from(["counter", "delta"]),
)
def test_truth_matches_a_brute_force_recomputation(
    energy: list, gas: list, product: list, rollover: float | None, product_mode: str
) -> None:
    def stamp(readings: list) -> tuple:
        return tuple((START_MS + 5_000 * k, v) for k, v in readings)

    series = [
        MeterSeries("s", "l", "energy", "power", "electricity", "kWh", "counter", rollover,
                    stamp(energy)),
        MeterSeries("s", "l", "energy", "gas", "natural_gas", "m3", "counter", None, stamp(gas)),
        MeterSeries("s", "l", "production", "out", None, "t", product_mode, None, stamp(product)),
    ]
    windows = {"30s": 30_000, "1m": 60_000}
    ticks = [START_MS + 10_000 * k for k in range(-1, 22)]
    rows = expected_intensity(series, windows=list(windows), ticks_ms=ticks)
    expected = brute_force(series, ticks, windows)
    assert len(rows) == len(expected)
    for row, (tick, name, kg, kwh, t) in zip(rows, expected, strict=True):
        assert (row.time_ms, row.window) == (tick, name)
        assert math.isclose(row.energy_kgce, kg, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(row.electricity_kwh, kwh, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(row.production_t, t, rel_tol=1e-9, abs_tol=1e-6)
        if t > 0:
            assert row.kgce_per_t is not None and row.kwh_per_t is not None
            assert math.isclose(row.kgce_per_t * row.production_t, row.energy_kgce, rel_tol=1e-9)
        else:
            assert row.kgce_per_t is None and row.kwh_per_t is None


def test_truth_of_a_simulated_day_shows_each_lines_intensity() -> None:
    series = published_series(start_ms=START_MS, plant_s=DAY_S + 600, seed=0)
    rows = expected_intensity(series, windows=["1h", "24h"])
    last = {(r.line, r.window): r for r in rows}
    assert 350 <= last[("eaf-1", "24h")].kwh_per_t <= 500  # type: ignore[operator]
    assert 13_000 <= last[("potline-1", "24h")].kwh_per_t <= 13_500  # type: ignore[operator]
    assert 100 <= last[("kiln-1", "24h")].kgce_per_t <= 120  # type: ignore[operator]
    ticks = {r.time_ms for r in rows}
    assert all(t % 10_000 == 0 for t in ticks)


def test_eaf_windows_between_taps_are_idle() -> None:
    series = published_series(["eaf-1"], start_ms=START_MS, plant_s=4 * 3600, seed=0)
    rows = [r for r in expected_intensity(series, windows=["15m"])]
    idle = [r for r in rows if r.production_t == 0.0]
    assert idle and all(r.kgce_per_t is None and r.kwh_per_t is None for r in idle)
    assert any(r.kgce_per_t is not None for r in rows)


def test_duplicates_and_held_back_messages_change_no_truth() -> None:
    clean = expected_intensity(published_series(start_ms=START_MS, plant_s=7200, seed=9))
    faulty = expected_intensity(
        published_series(start_ms=START_MS, plant_s=7200, seed=9,
                         faults=Faults(duplicate_p=0.3, out_of_order_p=0.3))
    )
    assert faulty == clean


def test_truth_rows_are_written_as_json_lines() -> None:
    rows = [
        TruthRow("s", "l", "15m", START_MS, 1.5, 2.0, 0.0, None, None),
        TruthRow("s", "l", "1h", START_MS, 3.0, 2.0, 0.5, 6.0, 4.0),
    ]
    out = io.BytesIO()
    assert write_jsonl(rows, out) == 2
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0]["kgce_per_t"] is None
    assert [TruthRow(**d) for d in docs] == rows


@pytest.mark.parametrize(("text", "ms"), [("15m", 900_000), ("1h", 3_600_000), ("24h", 86_400_000)])
def test_window_names_convert_to_milliseconds(text: str, ms: int) -> None:
    assert window_ms(text) == ms


# --- scenarios ------------------------------------------------------------------------------------


def test_packaged_scenarios_describe_every_meter_of_their_model() -> None:
    for model in ("eaf", "potline", "kiln"):
        scenario = load_scenario(model)
        assert set(scenario.gateways) == {m.meter for m in scenario.model.meters}


def test_a_misspelt_scenario_key_is_named() -> None:
    doc = {"plant": dataclasses.asdict(load_scenario("kiln").params) | {"cole_kg_per_t": 1.0},
           "meters": {}}
    with pytest.raises(ValueError, match="cole_kg_per_t"):
        parse_scenario("kiln", doc)


# --- publishing to a real broker --------------------------------------------------------------


class Subscriber:
    """A QoS 1 subscriber that keeps every message it gets, in order."""

    def __init__(self, broker: Mosquitto, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-test-sub")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.e2e
def test_simulate_publishes_to_mosquitto_what_its_summary_says(
    mosquitto: Mosquitto, site: str
) -> None:
    sub = Subscriber(mosquitto, f"factory/{site}/#")
    start_ms = int(time.time() * 1000) - 180_000
    try:
        summary = simulate(mosquitto.url, lines=["eaf-1", "kiln-1"], site=site, duration_s=2.0,
                           speed=90.0, seed=11, start_ms=start_ms)
        wait_until(lambda: sub.count() >= summary.messages + summary.meta_messages, 10,
                   what="the published messages")
        time.sleep(0.2)
    finally:
        sub.close()
    assert isinstance(summary, Summary)
    assert sub.count() == summary.messages + summary.meta_messages == 6 + summary.messages
    readings = sum(
        len(decode_readings(p, now_ms=int(time.time() * 1000)))
        for t, p in sub.messages if not t.endswith("/meta")
    )
    assert readings == summary.readings
    # What arrived is, byte for byte, what generate() gives for the same arguments.
    expected = list(generate(["eaf-1", "kiln-1"], site=site, start_ms=start_ms, plant_s=180.0,
                             seed=11, readings_per_message=readings_per_message(90.0, 10.0)))
    assert sub.messages == [(t, p) for t, p, _ in expected]
    # The plant clock ran at about the speed asked for.
    assert 1.8 <= summary.wall_s <= 4.0
    assert summary.plant_span_s == pytest.approx(180.0, abs=10.0)
    assert "messages" in str(summary) and "plant time" in str(summary)


@pytest.mark.e2e
def test_simulate_without_duration_runs_until_stopped(mosquitto: Mosquitto, site: str) -> None:
    stop = threading.Event()
    result: list[Summary] = []
    thread = threading.Thread(
        target=lambda: result.append(
            simulate(mosquitto.url, lines=["potline-1"], site=site, duration_s=None,
                     speed=60.0, stop=stop)
        )
    )
    thread.start()
    time.sleep(1.5)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    (summary,) = result
    assert summary.messages > 0 and summary.meta_messages == 2
    assert 1.0 <= summary.wall_s <= 3.0


def test_simulate_says_when_no_broker_listens() -> None:
    with pytest.raises(ConnectionError, match="broker"):
        simulate(f"mqtt://127.0.0.1:{free_port()}", duration_s=1.0)


def test_a_generic_line_takes_its_meters_from_its_scenario(tmp_path) -> None:
    from wattline.simulators.scenario import load_scenario

    scenario = load_scenario("generic")
    assert [(m.meter, m.kind, m.carrier) for m in scenario.meters] == [
        ("power", "energy", "electricity"), ("coke", "energy", "coke"),
        ("alloy", "production", None)]


@pytest.mark.parametrize(("plant", "error"), [
    ("output_t_per_h = 1.0\n", "missing key.*energy"),
    ("output_t_per_h = 1.0\nproduction_meter = \"power\"\n[plant.energy.power]\n"
     "carrier = \"electricity\"\nunit = \"kWh\"\nper_t = 1.0\n", "repeat"),
    ("output_t_per_h = 1.0\n[plant.energy.power]\ncarrier = \"electricity\"\nunit = \"kWh\"\n"
     "per_t = 1.0\nwatts = 3\n", "watts"),
])
def test_a_generic_scenario_with_a_mistake_names_it(tmp_path, plant: str, error: str) -> None:
    from wattline.simulators.scenario import read_scenario

    path = tmp_path / "g.toml"
    path.write_text(f"[plant]\n{plant}\n[meters.power]\nmode = \"counter\"\n")
    with pytest.raises(ValueError, match=error):
        read_scenario("generic", path)


def test_simulate_faults_option_names_what_it_takes(tmp_path) -> None:
    from click.testing import CliRunner

    from wattline.ingest.app.cli import main

    bad = CliRunner().invoke(main, ["simulate", "--faults", "jitter=0.1", "--record",
                                    str(tmp_path / "c.jsonl")])
    assert bad.exit_code == 2 and "duplicate, out_of_order" in bad.output
    ok = CliRunner().invoke(main, ["simulate", "--lines", "kiln-1", "--duration", "2",
                                   "--speed", "60", "--faults", "duplicate=0.5,skew=2",
                                   "--record", str(tmp_path / "c.jsonl")])
    assert ok.exit_code == 0, ok.output
