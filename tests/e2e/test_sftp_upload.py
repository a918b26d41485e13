"""Uploads over real SFTP (OpenSSH's internal-sftp, paramiko and asyncssh clients)
reach InfluxDB through `powerview watch` and `powerview worker`, once each.

Every check polls with a deadline; nothing assumes how long a step takes.
Expected point counts never come from PowerView: the sample's is documented
in tests/samples/README.md, a generated file holds rows x columns values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from powerview.ledger import Ledger
from tests.e2e.sshd import (
    Company,
    PowerViewProcesses,
    SftpServer,
    count_points,
    group_members,
    wait_for,
)
from tests.factories import Export

SAMPLE = Path("acme/v002-header/02001315/T302_260909_031459_UTC.tsv")
SAMPLE_POINTS = 1_488  # tests/samples/README.md: 62 rows x 24 channels
ROWS = 20  # generated files: 20 rows x 6 channels (3 voltages + 3 channels)
WIDTH = Export().width
START = dt.datetime(2026, 1, 20)


def small_file(index: int, rows: int = ROWS) -> bytes:
    """A V003 block export whose times no other file of the test shares."""
    start = START + dt.timedelta(seconds=index * rows * 600)
    return Export(rows=rows, start=start, seed=index).text().encode()


def device_folder(client: Any, company: Company, serial: str = "02009999") -> Path:
    """`site/<serial>/` made over SFTP by the company's client; its path on the server."""
    client.mkdir(f"{company.home}/site")
    client.mkdir(f"{company.home}/site/{serial}")
    return company.folder / "site" / serial


