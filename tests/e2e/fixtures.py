"""End-to-end fixtures (a pytest plugin, registered in tests/conftest.py so that
tests/e2e/ and tests/security/ share them): a real OpenSSH SFTP server (root,
chroot per company) and PowerView's own processes (`powerview watch`,
`powerview worker`) against the session's throwaway InfluxDB.

The server runs for the whole session; each test gets its own data root, its
own company users, its own state folder (queue), meta bucket and report
folder, so tests never see each other's files or jobs. Nothing here skips:
without root or without sshd the tests fail and say why.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from tests.conftest import InfluxInstance
from tests.e2e.sshd import (
    CLIENTS,
    Company,
    HarnessError,
    PowerViewProcesses,
    SftpServer,
)

FAILURE_LOGS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, append the logs of sshd and of the PowerView processes to the report."""
    report = yield
    if report.failed:
        for title, read in item.stash.get(FAILURE_LOGS, []):
            report.sections.append((title, read()))
    return report


def _add_failure_log(request: pytest.FixtureRequest, title: str, read: Callable[[], str]) -> None:
    request.node.stash.setdefault(FAILURE_LOGS, []).append((title, read))


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SftpServer]:
    server = SftpServer()
    try:
        server.start()
    except HarnessError as exc:
        problems = server.close()
        pytest.fail(f"the test sshd did not start: {exc}\ncleanup: {problems}", pytrace=False)
    try:
        yield server
    finally:
        problems = server.close()
        assert not problems, f"SFTP harness cleanup: {problems}"


@pytest.fixture
def data_root(sftp_server: SftpServer, request: pytest.FixtureRequest) -> Path:
    _add_failure_log(request, "sshd log", sftp_server.log_tail)
    return sftp_server.new_data_root()


@pytest.fixture
def new_company(sftp_server: SftpServer, data_root: Path) -> Iterator[Callable[[], Company]]:
    """Make company users (chrooted to `<data_root>/<company>`); removed afterwards."""
    made: list[Company] = []

    def make() -> Company:
        company = sftp_server.add_company(data_root)
        made.append(company)
        return company

    yield make
    problems = [p for company in made for p in sftp_server.remove_company(company)]
    assert not problems, f"company cleanup: {problems}"


@pytest.fixture
def company(new_company: Callable[[], Company]) -> Company:
    return new_company()


@pytest.fixture
def connect(sftp_server: SftpServer) -> Iterator[Callable[..., Any]]:
    """`connect(company, library="paramiko")` → an SFTP client closed after the test."""
    opened: list[Any] = []

    def open_client(company: Company, library: str = "paramiko") -> Any:
        client = CLIENTS[library](sftp_server, company)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        with contextlib.suppress(Exception):  # a client the test closed or broke already
            client.close()


@pytest.fixture
def powerview(
    request: pytest.FixtureRequest,
    data_root: Path,
    tmp_path: Path,
    influxdb: InfluxInstance,
) -> Iterator[Callable[..., PowerViewProcesses]]:
    """`powerview(watch=True, worker=True, **options)` → running PowerView processes.

    options: settle_s (0.3), scan_interval_s (3600: no reconciliation unless
    asked), concurrency (2). Stopped with SIGTERM (then SIGKILL) afterwards;
    their logs are shown when the test fails.
    """
    started: list[PowerViewProcesses] = []
    meta_bucket = f"meta_{secrets.token_hex(6)}"

    def start(watch: bool = True, worker: bool = True, **options: Any) -> PowerViewProcesses:
        processes = PowerViewProcesses.create(
            data_root,
            tmp_path / f"powerview{len(started)}",
            influxdb.url,
            influxdb.org,
            influxdb.token,
            meta_bucket,
            **options,
        )
        started.append(processes)
        _add_failure_log(request, "powerview logs", processes.logs)
        if watch:
            processes.start_watch()
        if worker:
            processes.start_worker()
        return processes

    yield start
    problems = [p for processes in started for p in processes.stop()]
    with influxdb.client() as client:
        api = client.buckets_api()
        names = [meta_bucket, *(p.name for p in data_root.iterdir())]
        for name in names:
            found = api.find_bucket_by_name(name)
            if found is not None:
                api.delete_bucket(found)
    assert not problems, f"stopping PowerView: {problems}"


@pytest.fixture
def influx(influxdb: InfluxInstance) -> Iterator[InfluxDBClient]:
    with influxdb.client() as client:
        yield client
