"""Exit statuses that tell the truth, and a hook that never loses an event.

The hook runs as SFTPGo runs it (a cleared environment, a child process; see
tests/integration/test_hook_contract.py) against a queue that is corrupt,
read-only, locked past the hook's timeout, or on a full disk. Where the queue
cannot take the event, the spool must, and a worker run without any scan
(`--scan-interval 0`) must then ingest the upload: the event itself reached it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview import spool
from powerview.queue import QUEUE_FILE, JobQueue
from tests.integration.helpers_events import (
    POWERVIEW,
    Site,
    count_points,
    delete_bucket,
    files_under,
    influx_env,
    make_site,
    new_company,
    run,
)
from tests.integration.test_hook_contract import sftpgo_event

SAMPLE = ("v002-header", "02001315", "T302_260909_031459_UTC.tsv")
SAMPLE_POINTS = 1488  # 62 rows x 24 channels (tests/samples/README.md)
NO_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "site")


@pytest.fixture
def company(influx_client: InfluxDBClient) -> Iterator[str]:
    name = new_company()
    yield name
    delete_bucket(influx_client, name)


def upload(site: Site, company: str, samples: Path) -> Path:
    """The sample file where the client's upload finished, as SFTPGo leaves it."""
    campaign, device, name = SAMPLE
    folder = site.data / company / campaign / device
    folder.mkdir(parents=True)
    return Path(shutil.copy(samples / "acme" / campaign / device / name, folder / name))


