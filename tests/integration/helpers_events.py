"""Helpers for the upload-event tests: the real `powerview` command with a cleared
environment, the queue file it writes, and what landed in InfluxDB.

Every process here is started by the test itself and ended by its own id (or its
own process group, for the worker's pool); none is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influxdb_client import InfluxDBClient

from powerview.queue import QUEUE_FILE, Job, JobQueue

POWERVIEW = str(Path(sys.executable).with_name("powerview"))
# A login-like PATH: what SFTPGo's command.env or systemd would give, not the test's own.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def new_company() -> str:
    return f"co_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Site:
    """One deployment in a temporary folder: a data root and a state folder."""

    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def state(self) -> Path:
        return self.home / "state"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def base_env(self, **extra: str) -> dict[str, str]:
        """What the deployment passes (SFTPGo's command.env, systemd's EnvironmentFile)."""
        return {
            "PATH": PATH,
            "HOME": str(self.home),
            "POWERVIEW_DATA_ROOT": str(self.data),
            "POWERVIEW_STATE_DIR": str(self.state),
            **extra,
        }

    def queue(self) -> JobQueue:
        return JobQueue.in_state_dir(self.state)

    def jobs(self) -> list[Job]:
        """Every job in the queue file, oldest first (none if there is no file yet)."""
        if not (self.state / QUEUE_FILE).exists():
            return []
        queue = self.queue()
        try:
            return list(reversed(queue.jobs(limit=100_000)))
        finally:
            queue.close()


def make_site(home: Path) -> Site:
    site = Site(home)
    site.data.mkdir(parents=True)
    return site


def run(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 60):
    """Run `powerview ARGS` with exactly `env`; returns (completed process, seconds)."""
    started = time.perf_counter()
    done = subprocess.run(
        [POWERVIEW, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, time.perf_counter() - started


def influx_env(site: Site, influxdb: Any, **extra: str) -> dict[str, str]:
    """The worker's settings: the session's InfluxDB, a report folder of this test."""
    settings = {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "TSV_META_BUCKET": influxdb.meta_bucket,
        "TSV_REPORT_DIR": str(site.reports),
        "POWERVIEW_SETTLE_S": "0",
        "POWERVIEW_METRICS_PORT": "0",  # no exporter: tests run side by side
    }
    return site.base_env(**{**settings, **extra})


@contextlib.contextmanager
def background(args: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[Any]:
    """A `powerview` process in its own process group, killed with its group at the end."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [POWERVIEW, *args],
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process started with start_new_session=True and its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    group_gone(process.pid)


def group_gone(pgid: int, timeout: float = 10) -> None:
    """Wait until no process of group `pgid` is left (pool children exit after their job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_COUNT_FLUX = """
from(bucket: bucket)
  |> range(start: 0, stop: 2100-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "electrical")
  |> group()
  |> count()
"""


def count_points(client: InfluxDBClient, bucket: str) -> int:
    tables = client.query_api().query(_COUNT_FLUX, params={"bucket": bucket})
    return sum(int(record.get_value()) for table in tables for record in table.records)


def delete_bucket(client: InfluxDBClient, name: str) -> None:
    api = client.buckets_api()
    found = api.find_bucket_by_name(name)
    if found is not None:
        api.delete_bucket(found)


def files_under(folder: Path) -> list[str]:
    """Every file below `folder`, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
