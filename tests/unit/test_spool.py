"""The hook's fallback spool on a real folder and a real queue file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerview import spool
from powerview.health import SPOOL_MAX_AGE_S, Status, check_spool
from powerview.queue import JobQueue

PAYLOAD = {"path": "/d/acme/c1/02001084/x.tsv", "company": "acme"}


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue.in_state_dir(tmp_path)
    yield queue
    queue.close()


def put(state: Path, subject: str = PAYLOAD["path"], age_s: float = 0.0) -> Path:
    path = spool.spool_event(state, "ingest", subject, PAYLOAD, "sftpgo:upload")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_an_event_is_one_complete_file_and_no_temporary_is_left(tmp_path: Path) -> None:
    old = os.umask(0o007)  # the hook's umask (deploy/on-upload.sh)
    try:
        path = put(tmp_path)
    finally:
        os.umask(old)

    assert [p.name for p in spool.spool_dir(tmp_path).iterdir()] == [path.name]
    assert path.suffix == spool.SUFFIX
    assert path.stat().st_mode & 0o777 == 0o660  # the worker's group may read and remove it
    [event] = spool.pending(tmp_path)
    assert (event.kind, event.subject, event.source, event.bad) == (
        "ingest", PAYLOAD["path"], "sftpgo:upload", False,
    )  # fmt: skip


def test_drain_queues_each_event_once_and_empties_the_spool(
    tmp_path: Path, queue: JobQueue
) -> None:
    put(tmp_path)
    put(tmp_path)  # the same upload reported twice
    put(tmp_path, "/d/acme/c1/02001084/y.tsv")

    assert spool.drain(queue) == 3
    assert spool.drain(queue) == 0
    jobs = queue.jobs()
    assert sorted(j.key for j in jobs) == [
        "ingest:/d/acme/c1/02001084/x.tsv",
        "ingest:/d/acme/c1/02001084/y.tsv",
    ]
    assert {j.source for j in jobs} == {"sftpgo:upload"}
    assert list(spool.spool_dir(tmp_path).iterdir()) == []


def test_drain_without_a_spool_folder_is_nothing(tmp_path: Path, queue: JobQueue) -> None:
    assert spool.drain(queue) == 0
    assert not spool.spool_dir(tmp_path).exists()


def test_a_temporary_file_is_left_to_its_hook_until_it_is_stale(
    tmp_path: Path, queue: JobQueue
) -> None:
    folder = spool.spool_dir(tmp_path)
    folder.mkdir()
    fresh = folder / f"{spool.TEMP_PREFIX}1-a"
    stale = folder / f"{spool.TEMP_PREFIX}2-b"
    fresh.write_text('{"kind": "ingest"')  # a hook still writing
    stale.write_text('{"kind": "ingest"')  # a hook killed mid-write, long ago
    then = time.time() - spool.STALE_TEMP_S - 60
    os.utime(stale, (then, then))

    assert spool.drain(queue) == 0
    assert sorted(p.name for p in folder.iterdir()) == [fresh.name]
    assert queue.jobs() == []


def test_health_spool_check_statuses(tmp_path: Path) -> None:
    now = time.time()
    assert check_spool(tmp_path, now).status == Status.OK

    put(tmp_path, age_s=5)
    fresh = check_spool(tmp_path, now)
    assert (fresh.status, fresh.message) == (Status.OK, "1 event(s) spooled, being drained")

    put(tmp_path, "/d/acme/c1/02001084/y.tsv", age_s=SPOOL_MAX_AGE_S + 60)
    stuck = check_spool(tmp_path, now)
    assert stuck.status == Status.CRITICAL
    assert stuck.message.startswith("2 event(s) spooled, oldest 6 min: the worker is not draining")
    assert stuck.data == {"spooled": 2.0, "spool_unreadable": 0.0}


def test_health_warns_of_a_spool_file_set_aside(tmp_path: Path, queue: JobQueue) -> None:
    folder = spool.spool_dir(tmp_path)
    folder.mkdir()
    (folder / "1-x.event").write_text("not json")
    assert spool.drain(queue) == 0

    result = check_spool(tmp_path, time.time())

    assert result.status == Status.WARNING
    assert result.message == "1 unreadable spool file(s) set aside: 1-x.event.bad"


def test_a_non_utf8_name_goes_through_the_spool_unchanged(tmp_path: Path, queue: JobQueue) -> None:
    """A name with undecodable bytes reaches Python as lone surrogates: kept exactly."""
    odd = os.fsdecode(b"/d/acme/c1/02001084/x\xff.tsv")
    spool.spool_event(tmp_path, "ingest", odd, {"path": odd}, "sftpgo:upload")

    assert spool.drain(queue) == 1

    [job] = queue.jobs()
    assert os.fsencode(job.payload["path"]) == b"/d/acme/c1/02001084/x\xff.tsv"
    assert spool.pending(tmp_path) == []


def test_an_event_that_is_not_one_is_set_aside_and_the_drain_goes_on(
    tmp_path: Path, queue: JobQueue
) -> None:
    folder = spool.spool_dir(tmp_path)
    put(tmp_path, "/d/acme/c1/02001084/y.tsv")
    (folder / "0-planted.event").write_text('{"kind": "shell", "subject": "x", '
                                            '"payload": {}, "source": "?"}')  # fmt: skip

    assert spool.drain(queue) == 1

    assert [j.key for j in queue.jobs()] == ["ingest:/d/acme/c1/02001084/y.tsv"]
    [aside] = spool.pending(tmp_path)
    assert aside.bad
    assert aside.path.name == "0-planted.event" + spool.BAD_SUFFIX
