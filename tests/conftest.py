"""Real-server fixtures: one throwaway InfluxDB per test session, a clean bucket per test.

The server is the project's own influxd (see src/powerview/install-influxd), started
on a free loopback port in a temporary folder. If it cannot start, the tests
that need it fail with the server's own log lines; they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview import stack

pytest_plugins = [
    "tests.grafana_standin.fixtures",
    "tests.sftpgo_standin.fixtures",
    "tests.e2e.fixtures",
]

# Real device exports, copied into the repository (origin in samples/README.md).
SAMPLES = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class InfluxInstance:
    """Connection settings of the session's throwaway server."""

    server: stack.InfluxServer
    url: str
    org: str
    token: str
    meta_bucket: str

    def client(self) -> InfluxDBClient:
        return InfluxDBClient(url=self.url, token=self.token, org=self.org, timeout=30_000)


@pytest.fixture(scope="session")
def influxd_binary() -> Path:
    configured = os.environ.get("POWERVIEW_INFLUXD")
    binary = stack.find_influxd(Path(configured) if configured else None)
    if binary is None:
        pytest.fail(
            "no influxd binary: run `powerview stack install` (make test does) "
            "or set POWERVIEW_INFLUXD",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def influxdb(
    influxd_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxInstance]:
    data_dir = tmp_path_factory.mktemp("influxd")
    try:
        context = stack.throwaway_server(influxd_binary, data_dir)
        server, setup = context.__enter__()
    except stack.StackError as exc:
        pytest.fail(f"the test InfluxDB did not start: {exc}", pytrace=False)
    try:
        yield InfluxInstance(server, setup.url, setup.org, setup.token, setup.bucket)
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def influx_client(influxdb: InfluxInstance) -> Iterator[InfluxDBClient]:
    with influxdb.client() as client:
        yield client


@pytest.fixture
def bucket(influxdb: InfluxInstance, influx_client: InfluxDBClient) -> Iterator[str]:
    """A fresh, empty bucket named for this test only, deleted afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    api = influx_client.buckets_api()
    created = api.create_bucket(bucket_name=name, org=influxdb.org)
    yield name
    api.delete_bucket(created)


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the sample exports are missing: {SAMPLES}", pytrace=False)
    return SAMPLES
