"""The daemon's InfluxDB 1.x writer against a real InfluxDB 1.6.7 (``influxd``)."""

from __future__ import annotations

from collections.abc import Callable

from tests.processes import InfluxDB1


def test_influxdb1_fixture_writes_and_reads_back_points_with_their_field_types(
    make_influxdb1: Callable[..., InfluxDB1],
) -> None:
    server = make_influxdb1(databases=("fixture",))
    status, body = server.write("m,site=a f=1.5,n=2i 1000", "fixture")
    assert status == 204, body
    assert server.query("SELECT * FROM m", "fixture") == [
        {"_measurement": "m", "time": 1000, "f": 1.5, "n": 2, "site": "a"}]
    assert server.query("SHOW FIELD KEYS FROM m", "fixture") == [
        {"_measurement": "m", "fieldKey": "f", "fieldType": "float"},
        {"_measurement": "m", "fieldKey": "n", "fieldType": "integer"}]
