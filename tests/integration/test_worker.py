"""`powerview worker` against the session's real InfluxDB.

Jobs go into the queue file the way the hook and the watcher put them there;
the worker is the real command in a process of its own, with a cleared
environment. Each test has its own company (bucket), deleted afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from powerview import events
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision.tokens import ensure_bucket as ensure_company_bucket
from powerview.provision.tokens import find_tokens, read_token, revoke_tokens
from powerview.queue import QUEUE_FILE, Job
from tests.factories import Export
from tests.integration.helpers_events import (
    Site,
    background,
    count_points,
    delete_bucket,
    files_under,
    group_gone,
    influx_env,
    make_site,
    new_company,
    run,
    wait_for,
)

WIDTH = 6  # a three-phase master with 3 channels: 3 V + 3 W (tests/factories.py)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "site")


@pytest.fixture
def company(influx_client: InfluxDBClient, influxdb, site: Site):
    name = new_company()
    yield name
    revoke_tokens(influx_client, influxdb.org, name, site.state / "secrets")
    delete_bucket(influx_client, name)


def device_files(site: Site, company: str, count: int, rows: int, devices: int = 2) -> list[Path]:
    """`count` exports spread over `devices` device folders, none sharing a time."""
    paths = []
    for i in range(count):
        sn = f"0200{1000 + i % devices:04d}"
        export = Export(
            master_sn=sn,
            rows=rows,
            seed=i,
            start=dt.datetime(2026, 1, 1) + dt.timedelta(days=i),
        )
        paths.append(export.write(site.data / company / "c1" / sn / f"T302_{i:03d}.tsv"))
    return paths


def enqueue_files(site: Site, paths: list[Path], source: str = "test") -> None:
    queue = site.queue()
    try:
        for path in paths:
            decision = events.decide_path("file", str(path), site.data)
            assert decision.kind == "ingest", decision.reason
            events.enqueue(queue, decision, source=source)
    finally:
        queue.close()


def parsed(paths: list[Path], campaign: Path) -> list[str]:
    return sorted(str((p.parent / "parsed" / p.name).relative_to(campaign)) for p in paths)


def worker(site: Site, env: dict[str, str], *args: str, timeout: float = 120):
    done, seconds = run(
        ["worker", "--until-idle", "--scan-interval", "0", *args], env, site.home, timeout
    )
    print(f"worker --until-idle {' '.join(args)}: {seconds:.2f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def max_overlap(jobs: list[Job]) -> int:
    moments = []
    for job in jobs:
        assert job.started_at is not None
        assert job.finished_at is not None
        moments += [(job.started_at, 1), (job.finished_at, -1)]
    running = peak = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):  # ends before starts on ties
        running += step
        peak = max(peak, running)
    return peak


def test_jobs_of_several_files_land_in_parsed_with_their_points(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient
) -> None:
    paths = device_files(site, company, count=5, rows=30)
    enqueue_files(site, paths)
    worker(site, influx_env(site, influxdb), "--concurrency", "2")
    jobs = site.jobs()
    assert [(j.state, j.attempts) for j in jobs] == [("done", 1)] * 5
    assert [j.result["status"] for j in jobs] == ["success"] * 5, [j.result for j in jobs]
    assert [j.result["points"] for j in jobs] == [30 * WIDTH] * 5
    assert files_under(site.data / company / "c1") == parsed(paths, site.data / company / "c1")
    assert count_points(influx_client, company) == 5 * 30 * WIDTH
    assert len(list(site.reports.glob("tsv_run_*.json"))) == 5


def test_a_bad_file_goes_to_error_and_is_not_retried(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient, samples: Path
) -> None:
    good = device_files(site, company, count=1, rows=10)[0]
    device = good.parent
    garbage = device / "garbage.tsv"
    garbage.write_text("this is not\ta device export\n")
    headers_only = device / "T302_260109_133915.tsv"
    headers_only.write_bytes(
        (samples / "faulty" / "campaign" / "02001283" / headers_only.name).read_bytes()
    )
    empty = device / "empty.tsv"
    empty.write_bytes(b"")
    enqueue_files(site, [good, garbage, headers_only, empty])
    worker(site, influx_env(site, influxdb))
    jobs = {Path(j.payload["path"]).name: j for j in site.jobs()}
    for name in ("garbage.tsv", headers_only.name, "empty.tsv"):
        job = jobs[name]
        assert (job.state, job.attempts) == ("done", 1), name  # rejected, never retried
        assert job.result["status"] == "error"
        assert job.result["error"]
        assert job.result["moved_to"] == str(device / "error" / name)
    assert jobs[good.name].result["status"] == "success"
    rejected = ("empty.tsv", "garbage.tsv", headers_only.name)
    assert files_under(device) == sorted(
        [f"error/{n}" for n in rejected]
        + [f"error/{n}.reason.txt" for n in rejected]  # what the client reads
        + [f"parsed/{good.name}"]
    )
    assert count_points(influx_client, company) == 10 * WIDTH


def test_the_first_files_of_a_new_company_at_once_all_get_its_bucket(
    influxdb, influx_client: InfluxDBClient
) -> None:
    """Concurrent first ingestions (and a provisioning) all create the bucket; the losers
    of that race must not take InfluxDB's 422 "already exists" for a bad file."""
    names = [new_company() for _ in range(3)]
    errors: list[BaseException] = []

    def ensure(name: str, start: threading.Barrier, n: int) -> None:
        client = make_client(influxdb.url, influxdb.token, influxdb.org, 30, retries=0)
        try:
            start.wait()
            if n % 4 == 3:
                ensure_company_bucket(client, influxdb.org, name)
            else:
                InfluxTarget(client, influxdb.org).ensure_bucket(name)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            client.close()

    try:
        for name in names:
            start = threading.Barrier(8)
            threads = [threading.Thread(target=ensure, args=(name, start, n)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert errors == []
        for name in names:
            assert influx_client.buckets_api().find_bucket_by_name(name) is not None
    finally:
        for name in names:
            delete_bucket(influx_client, name)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_influxdb_unreachable_is_retried_with_backoff_then_succeeds(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    path = device_files(site, company, count=1, rows=20)[0]
    enqueue_files(site, [path])
    dead = influx_env(
        site,
        influxdb,
        INFLUXDB_URL=f"http://127.0.0.1:{_dead_port()}",
        POWERVIEW_INFLUXDB_RETRIES="0",  # fail each attempt at once; the queue retries
    )
    waits: dict[int, float] = {}

    def second_wait_seen() -> bool:
        job = site.jobs()[0]
        assert path.is_file(), "the file must stay where it is while InfluxDB is down"
        assert not (path.parent / "error").exists()
        assert not (path.parent / "parsed").exists()
        assert job.state in ("queued", "running"), job
        if job.state == "queued" and job.last_error:
            waits[job.attempts] = job.not_before - job.finished_at
            assert "unreachable" in job.last_error, job.last_error
        return 2 in waits

    log = tmp_path / "dead-worker.log"
    with background(["worker", "--scan-interval", "0"], dead, site.home, log) as proc:
        wait_for(second_wait_seen, 60, "two failed attempts", interval=0.02)
        proc.send_signal(signal.SIGTERM)  # a stop between attempts is immediate and clean
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    print("waits after each failed attempt:", waits)
    assert round(waits[1]) == 2
    assert round(waits[2]) == 4  # backoff doubles
    assert site.jobs()[0].state == "queued"

    worker(site, influx_env(site, influxdb))  # InfluxDB is back
    job = site.jobs()[0]
    assert (job.state, job.attempts, job.result["status"]) == ("done", 3, "success")
    assert files_under(path.parent) == [f"parsed/{path.name}"]
    assert count_points(influx_client, company) == 20 * WIDTH


def test_never_more_jobs_at_once_than_the_concurrency(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient
) -> None:
    paths = device_files(site, company, count=20, rows=40, devices=4)
    enqueue_files(site, paths)
    worker(site, influx_env(site, influxdb), "--concurrency", "2")
    jobs = site.jobs()
    assert [j.state for j in jobs] == ["done"] * 20
    assert [j.result["status"] for j in jobs] == ["success"] * 20, [j.result for j in jobs]
    peak = max_overlap(jobs)
    print(f"most jobs at once: {peak}")
    assert peak == 2  # never more, and the two slots were used
    assert count_points(influx_client, company) == 20 * 40 * WIDTH


def test_a_worker_killed_mid_burst_loses_and_doubles_nothing(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    count, rows = 30, 200
    paths = device_files(site, company, count=count, rows=rows, devices=3)
    enqueue_files(site, paths)
    env = influx_env(site, influxdb)

    def some_done() -> dict[str, int] | None:
        queue = site.queue()
        try:
            counts = queue.counts()
        finally:
            queue.close()
        return counts if counts["done"] >= 4 else None

    log = tmp_path / "killed-worker.log"
    with background(
        ["worker", "--scan-interval", "0", "--concurrency", "2"], env, site.home, log
    ) as proc:
        wait_for(some_done, 60, "a few jobs done", interval=0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the worker only, as the OOM killer would
        proc.wait(timeout=10)
        at_kill = some_done()
        group_gone(proc.pid)  # its pool processes end with it
    print("queue when the worker was killed:", at_kill)
    assert at_kill is not None
    assert at_kill["done"] < count, "the burst was over before the kill: make it longer"

    worker(site, env, "--concurrency", "2")  # the restart takes back the orphaned jobs
    jobs = site.jobs()
    assert sorted({j.state for j in jobs}) == ["done"]
    assert len(jobs) == count
    campaign = site.data / company / "c1"
    assert files_under(campaign) == parsed(paths, campaign)  # exactly one place each
    assert count_points(influx_client, company) == count * rows * WIDTH
    # Every file ingested has a JSON report saying so, those the killed run moved included.
    reported = {f["moved_to"] for f in report_entries(site) if f["status"] == "success"}
    assert reported == {str(p.parent / "parsed" / p.name) for p in paths}


def report_entries(site: Site) -> list[dict[str, Any]]:
    """The file entries of every JSON run report of the site."""
    entries = []
    for path in sorted(site.reports.glob("tsv_run_*.json")):
        entries.extend(json.loads(path.read_text())["files"])
    return entries


def test_a_file_a_killed_run_had_moved_gets_its_report_when_the_job_is_taken_back(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient
) -> None:
    """The state a worker killed with SIGKILL between a file's move and its report leaves:
    the points in InfluxDB, the file in parsed/, no report, the job running for a dead
    process. The next worker takes the job back and reports the file."""
    [path] = device_files(site, company, count=1, rows=30)
    enqueue_files(site, [path])
    dead = subprocess.Popen(["true"])
    dead.wait()
    queue = site.queue()
    try:
        job = queue.claim(f"{socket.gethostname()}:{dead.pid}", 600)  # the killed worker's claim
    finally:
        queue.close()
    assert job is not None
    # What the killed run's pool process did: points written, file moved, no report.
    target = InfluxTarget(influxdb.client(), influxdb.org)
    try:
        options = IngestOptions(data_root=site.data.resolve())
        assert ingest_file(path, target, options).status == "success"
    finally:
        target.close()
    assert report_entries(site) == []

    worker(site, influx_env(site, influxdb))

    [entry] = report_entries(site)
    assert entry["status"] == "success"
    assert entry["moved_to"] == str(path.parent / "parsed" / path.name)
    assert (entry["company"], entry["campaign"], entry["device_sn"]) == (
        company,
        "c1",
        path.parent.name,
    )
    assert entry["warnings"] == [
        "recovered after a worker crash: the run that crashed had already moved it to"
        " parsed/; its counts were not recorded"
    ]
    [done] = site.jobs()
    assert (done.state, done.attempts, done.result["status"]) == ("done", 2, "success")
    assert count_points(influx_client, company) == 30 * WIDTH


def test_a_duplicate_event_for_a_file_already_handled_writes_no_second_report(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient
) -> None:
    [path] = device_files(site, company, count=1, rows=30)
    enqueue_files(site, [path])
    env = influx_env(site, influxdb)
    worker(site, env)
    enqueue_files(site, [path], source="scan")  # a late event for the same name
    worker(site, env)
    assert [f["status"] for f in report_entries(site)] == ["success"]
    assert [j.result["status"] for j in site.jobs()] == ["gone"]


def test_the_reconciliation_scan_finds_a_file_no_event_announced(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    env = influx_env(site, influxdb, POWERVIEW_SETTLE_S="0.3")
    log = tmp_path / "scanning-worker.log"
    with background(["worker", "--scan-interval", "0.5"], env, site.home, log) as proc:
        wait_for(lambda: _beats(site), 30, "the worker's heartbeat")
        staging = tmp_path / "staging"
        [made] = device_files(Site(staging), company, count=1, rows=25)
        target = site.data / company / "c1" / made.parent.name / made.name
        target.parent.mkdir(parents=True)
        os.rename(made, target)  # appears complete, and nobody tells the queue

        def ingested() -> bool:
            # A later scan may see the file while its job runs: the job then runs once
            # more after it and finds the file gone. Wait until that is over too.
            jobs = [j for j in site.jobs() if j.kind == "ingest"]
            return (target.parent / "parsed" / target.name).is_file() and [
                j.state for j in jobs
            ] == ["done"]

        wait_for(ingested, 30, "the scan's ingestion")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    [job] = [j for j in site.jobs() if j.kind == "ingest"]
    assert job.source == "scan"
    assert job.result["status"] in ("success", "gone"), job.result
    assert files_under(target.parent) == [f"parsed/{target.name}"]
    assert count_points(influx_client, company) == 25 * WIDTH


def _beats(site: Site) -> dict:
    queue = site.queue()
    try:
        return queue.heartbeats()
    finally:
        queue.close()


def test_provisioning_creates_the_bucket_and_a_read_only_token(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient
) -> None:
    other = new_company()
    influx_client.buckets_api().create_bucket(bucket_name=other, org=influxdb.org)
    try:
        _provision_and_check(site, company, other, influxdb, influx_client)
    finally:
        delete_bucket(influx_client, other)


def _enqueue_campaign(site: Site, company: str, campaign: str) -> None:
    folder = site.data / company / campaign
    folder.mkdir(parents=True, exist_ok=True)
    queue = site.queue()
    try:
        decision = events.decide_path("dir", str(folder), site.data, company)
        assert decision.kind == "provision", decision.reason
        events.enqueue(queue, decision, source="test")
    finally:
        queue.close()


def _provision_and_check(
    site: Site, company: str, other: str, influxdb, admin: InfluxDBClient
) -> None:
    env = influx_env(site, influxdb)
    _enqueue_campaign(site, company, "c1")
    worker(site, env)
    [job] = site.jobs()
    assert job.state == "done"
    assert job.result["company"] == company
    assert job.result["campaign"] == "c1"
    assert job.result["token_created"] is True
    assert admin.buckets_api().find_bucket_by_name(company) is not None

    secrets = site.state / "secrets"
    token = read_token(secrets, company)
    assert token
    assert stat.S_IMODE((secrets / f"{company}.token").stat().st_mode) == 0o600
    admin.write_api(write_options=SYNCHRONOUS).write(
        bucket=company, record="electrical,campaign=c1 v=1 1767225600", write_precision="s"
    )
    flux = "from(bucket: b) |> range(start: 0, stop: 2100-01-01T00:00:00Z) |> count()"
    with InfluxDBClient(url=influxdb.url, token=token, org=influxdb.org) as reader:
        tables = reader.query_api().query(flux, params={"b": company})
        assert [r.get_value() for t in tables for r in t.records] == [1]  # reads its bucket
        with pytest.raises(ApiException) as other_read:
            reader.query_api().query(flux, params={"b": other})
        assert other_read.value.status == 404  # another company's bucket does not exist for it
        with pytest.raises(ApiException) as write:
            reader.write_api(write_options=SYNCHRONOUS).write(
                bucket=company, record="electrical,campaign=c1 v=2 1767225601"
            )
        assert write.value.status == 403, write.value.status  # cannot write
    assert count_points(admin, company) == 1

    # A second campaign of the same company keeps the token it has.
    _enqueue_campaign(site, company, "c2")
    worker(site, env)
    second = next(j for j in site.jobs() if j.payload["campaign"] == "c2")
    assert second.state == "done"
    assert second.result["token_created"] is False
    assert read_token(secrets, company) == token
    assert len(find_tokens(admin, influxdb.org, company)) == 1


def _finished_days_ago(site: Site, job_id: int, days: float) -> None:
    """Age a finished job: the clock is moved back in its row, not waited for."""
    with sqlite3.connect(site.state / QUEUE_FILE) as db:
        db.execute(
            "UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - days * 86_400, job_id)
        )


def _modified_days_ago(path: Path, days: float) -> None:
    moment = time.time() - days * 86_400
    os.utime(path, (moment, moment), follow_symlinks=False)


def test_the_worker_prunes_old_done_jobs_and_old_reports_only(
    site: Site, company: str, influxdb, tmp_path: Path
) -> None:
    paths = device_files(site, company, 2, rows=5)
    enqueue_files(site, paths)
    env = influx_env(
        site,
        influxdb,
        POWERVIEW_QUEUE_RETENTION_DAYS="7",
        POWERVIEW_REPORT_RETENTION_DAYS="90",
    )
    worker(site, env)
    old_job, recent_job = [job.id for job in site.jobs()]
    queue = site.queue()
    try:  # a job that failed long ago: a problem still to look at, never pruned
        queue.enqueue("provision", f"{company}/gone", {"company": company, "campaign": "gone"})
        failed = queue.claim("test", 60)
        assert failed is not None
        queue.retry_or_fail(failed, "refused", None)
    finally:
        queue.close()
    _finished_days_ago(site, old_job, 8)
    _finished_days_ago(site, failed.id, 30)
    old_report, recent_report = sorted(site.reports.glob("tsv_run_*.json"))
    _modified_days_ago(old_report, 91)
    # Old files the worker did not write, or that a report's name only points to, stay.
    notes = site.reports / "notes.json"
    notes.write_text("{}")
    _modified_days_ago(notes, 400)
    elsewhere = tmp_path / "tsv_run_20250101T000000Z_abcdef123456.json"
    elsewhere.write_text("{}")
    _modified_days_ago(elsewhere, 400)
    link = site.reports / "tsv_run_20250101T000000Z_0123456789ab.json"
    link.symlink_to(elsewhere)
    _modified_days_ago(link, 400)

    worker(site, env)

    assert {(job.id, job.state) for job in site.jobs()} == {
        (recent_job, "done"),
        (failed.id, "failed"),
    }
    assert sorted(p.name for p in site.reports.iterdir()) == sorted(
        [recent_report.name, notes.name, link.name]
    )
    assert link.is_symlink()
    assert elsewhere.read_text() == "{}"


def test_retention_zero_keeps_done_jobs_and_reports_forever(
    site: Site, company: str, influxdb
) -> None:
    enqueue_files(site, device_files(site, company, 1, rows=5))
    env = influx_env(
        site, influxdb, POWERVIEW_QUEUE_RETENTION_DAYS="0", POWERVIEW_REPORT_RETENTION_DAYS="0"
    )
    worker(site, env)
    (job,) = site.jobs()
    (report,) = site.reports.glob("tsv_run_*.json")
    _finished_days_ago(site, job.id, 3_650)
    _modified_days_ago(report, 3_650)

    worker(site, env)

    assert [j.id for j in site.jobs()] == [job.id]
    assert report.is_file()