def cut_export() -> tuple[bytes, bytes]:
    """A 145-row export and its first half, cut in the middle of a row (no END_DATA)."""
    whole = small_file(0, rows=145)
    half = whole[: len(whole) // 2]
    assert not half.endswith(b"\n")
    return whole, half


def places(device_dir: Path, name: str) -> list[str]:
    """Everywhere `name` is in a device folder: waiting, parsed/ or error/ (also as x.1.tsv)."""
    stem, suffix = os.path.splitext(name)
    same = re.compile(rf"{re.escape(stem)}(\.\d+)?{re.escape(suffix)}")
    found = ["waiting"] if (device_dir / name).exists() else []
    for outcome in ("parsed", "error"):
        if (device_dir / outcome).is_dir():
            found += sorted(
                f"{outcome}/{n}" for n in os.listdir(device_dir / outcome) if same.fullmatch(n)
            )
    return found


def all_parsed(device_dirs: Iterable[tuple[Path, str]]) -> Callable[[], bool]:
    pairs = list(device_dirs)
    return lambda: all((d / "parsed" / n).exists() for d, n in pairs)


def ingest_jobs(processes: PowerViewProcesses) -> list[Any]:
    return [job for job in processes.jobs() if job.kind == "ingest"]


def successes(processes: PowerViewProcesses, path: Path) -> list[dict[str, Any]]:
    """The run-report entries that say `path` was ingested."""
    return [f for f in processes.reports() if f["path"] == str(path) and f["status"] == "success"]


def idle(processes: PowerViewProcesses) -> Callable[[], bool]:
    """Nothing queued or running: every report is written and every job recorded."""

    def check() -> bool:
        counts = processes.counts()
        return counts["queued"] == 0 and counts["running"] == 0

    return check


def points_reach(influx: Any, company: Company, expected: int, **tags: str) -> Callable[[], bool]:
    return lambda: count_points(influx, company.name, **tags) >= expected


# -- folders -------------------------------------------------------------------


@pytest.mark.influxdb
@pytest.mark.parametrize("library", ["paramiko", "asyncssh"])
def test_mkdir_of_a_campaign_queues_its_provisioning_and_a_device_folder_nothing(
    library: str, company: Company, connect: Callable[..., Any], powerview: Callable[..., Any]
) -> None:
    pv = powerview()
    client = connect(company, library)
    client.mkdir(f"{company.home}/site-a")
    job = wait_for(
        "the provisioning job of site-a",
        lambda: next((j for j in pv.jobs() if j.key == f"provision:{company.name}/site-a"), None),
        describe=pv.logs,
    )
    assert job.kind == "provision"
    assert job.payload == {"company": company.name, "campaign": "site-a"}

    client.mkdir(f"{company.home}/site-a/02000800")
    client.mkdir(f"{company.home}/site-a/02000800/more")
    # A marker: the watcher handles events in order, so once site-b's job is
    # there, a job for the device folders would be there too.
    client.mkdir(f"{company.home}/site-b")
    wait_for(
        "the provisioning job of site-b",
        lambda: any(j.key == f"provision:{company.name}/site-b" for j in pv.jobs()),
        describe=pv.logs,
    )
    jobs = wait_for(
        "both provisioning jobs to finish",
        lambda: (js := pv.jobs()) and all(j.state in ("done", "failed") for j in js) and js,
        describe=pv.logs,
    )
    assert sorted(j.key for j in jobs) == [
        f"provision:{company.name}/site-a",
        f"provision:{company.name}/site-b",
    ]
    for job in jobs:
        assert job.state == "done", job.last_error
        assert job.result["company"] == company.name
        assert job.result["campaign"] == job.payload["campaign"]


# -- uploads -------------------------------------------------------------------


@pytest.mark.influxdb
@pytest.mark.parametrize("library", ["paramiko", "asyncssh"])
def test_an_uploaded_sample_is_queryable_parsed_and_reported(
    library: str,
    samples: Path,
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview()
    client = connect(company, library)
    client.mkdir(f"{company.home}/site")
    client.mkdir(f"{company.home}/site/02001315")
    client.put(f"{company.home}/site/02001315/{SAMPLE.name}", (samples / SAMPLE).read_bytes())

    device_dir = company.folder / "site" / "02001315"
    wait_for(
        "points in InfluxDB",
        points_reach(influx, company, SAMPLE_POINTS, campaign="site"),
        describe=pv.logs,
    )
    assert count_points(influx, company.name, campaign="site") == SAMPLE_POINTS
    # Moved once its writes are acknowledged and its ledger entry recorded: a moment
    # after its points are queryable.
    wait_for(
        "the move to parsed/",
        lambda: places(device_dir, SAMPLE.name) == [f"parsed/{SAMPLE.name}"],
        describe=pv.logs,
    )
    assert (device_dir / "parsed" / SAMPLE.name).read_bytes() == (samples / SAMPLE).read_bytes()
    assert client.listdir(f"{company.home}/site/02001315/parsed") == [SAMPLE.name]
    [entry] = wait_for(
        "the run report", lambda: successes(pv, device_dir / SAMPLE.name), describe=pv.logs
    )
    assert entry["counts"]["nb_points"] == SAMPLE_POINTS
    assert entry["company"] == company.name
    assert entry["campaign"] == "site"
    assert entry["moved_to"] == str(device_dir / "parsed" / SAMPLE.name)
    # The pool process writes the report; the worker then records the job's end.
    [job] = wait_for(
        "the job to be done",
        lambda: [j for j in ingest_jobs(pv) if j.state == "done"],
        describe=pv.logs,
    )
    assert job.result["points"] == SAMPLE_POINTS
    # The ingestion ledger: the bytes the client sent, their points counted back.
    with Ledger.in_state_dir(pv.state_dir) as ledger:
        (row,) = ledger.rows(company.name)
    sent = (samples / SAMPLE).read_bytes()
    assert (row.sha256, row.size) == (hashlib.sha256(sent).hexdigest(), len(sent))
    assert (row.file_name, row.status) == (SAMPLE.name, "verified")
    assert row.points_verified == row.points_expected == SAMPLE_POINTS


@pytest.mark.influxdb
@pytest.mark.parametrize("rename", ["posix_rename", "rename"])
@pytest.mark.parametrize("library", ["paramiko", "asyncssh"])
def test_an_upload_to_a_filepart_then_renamed_is_ingested_once(
    library: str,
    rename: str,
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview()
    client = connect(company, library)
    device = f"{company.home}/site/02009999"
    client.mkdir(f"{company.home}/site")
    client.mkdir(device)
    client.put(f"{device}/x.tsv.filepart", small_file(0, rows=145))
    getattr(client, rename)(f"{device}/x.tsv.filepart", f"{device}/x.tsv")

    device_dir = company.folder / "site" / "02009999"
    expected = 145 * WIDTH
    wait_for("x.tsv in parsed/", all_parsed([(device_dir, "x.tsv")]), describe=pv.logs)
    wait_for("its points", points_reach(influx, company, expected, campaign="site"))
    # Once the job is done, nothing else may follow: give any stray event its chance.
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    assert count_points(influx, company.name, campaign="site") == expected
    assert places(device_dir, "x.tsv") == ["parsed/x.tsv"]
    assert sorted(os.listdir(device_dir)) == ["parsed"]
    assert [(j.key, j.state) for j in pv.jobs()] == [
        (f"ingest:{device_dir / 'x.tsv'}", "done"),
        (f"provision:{company.name}/site", "done"),
    ]
    assert len(successes(pv, device_dir / "x.tsv")) == 1
    assert not [f for f in pv.reports() if f["file_name"].endswith(".filepart")]


# Run in a child process that the test kills with SIGKILL halfway through an upload.
CUT_UPLOAD = """
import sys, time, paramiko
port, user, key, known_hosts, remote, local = sys.argv[1:]
client = paramiko.SSHClient()
client.load_host_keys(known_hosts)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect("127.0.0.1", port=int(port), username=user, allow_agent=False,
               look_for_keys=False, pkey=paramiko.Ed25519Key.from_private_key_file(key))
remote_file = client.open_sftp().open(remote, "wb")
with open(local, "rb") as half:
    remote_file.write(half.read())
remote_file.flush()
print("written", flush=True)
time.sleep(600)
"""


@pytest.mark.influxdb
def test_an_upload_killed_midway_waits_its_grace_then_error_and_its_complete_reupload_is_ingested(
    sftp_server: SftpServer,
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
    tmp_path: Path,
) -> None:
    # Long enough for the worker to see the cut file before its grace ends, on a busy machine.
    pv = powerview(extra_env={"TSV_INCOMPLETE_GRACE_S": "10"})
    client = connect(company)
    device_dir = device_folder(client, company)
    whole, half = cut_export()
    (tmp_path / "half").write_bytes(half)

    uploader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CUT_UPLOAD,
            str(sftp_server.port),
            company.name,
            str(company.key_file),
            str(sftp_server.known_hosts),
            f"{company.home}/site/02009999/cut.tsv",
            str(tmp_path / "half"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert uploader.stdout is not None
        line = uploader.stdout.readline()
        assert line == b"written\n", uploader.stderr.read() if uploader.stderr else ""
        wait_for("the half file on the server", lambda: (device_dir / "cut.tsv").exists())
        assert (device_dir / "cut.tsv").read_bytes() == half
        # While the client holds the file open, the worker only postpones it
        # (claimed, then queued again), well past the settle time.
        wait_for(
            "the worker to postpone the open file twice",
            lambda: any(
                j.state == "queued" and j.started_at and j.started_at - j.enqueued_at > 1.0
                for j in ingest_jobs(pv)
            ),
            describe=pv.logs,
        )
        assert places(device_dir, "cut.tsv") == ["waiting"]
        assert pv.reports() == []
    finally:
        uploader.send_signal(signal.SIGKILL)
        uploader.wait(timeout=10)

    # Closed by sshd when its client died: it waits in place for a resumption ...
    wait_for(
        "the cut file to wait for its resumption",
        lambda: [j for j in ingest_jobs(pv) if (j.result or {}).get("waiting")],
        describe=pv.logs,
    )
    assert places(device_dir, "cut.tsv") == ["waiting"]
    assert pv.reports() == []
    # ... and, never resumed, goes to error/ once unchanged for the grace period.
    wait_for(
        "the cut file in error/",
        lambda: places(device_dir, "cut.tsv") == ["error/cut.tsv"],
        timeout_s=60,
        describe=pv.logs,
    )
    [entry] = wait_for("the report on the cut file", lambda: pv.reports(), describe=pv.logs)
    assert entry["status"] == "error"
    assert "incomplete" in entry["error"]
    assert "unchanged for 10 s (TSV_INCOMPLETE_GRACE_S)" in entry["error"]
    assert entry["moved_to"] == str(device_dir / "error" / "cut.tsv")
    assert entry["reason_file"] == str(device_dir / "error" / "cut.tsv.reason.txt")
    with client.sftp.open(f"{company.home}/site/02009999/error/cut.tsv.reason.txt") as remote:
        assert "Upload the whole file again" in remote.read().decode()  # the client reads it
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    assert count_points(influx, company.name, campaign="site") == 0

    client.put(f"{company.home}/site/02009999/cut.tsv", whole)
    expected = 145 * WIDTH
    wait_for(
        "the complete re-upload in parsed/",
        all_parsed([(device_dir, "cut.tsv")]),
        describe=pv.logs,
    )
    wait_for("its points", points_reach(influx, company, expected, campaign="site"))
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    assert count_points(influx, company.name, campaign="site") == expected
    assert places(device_dir, "cut.tsv") == ["parsed/cut.tsv", "error/cut.tsv"]
    assert (device_dir / "parsed" / "cut.tsv").read_bytes() == whole
    assert (device_dir / "error" / "cut.tsv").read_bytes() == half
    assert len(successes(pv, device_dir / "cut.tsv")) == 1


@pytest.mark.influxdb
def test_fifty_parallel_uploads_are_each_ingested_exactly_once(
    sftp_server: SftpServer,
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview()
    setup = connect(company)
    setup.mkdir(f"{company.home}/site")
    devices = [f"0200{n:04d}" for n in range(5)]
    for device in devices:
        setup.mkdir(f"{company.home}/site/{device}")
    files = {
        (devices[i % 5], f"T302_{i:03d}.tsv"): small_file(i) for i in range(50)
    }  # 10 files per device

    def upload(item: tuple[tuple[str, str], bytes]) -> None:
        (device, name), data = item
        with (
            sftp_server.sftp(company) as sftp,  # one connection per upload
            sftp.open(f"{company.home}/site/{device}/{name}", "wb") as remote,
        ):
            remote.write(data)

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(upload, files.items()))

    wanted = [(company.folder / "site" / d, n) for d, n in files]
    wait_for("50 files in parsed/", all_parsed(wanted), timeout_s=60, describe=pv.logs)
    expected = 50 * ROWS * WIDTH
    wait_for("their points", points_reach(influx, company, expected, campaign="site"))
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    assert count_points(influx, company.name, campaign="site") == expected
    for device_dir, name in wanted:
        assert places(device_dir, name) == [f"parsed/{name}"]
        assert len(successes(pv, device_dir / name)) == 1, name
    assert sum(len(os.listdir(company.folder / "site" / d / "parsed")) for d in devices) == 50
    jobs = ingest_jobs(pv)
    assert len(jobs) == 50
    assert all(j.state == "done" for j in jobs)


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    intervals = list(spans)
    moments = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda m: (m[0], m[1]),  # an end before a start at the same moment
    )
    running = highest = 0
    for _, change in moments:
        running += change
        highest = max(highest, running)
    return highest


@pytest.mark.influxdb
def test_a_burst_of_200_never_runs_more_than_the_configured_two_at_once(
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview(concurrency=2)
    client = connect(company, "asyncssh")
    client.mkdir(f"{company.home}/burst")
    devices = [f"0300{n:04d}" for n in range(10)]
    for device in devices:
        client.mkdir(f"{company.home}/burst/{device}")
    files = {
        f"{company.home}/burst/{devices[i % 10]}/T302_{i:03d}.tsv": small_file(i)
        for i in range(200)
    }

    seen_running: list[int] = []
    stop = threading.Event()

    def watch_running() -> None:
        while not stop.is_set():
            seen_running.append(pv.counts()["running"])
            stop.wait(0.005)

    watcher = threading.Thread(target=watch_running, daemon=True)
    watcher.start()
    try:
        client.put_many(files, at_once=32)
        wanted = [
            (company.folder / p.split("/")[2] / p.split("/")[3], p.split("/")[4]) for p in files
        ]
        wait_for("200 files in parsed/", all_parsed(wanted), timeout_s=90, describe=pv.logs)
        wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    finally:
        stop.set()
        watcher.join()

    assert max(seen_running) == 2, f"running counts seen: {sorted(set(seen_running))}"
    jobs = ingest_jobs(pv)
    assert len(jobs) == 200
    assert all(j.state == "done" for j in jobs)
    ingested = Counter(f["path"] for f in pv.reports() if f["status"] == "success")
    assert sorted(ingested) == sorted(str(d / n) for d, n in wanted)
    assert set(ingested.values()) == {1}
    assert max_overlap((j.started_at, j.finished_at) for j in jobs) <= 2
    expected = 200 * ROWS * WIDTH
    wait_for("the points", points_reach(influx, company, expected, campaign="burst"))
    assert count_points(influx, company.name, campaign="burst") == expected


@pytest.mark.influxdb
def test_a_worker_killed_mid_burst_and_restarted_leaves_every_file_in_one_place(
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview(concurrency=2)
    client = connect(company, "asyncssh")
    client.mkdir(f"{company.home}/crash")
    devices = [f"0400{n:04d}" for n in range(4)]
    for device in devices:
        client.mkdir(f"{company.home}/crash/{device}")
    names = [(devices[i % 4], f"T302_{i:03d}.tsv") for i in range(120)]
    client.put_many(
        {f"{company.home}/crash/{d}/{n}": small_file(i) for i, (d, n) in enumerate(names)}
    )

    def mid_burst() -> bool:
        jobs = ingest_jobs(pv)
        done = sum(j.state == "done" for j in jobs)
        return 10 <= done <= 100 and any(j.state == "running" for j in jobs)

    wait_for("the burst to be under way", mid_burst, timeout_s=60, describe=pv.logs)
    killed = pv.processes["worker"].pid
    pv.kill("worker", signal.SIGKILL)
    # Its pool processes must not carry on alone: one mid-job would finish it
    # while the restarted worker, seeing the owner dead, runs the same job again.
    wait_for(
        "the killed worker's pool processes to end",
        lambda: not group_members(killed),
        timeout_s=10,
        describe=lambda: f"left: {group_members(killed)}",
    )
    pv.start_worker()

    wanted = [(company.folder / "crash" / d, n) for d, n in names]
    wait_for("120 files in parsed/", all_parsed(wanted), timeout_s=90, describe=pv.logs)
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    for device_dir, name in wanted:
        assert places(device_dir, name) == [f"parsed/{name}"]
    for device in devices:
        assert sorted(os.listdir(company.folder / "crash" / device)) == ["parsed"]
        assert len(os.listdir(company.folder / "crash" / device / "parsed")) == 30
    jobs = ingest_jobs(pv)
    assert len(jobs) == 120
    assert all(j.state == "done" for j in jobs), [j.last_error for j in jobs if j.state != "done"]
    expected = 120 * ROWS * WIDTH
    wait_for("the points", points_reach(influx, company, expected, campaign="crash"))
    assert count_points(influx, company.name, campaign="crash") == expected


@pytest.mark.influxdb
def test_without_watcher_the_reconciliation_scan_ingests_an_unannounced_upload(
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview(watch=False, scan_interval_s=2)
    client = connect(company)
    client.mkdir(f"{company.home}/quiet")
    client.mkdir(f"{company.home}/quiet/02009999")
    client.put(f"{company.home}/quiet/02009999/late.tsv", small_file(0))

    device_dir = company.folder / "quiet" / "02009999"
    wait_for("late.tsv in parsed/", all_parsed([(device_dir, "late.tsv")]), describe=pv.logs)
    wait_for("its points", points_reach(influx, company, ROWS * WIDTH, campaign="quiet"))
    assert count_points(influx, company.name, campaign="quiet") == ROWS * WIDTH
    [job] = ingest_jobs(pv)
    assert job.source == "scan"
    assert places(device_dir, "late.tsv") == ["parsed/late.tsv"]