def hook(
    site: Site, company: str, file: Path, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`powerview hook` for the finished upload of `file`, as SFTPGo starts it."""
    env = sftpgo_event(site, "upload", company, file, size=file.stat().st_size)
    done = subprocess.run(
        [*(prefix or []), POWERVIEW, "hook"],
        env=env,
        cwd=site.home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(f"hook: exit {done.returncode}\n{done.stderr}")
    assert "Traceback" not in done.stderr
    return done


def worker_ingests(
    site: Site, influxdb, influx_client: InfluxDBClient, company: str, file: Path
) -> None:
    """A worker run that never scans ingests `file`: only the event could bring it."""
    done, _ = run(
        ["worker", "--until-idle", "--scan-interval", "0"],
        influx_env(site, influxdb),
        cwd=site.home,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert files_under(file.parent) == [f"parsed/{file.name}"]
    assert count_points(influx_client, company) == SAMPLE_POINTS
    assert spool.pending(site.state) == []
    jobs = site.jobs()
    assert [(j.kind, j.state, j.source) for j in jobs] == [("ingest", "done", "sftpgo:upload")]


def assert_spooled(site: Site, file: Path) -> None:
    events = spool.pending(site.state)
    assert [(e.kind, e.subject, e.source, e.bad) for e in events] == [
        ("ingest", str(file), "sftpgo:upload", False)
    ]


# -- the queue is unusable: spooled, exit 0, then ingested without a scan -----------------


def test_a_corrupt_queue_spools_the_event_and_the_worker_ingests_it(
    site: Site, company: str, samples: Path, influxdb, influx_client: InfluxDBClient
) -> None:
    file = upload(site, company, samples)
    site.state.mkdir()
    (site.state / QUEUE_FILE).write_bytes(os.urandom(8192))

    done = hook(site, company, file)

    assert done.returncode == 0
    assert "spooled as" in done.stderr
    assert_spooled(site, file)
    # The operator sets the damaged queue aside (health says it is unreadable).
    (site.state / QUEUE_FILE).rename(site.state / "queue.sqlite3.damaged")
    worker_ingests(site, influxdb, influx_client, company, file)


def test_a_read_only_queue_spools_the_event_and_the_worker_ingests_it(
    site: Site, company: str, samples: Path, influxdb, influx_client: InfluxDBClient
) -> None:
    """The hook without the root's capabilities, so file modes bind it as any user."""
    file = upload(site, company, samples)
    JobQueue.in_state_dir(site.state).close()
    (site.state / QUEUE_FILE).chmod(0o444)

    done = hook(site, company, file, prefix=NO_CAPABILITIES)

    assert done.returncode == 0
    assert "spooled as" in done.stderr
    assert_spooled(site, file)
    assert site.jobs() == []
    worker_ingests(site, influxdb, influx_client, company, file)


def test_a_queue_locked_past_the_hook_timeout_spools_the_event(
    site: Site, company: str, samples: Path, influxdb, influx_client: InfluxDBClient
) -> None:
    file = upload(site, company, samples)
    JobQueue.in_state_dir(site.state).close()
    holder = sqlite3.connect(site.state / QUEUE_FILE, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # a stuck writer: nobody else may write
        done = hook(site, company, file)
    finally:
        holder.close()

    assert done.returncode == 0
    assert "database is locked" in done.stderr
    assert_spooled(site, file)
    worker_ingests(site, influxdb, influx_client, company, file)


# -- nothing can be written: exit 2 with one line, the upload stays for the scan ----------


@contextlib.contextmanager
def full_tmpfs(folder: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at `folder`, filled to the last byte."""
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012
                while True:
                    os.write(fd, b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_status_2_with_one_line_and_the_scan_finds_the_upload(
    site: Site, company: str, samples: Path, influxdb, influx_client: InfluxDBClient
) -> None:
    """The spool shares the state folder's disk (spool.py says why): nothing can be
    written, so the hook says so in one line; the upload, still in the data tree,
    is ingested by the worker's scan once there is room again."""
    file = upload(site, company, samples)
    with full_tmpfs(site.state):
        done = hook(site, company, file)
        assert spool.pending(site.state) == []

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("powerview: infrastructure error: event not spooled in ")
    assert lines[0].endswith("No space left on device")
    assert files_under(file.parent) == [file.name]  # nothing moved, nothing lost

    done, _ = run(["worker", "--until-idle"], influx_env(site, influxdb), cwd=site.home)
    assert done.returncode == 0, done.stderr
    assert files_under(file.parent) == [f"parsed/{file.name}"]
    assert count_points(influx_client, company) == SAMPLE_POINTS


def test_a_read_only_state_folder_is_status_2_with_one_line(
    site: Site, company: str, samples: Path
) -> None:
    file = upload(site, company, samples)
    site.state.mkdir(mode=0o555)

    done = hook(site, company, file, prefix=NO_CAPABILITIES)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("powerview: infrastructure error: event not spooled in ")
    assert lines[0].endswith("Permission denied")
    assert files_under(file.parent) == [file.name]


# -- the worker keeps draining; health and queue show what waits ---------------------------


def test_a_bad_spool_file_is_set_aside_and_the_others_are_queued(site: Site) -> None:
    folder = spool.spool_dir(site.state)
    good = spool.spool_event(
        site.state, "ingest", "/x/a.tsv", {"path": "/x/a.tsv"}, "sftpgo:upload"
    )
    (folder / "0-planted.event").write_text('{"kind": "drop table"}')
    queue = JobQueue.in_state_dir(site.state)
    try:
        assert spool.drain(queue) == 1
        assert [j.key for j in queue.jobs()] == ["ingest:/x/a.tsv"]
    finally:
        queue.close()
    assert not good.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["0-planted.event.bad"]
    assert [e.bad for e in spool.pending(site.state)] == [True]


def test_health_and_queue_show_a_spool_that_does_not_drain(site: Site) -> None:
    path = spool.spool_event(
        site.state, "ingest", "/x/a.tsv", {"path": "/x/a.tsv"}, "sftpgo:upload"
    )
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))
    env = site.base_env()

    health, _ = run(["health", "--json"], env, cwd=site.home)
    queue, _ = run(["queue"], env, cwd=site.home)

    checks = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
    assert checks["spool"]["status"] == "critical"  # events wait for a worker that never comes
    assert checks["spool"]["message"].startswith("1 event(s) spooled, oldest 60 min")
    assert health.returncode == 2
    assert queue.returncode == 0, queue.stderr
    assert "1 spooled" in queue.stdout
    assert "/x/a.tsv" in queue.stdout


def test_queue_shows_a_spooled_hostile_name_as_plain_escaped_text(site: Site) -> None:
    name = os.fsdecode(b"/x/[/bold]\x1b[31mred\xff.tsv")  # Rich markup, an escape, a bad byte
    spool.spool_event(site.state, "ingest", name, {"path": name}, "sftpgo:upload")

    done, _ = run(["queue"], site.base_env(), cwd=site.home)

    assert done.returncode == 0, done.stderr
    assert "/x/[/bold]\\x1b[31mred\\xff.tsv" in done.stdout
    assert "\x1b" not in done.stdout


# -- unexpected errors are 2 (3 for health), one line, never 1 ----------------------------


def test_a_command_on_a_corrupt_queue_is_status_2_with_one_line(site: Site) -> None:
    site.state.mkdir()
    (site.state / QUEUE_FILE).write_bytes(os.urandom(8192))

    for args in (["queue"], ["queue", "scan"], ["worker", "--until-idle"]):
        done, _ = run(args, site.base_env(), cwd=site.home)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1] == (
            "powerview: queue database error: file is not a database"
        ), args
        assert "Traceback" not in done.stderr

    done, _ = run(["--traceback", "queue"], site.base_env(), cwd=site.home)
    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert "sqlite3.DatabaseError" in done.stderr


def test_health_that_cannot_write_its_output_is_unknown_3(site: Site) -> None:
    with open("/dev/full", "w") as full:  # every write: No space left on device
        done = subprocess.run(
            [POWERVIEW, "health"],
            env=site.base_env(),
            cwd=site.home,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )

    assert done.returncode == 3  # UNKNOWN, the monitoring-plugin code
    assert done.stderr.strip().splitlines() == [
        "powerview: file system error: [Errno 28] No space left on device"
    ]


def test_a_reader_that_goes_away_is_status_2_never_1(site: Site) -> None:
    """`powerview queue | head -1`: rich would exit 1, which means "files rejected"."""
    queue = site.queue()
    try:
        for i in range(3000):  # a table well past a pipe's 64 KiB buffer
            queue.enqueue("ingest", f"/d/acme/c1/02001084/{i:05d}.tsv", {})
    finally:
        queue.close()
    process = subprocess.Popen(
        [POWERVIEW, "queue"],
        env=site.base_env(),
        cwd=site.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    status = process.wait(timeout=60)
    stderr = process.stderr.read()
    process.stderr.close()

    assert first.startswith("3000 queued")
    assert status == 2
    assert stderr.strip().splitlines() == ["powerview: output closed before the end (broken pipe)"]
