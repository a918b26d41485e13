"""The suite's own fixtures: a healthy session server and a fresh, empty bucket per test."""

from __future__ import annotations

import datetime as dt

import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.conftest import InfluxInstance

WHEN = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

seen_buckets: list[str] = []


def count_records(client: InfluxDBClient, bucket: str) -> int:
    tables = client.query_api().query(f'from(bucket: "{bucket}") |> range(start: 0)')
    return sum(len(table.records) for table in tables)


def test_the_session_server_is_healthy(influxdb: InfluxInstance) -> None:
    health = influxdb.server.health()

    assert health is not None
    assert health["status"] == "pass"
    assert influxdb.url == influxdb.server.url
    assert influxdb.url.startswith("http://127.0.0.1:")
    pid = influxdb.server.running_pid()
    assert pid is not None
    assert influxdb.server.data_dir.is_dir()


def test_the_session_server_is_onboarded(
    influxdb: InfluxInstance, influx_client: InfluxDBClient
) -> None:
    assert influx_client.ping()
    orgs = influx_client.organizations_api().find_organizations(org=influxdb.org)
    assert [org.name for org in orgs] == [influxdb.org]
    assert influx_client.buckets_api().find_bucket_by_name(influxdb.meta_bucket) is not None
    assert not influxdb.server.onboarding_allowed()


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_empty_bucket(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, bucket: str, round_: int
) -> None:
    """Both rounds write the same point: the second would see the first's if shared."""
    assert bucket not in seen_buckets
    for earlier in seen_buckets:  # the earlier round's bucket was deleted afterwards
        assert influx_client.buckets_api().find_bucket_by_name(earlier) is None
    seen_buckets.append(bucket)

    found = influx_client.buckets_api().find_bucket_by_name(bucket)
    assert found is not None
    assert found.name == bucket
    assert count_records(influx_client, bucket) == 0

    point = Point("fixture_test").tag("device", "d1").field("v", 1.5).time(WHEN, WritePrecision.S)
    influx_client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=point)

    tables = influx_client.query_api().query(
        f'from(bucket: "{bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "fixture_test")'
    )
    records = [record for table in tables for record in table.records]
    assert [(r.get_field(), r.get_value(), r["device"]) for r in records] == [("v", 1.5, "d1")]
    assert records[0].get_time() == WHEN
    assert count_records(influx_client, bucket) == 1


def test_the_instance_makes_working_clients(influxdb: InfluxInstance, bucket: str) -> None:
    with influxdb.client() as client:
        point = Point("fixture_test").field("v", 2.0).time(WHEN, WritePrecision.S)
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=point)
        assert count_records(client, bucket) == 1
