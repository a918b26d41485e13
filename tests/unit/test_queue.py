"""The job queue on a real SQLite file: dedupe, claims, leases, retries, recovery, concurrency.

No mocks: every test opens the queue file in tmp_path, as the hook, the
watcher and the worker do. Where a test needs time to pass (a lease to
expire, a backoff to end), it moves the stored times instead of sleeping.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from powerview.queue import QUEUE_FILE, Job, JobQueue, job_key, this_owner
from powerview.worker import Worker, WorkerOptions, backoff_s

HOST = socket.gethostname()


@pytest.fixture
def queue(tmp_path: Path):
    q = JobQueue.in_state_dir(tmp_path / "state")
    yield q
    q.close()


def payload(n: int | str) -> dict[str, str]:
    return {"path": f"/data/acme/c1/sn/{n}.tsv"}


def add(queue: JobQueue, n: int | str, **kwargs) -> bool:
    return queue.enqueue("ingest", f"/data/acme/c1/sn/{n}.tsv", payload(n), **kwargs)


def get(queue: JobQueue, n: int | str) -> Job:
    job = queue.get("ingest", f"/data/acme/c1/sn/{n}.tsv")
    assert job is not None
    return job


def make_due(queue: JobQueue) -> None:
    """Let every waiting job's time come (instead of sleeping through a backoff)."""
    db = sqlite3.connect(queue.path)
    with db:
        db.execute("UPDATE jobs SET not_before = 0 WHERE state = 'queued'")
    db.close()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- producers -----------------------------------------------------------------------


def test_the_queue_lives_in_the_state_folder(tmp_path: Path) -> None:
    q = JobQueue.in_state_dir(tmp_path / "new" / "state")
    q.close()
    assert (tmp_path / "new" / "state" / QUEUE_FILE).is_file()


@pytest.mark.parametrize(("umask", "mode"), [(0o007, 0o660), (0o022, 0o644), (0o077, 0o600)])
def test_the_queue_file_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """The hook (SFTPGo's user) and the worker (powerview) share it through a group."""
    previous = os.umask(umask)
    try:
        q = JobQueue.in_state_dir(tmp_path)
        add(q, 1)
        q.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / QUEUE_FILE).stat().st_mode) == mode


def test_enqueue_creates_one_waiting_job(queue: JobQueue) -> None:
    before = time.time()
    assert add(queue, 1, source="sftpgo:upload") is True
    job = get(queue, 1)
    assert job.kind == "ingest"
    assert job.key == job_key("ingest", "/data/acme/c1/sn/1.tsv") == "ingest:/data/acme/c1/sn/1.tsv"
    assert job.payload == payload(1)
    assert job.state == "queued"
    assert job.attempts == 0
    assert not job.rerun
    assert job.source == "sftpgo:upload"
    assert before <= job.enqueued_at <= job.not_before <= time.time()
    assert job.owner is None
    assert job.started_at is None
    assert job.result is None


def test_the_same_file_queued_twice_is_one_job(queue: JobQueue) -> None:
    assert add(queue, 1) is True
    assert add(queue, 1) is False
    assert add(queue, 1, source="watch") is False
    assert queue.counts()["queued"] == 1
    assert len(queue.jobs()) == 1


def test_a_waiting_job_is_pushed_back_to_the_later_delay(queue: JobQueue) -> None:
    add(queue, 1)
    first = get(queue, 1).not_before
    add(queue, 1, delay_s=30)
    pushed = get(queue, 1).not_before
    assert pushed >= first + 29
    add(queue, 1, delay_s=5)  # an earlier time never pulls it forward
    assert get(queue, 1).not_before == pushed
    assert queue.claim("w", 60) is None  # not due yet


def test_a_newer_event_updates_the_payload_of_a_waiting_job(queue: JobQueue) -> None:
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1", "n": 1})
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1", "n": 2})
    job = queue.get("provision", "acme/c1")
    assert job is not None
    assert job.payload["n"] == 2


def test_kinds_do_not_share_keys(queue: JobQueue) -> None:
    assert queue.enqueue("ingest", "x", {}) is True
    assert queue.enqueue("provision", "x", {}) is True
    assert queue.counts()["queued"] == 2


# -- claims and leases -------------------------------------------------------------------


def test_claim_takes_the_oldest_due_job_and_leases_it(queue: JobQueue) -> None:
    add(queue, "later", delay_s=60)
    for n in (1, 2, 3):
        add(queue, n)
    before = time.time()
    job = queue.claim("host:1", lease_s=120)
    assert job is not None
    assert job.payload == payload(1)
    assert job.state == "running"
    assert job.owner == "host:1"
    assert job.attempts == 1
    assert before <= job.started_at <= time.time()
    assert job.lease_until == pytest.approx(job.started_at + 120)
    claimed = [queue.claim("host:1", 120) for _ in range(3)]
    assert [j.payload["path"].rsplit("/", 1)[1] for j in claimed[:2]] == ["2.tsv", "3.tsv"]
    assert claimed[2] is None  # "later" is not due
    assert queue.counts() == {"queued": 1, "running": 3, "done": 0, "failed": 0}


def test_claim_order_follows_not_before_then_insertion(queue: JobQueue) -> None:
    for n in ("a", "b", "c", "d"):
        add(queue, n)
    now = time.time()
    db = sqlite3.connect(queue.path)
    with db:  # a became due last, b first; c and d at the same time (insertion order)
        for n, ago in (("a", 1), ("b", 3), ("c", 2), ("d", 2)):
            db.execute(
                "UPDATE jobs SET not_before = ? WHERE key = ?",
                (now - ago, job_key("ingest", f"/data/acme/c1/sn/{n}.tsv")),
            )
    db.close()
    order = [queue.claim("w", 60).payload["path"][-5] for _ in range(4)]
    assert order == ["b", "c", "d", "a"]


def test_renew_extends_only_the_owners_leases(queue: JobQueue) -> None:
    add(queue, 1)
    add(queue, 2)
    mine = queue.claim("me", lease_s=10)
    theirs = queue.claim("them", lease_s=10)
    queue.renew("me", lease_s=500)
    assert get(queue, 1).lease_until == pytest.approx(time.time() + 500, abs=5)
    assert get(queue, 2).lease_until == pytest.approx(theirs.lease_until)
    assert mine is not None


def test_finish_marks_done_with_the_result(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    queue.finish(job, {"outcome": "done", "points": 42})
    done = get(queue, 1)
    assert done.state == "done"
    assert done.result == {"outcome": "done", "points": 42}
    assert done.finished_at >= done.started_at
    assert done.owner is None
    assert done.lease_until is None
    assert done.last_error is None
    assert queue.claim("w", 60) is None


def test_an_event_while_running_makes_the_job_run_again(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    assert add(queue, 1) is True  # the file was uploaded again meanwhile
    assert get(queue, 1).rerun is True
    assert get(queue, 1).state == "running"
    queue.finish(job, {"outcome": "done"}, rerun_delay_s=30)
    again = get(queue, 1)
    assert again.state == "queued"
    assert again.attempts == 0
    assert not again.rerun
    assert again.not_before == pytest.approx(time.time() + 30, abs=5)
    make_due(queue)
    second = queue.claim("w", 60)
    assert second is not None
    assert second.id == job.id
    assert second.attempts == 1
    queue.finish(second, {"outcome": "done"})
    assert get(queue, 1).state == "done"


def test_done_and_failed_jobs_are_queued_again_by_a_new_event(queue: JobQueue) -> None:
    add(queue, 1)
    add(queue, 2)
    one, two = queue.claim("w", 60), queue.claim("w", 60)
    queue.finish(one, {"outcome": "done"})
    queue.retry_or_fail(two, "broken", None)
    for n in (1, 2):
        assert add(queue, n, source="scan") is True
        job = get(queue, n)
        assert job.state == "queued"
        assert job.attempts == 0
        assert job.source == "scan"
        assert job.result is None
        assert job.last_error is None
        assert job.finished_at is None
    assert queue.counts()["queued"] == 2


def test_requeue_done_false_leaves_finished_jobs_alone(queue: JobQueue) -> None:
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1"})
    job = queue.claim("w", 60)
    queue.finish(job, {"outcome": "done"})
    again = queue.enqueue("provision", "acme/c1", {}, requeue_done=False)
    assert again is False
    assert queue.get("provision", "acme/c1").state == "done"


def test_requeue_done_false_still_gives_a_failed_job_another_try(queue: JobQueue) -> None:
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1"})
    job = queue.claim("w", 60)
    assert queue.retry_or_fail(job, "Grafana down", None) == "failed"
    assert queue.enqueue("provision", "acme/c1", {}, requeue_done=False) is True
    assert queue.get("provision", "acme/c1").state == "queued"


def test_ready_within_ignores_jobs_in_a_long_backoff(queue: JobQueue) -> None:
    add(queue, 1)
    add(queue, 2, delay_s=3600)
    assert queue.ready_within(10) == 1
    job = queue.claim("w", 60)
    assert queue.ready_within(10) == 1  # running counts
    queue.retry_or_fail(job, "down", 600)
    assert queue.ready_within(10) == 0


# -- retries, backoff, failure ------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 300) for n in (0, 1, 2, 3, 4, 8, 9, 20)] == [
        2, 2, 4, 8, 16, 256, 300, 300,
    ]  # fmt: skip
    assert backoff_s(5, 10) == 10


def test_retry_or_fail_queues_again_later_then_fails(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    assert queue.retry_or_fail(job, "InfluxDB unreachable", 8.0, {"status": "deferred"}) == "queued"
    waiting = get(queue, 1)
    assert waiting.state == "queued"
    assert waiting.attempts == 1
    assert waiting.not_before == pytest.approx(waiting.finished_at + 8.0, abs=0.01)
    assert waiting.last_error == "InfluxDB unreachable"
    assert waiting.result == {"status": "deferred"}
    assert queue.claim("w", 60) is None  # backing off
    make_due(queue)
    job = queue.claim("w", 60)
    assert job.attempts == 2
    assert queue.retry_or_fail(job, "x" * 5000, None) == "failed"
    failed = get(queue, 1)
    assert failed.state == "failed"
    assert len(failed.last_error) == 2000
    assert queue.claim("w", 60) is None


def test_a_late_result_of_a_job_taken_back_changes_nothing(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim(f"{HOST}:{dead_pid()}", 60)
    assert queue.recover() == 1
    queue.retry_or_fail(job, "late", None)
    queue.finish(job, {"outcome": "done"})
    queue.postpone(job, 60)
    assert get(queue, 1).state == "queued"  # still waiting for a live worker


def test_a_stale_owner_cannot_end_a_job_another_worker_now_runs(queue: JobQueue) -> None:
    """A worker frozen past its lease comes back after another took its job over."""
    add(queue, 1)
    stale = queue.claim("frozen:1", lease_s=-1)
    assert queue.recover() == 1
    current = queue.claim("live:2", lease_s=60)
    assert current.id == stale.id
    assert current.attempts == 2
    queue.finish(stale, {"by": "frozen"})
    queue.retry_or_fail(stale, "late", None)
    queue.postpone(stale, 60)
    job = get(queue, 1)
    assert job.state == "running"
    assert job.owner == "live:2"
    queue.finish(current, {"by": "live"})
    assert get(queue, 1).state == "done"
    assert get(queue, 1).result == {"by": "live"}


def test_worker_policy_retries_with_growing_backoff_then_fails(tmp_path: Path, queue) -> None:
    worker = Worker(queue, tmp_path, WorkerOptions(max_attempts=4, max_backoff_s=300))
    add(queue, 1)
    delays = []
    for attempt in range(1, 5):
        make_due(queue)
        job = queue.claim(worker.owner, 60)
        assert job.attempts == attempt
        worker._record(job, {"outcome": "retry", "error": "InfluxDB unreachable"})
        after = get(queue, 1)
        if after.state == "queued":
            delays.append(round(after.not_before - after.finished_at))
    assert delays == [2, 4, 8]
    assert after.state == "failed"
    assert after.attempts == 4
    assert after.last_error == "InfluxDB unreachable"


def test_worker_policy_done_and_postpone(tmp_path: Path, queue) -> None:
    worker = Worker(queue, tmp_path, WorkerOptions(settle_s=5))
    add(queue, 1)
    add(queue, 2)
    job = queue.claim(worker.owner, 60)
    worker._record(job, {"outcome": "postpone", "delay_s": 7, "error": "upload in progress"})
    postponed = get(queue, 1)
    assert postponed.state == "queued"
    assert postponed.attempts == 0
    assert postponed.not_before == pytest.approx(time.time() + 7, abs=2)
    job = queue.claim(worker.owner, 60)
    worker._record(job, {"outcome": "done", "status": "error", "error": "bad file"})
    assert get(queue, 2).state == "done"  # a rejected file is done, never retried
    assert worker.completed == 1


def test_postpone_does_not_count_the_attempt(queue: JobQueue) -> None:
    add(queue, 1)
    for _ in range(5):
        make_due(queue)
        job = queue.claim("w", 60)
        assert job.attempts == 1
        queue.postpone(job, 20)
    job = get(queue, 1)
    assert job.state == "queued"
    assert job.attempts == 0
    assert job.owner is None
    assert job.not_before == pytest.approx(time.time() + 20, abs=5)


def test_a_cut_upload_s_wait_is_ended_by_an_event_about_it_not_by_the_scan(
    queue: JobQueue,
) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    queue.postpone(job, 600, waiting="incomplete upload")
    waiting = get(queue, 1)
    assert waiting.result == {"waiting": "incomplete upload"}
    assert waiting.last_error == "incomplete upload"
    assert waiting.not_before == pytest.approx(time.time() + 600, abs=5)
    assert queue.oldest_waiting_age_s() is None  # a grace period is not a stuck queue

    add(queue, 1, source="scan", ends_wait=False)  # the periodic scan: nothing changed
    assert get(queue, 1).not_before == pytest.approx(time.time() + 600, abs=5)
    add(queue, 1, delay_s=1.0)  # inotify or the hook: the client wrote to it again
    assert get(queue, 1).not_before == pytest.approx(time.time() + 1, abs=5)

    make_due(queue)
    job = queue.claim("w", 60)
    assert job is not None
    queue.postpone(job, 5)  # an ordinary postponement (still open) ends the waiting mark
    assert get(queue, 1).result == {}
    assert queue.oldest_waiting_age_s() is not None


def test_an_event_while_a_cut_upload_is_looked_at_ends_its_wait(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    add(queue, 1)  # the client resumes while the worker reads the cut file: rerun
    queue.postpone(job, 600, waiting="incomplete upload")
    assert get(queue, 1).not_before == pytest.approx(time.time(), abs=5)


def test_a_backoff_is_not_shortened_by_an_event(queue: JobQueue) -> None:
    add(queue, 1)
    job = queue.claim("w", 60)
    queue.retry_or_fail(job, "InfluxDB down", 300)
    add(queue, 1)
    assert get(queue, 1).not_before == pytest.approx(time.time() + 300, abs=5)


# -- recovery --------------------------------------------------------------------------------


def test_recover_takes_back_expired_leases(queue: JobQueue) -> None:
    add(queue, 1)
    queue.claim("otherhost:123", lease_s=-1)  # lease already over
    assert queue.recover() == 1
    job = get(queue, 1)
    assert job.state == "queued"
    assert job.owner is None
    assert job.lease_until is None
    assert job.last_error == "worker died while running it"
    assert job.attempts == 1  # the interrupted attempt counts
    assert queue.claim("w", 60) is not None  # due at once


def test_recover_takes_back_jobs_of_a_dead_local_owner_at_once(queue: JobQueue) -> None:
    add(queue, 1)
    queue.claim(f"{HOST}:{dead_pid()}", lease_s=3600)
    assert queue.recover() == 1
    assert get(queue, 1).state == "queued"


def test_recover_leaves_live_owners_alone(queue: JobQueue) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for n, owner in enumerate(
            [f"{HOST}:{sleeper.pid}", this_owner(), "otherhost:1", f"{HOST}:init", f"{HOST}:1"]
        ):
            add(queue, n)
            assert queue.claim(owner, lease_s=3600).owner == owner
        assert queue.recover() == 0
        assert queue.counts()["running"] == 5
    finally:
        sleeper.kill()
        sleeper.wait()
    assert queue.recover() == 1  # now that the sleeper is gone


def test_recover_spares_owners_known_alive_even_past_their_lease(queue: JobQueue) -> None:
    add(queue, 1)
    add(queue, 2)
    queue.claim("me:1", lease_s=-1)
    queue.claim("them:2", lease_s=-1)
    assert queue.recover(alive={"me:1"}) == 1
    assert get(queue, 1).state == "running"
    assert get(queue, 2).state == "queued"


# -- views, heartbeats, pruning, durability -------------------------------------------------------


def test_counts_ages_and_listing(queue: JobQueue) -> None:
    assert queue.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0}
    assert queue.oldest_waiting_age_s() is None
    for n in range(5):
        add(queue, n)
    db = sqlite3.connect(queue.path)
    with db:
        db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 100 WHERE id = 1")
    db.close()
    queue.finish(queue.claim("w", 60), {})  # job 1: done, no longer waiting
    queue.retry_or_fail(queue.claim("w", 60), "x", None)
    queue.claim("w", 60)
    assert queue.counts() == {"queued": 2, "running": 1, "done": 1, "failed": 1}
    age = queue.oldest_waiting_age_s()
    assert age is not None
    assert 0 <= age < 50
    assert [j.id for j in queue.jobs()] == [5, 4, 3, 2, 1]
    assert [j.id for j in queue.jobs(("queued", "failed"))] == [5, 4, 2]
    assert [j.id for j in queue.jobs(limit=2)] == [5, 4]
    assert queue.get("ingest", "nope") is None


def test_heartbeats(queue: JobQueue) -> None:
    assert queue.heartbeats() == {}
    queue.beat("worker", {"running": 1})
    first = queue.heartbeats()["worker"]
    assert first["pid"] == os.getpid()
    assert first["host"] == HOST
    assert first["info"] == {"running": 1}
    assert first["at"] == pytest.approx(time.time(), abs=5)
    queue.beat("worker")
    queue.beat("watcher", {"root": "/data"})
    beats = queue.heartbeats()
    assert set(beats) == {"worker", "watcher"}
    assert beats["worker"]["info"] == {}
    assert beats["worker"]["at"] >= first["at"]


def test_prune_removes_old_done_jobs_only(queue: JobQueue) -> None:
    for n in range(3):
        add(queue, n)
    queue.finish(queue.claim("w", 60), {})
    queue.retry_or_fail(queue.claim("w", 60), "x", None)
    assert queue.prune(older_than_s=7 * 86_400) == 0  # kept for a week
    assert queue.prune(older_than_s=-1) == 1
    assert queue.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 1}


def test_jobs_survive_closing_and_reopening(tmp_path: Path) -> None:
    first = JobQueue.in_state_dir(tmp_path)
    add(first, 1)
    add(first, 2)
    running = first.claim("w", 60)
    first.close()
    second = JobQueue.in_state_dir(tmp_path)
    try:
        assert second.counts() == {"queued": 1, "running": 1, "done": 0, "failed": 0}
        second.finish(running, {"ok": True})
        assert get(second, 1).result == {"ok": True}
    finally:
        second.close()


# -- several processes at once ---------------------------------------------------------------------


def _claim_all(path: str, start, results) -> None:
    queue = JobQueue(Path(path))
    start.wait()
    mine = []
    while (job := queue.claim(this_owner(), 60)) is not None:
        mine.append(job.id)
        queue.finish(job, {"by": os.getpid()})
    queue.close()
    results.put((os.getpid(), mine))


def _enqueue_many(path: str, start, first: int) -> None:
    queue = JobQueue(Path(path))
    start.wait()
    for n in range(first, first + 50):
        add(queue, n % 75)  # overlapping ranges: 75 distinct files in all
    queue.close()


def test_processes_claiming_at_once_never_get_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    queue = JobQueue(path)
    for n in range(200):
        add(queue, n)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(str(path), start, results)) for _ in range(4)
    ]
    for w in workers:
        w.start()
    claimed = {}
    for _ in workers:
        pid, ids = results.get(timeout=60)
        claimed[pid] = ids
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == 200
    assert sorted(every) == [j.id for j in reversed(queue.jobs(limit=500))]
    print("jobs per process:", {pid: len(ids) for pid, ids in claimed.items()})
    assert queue.counts() == {"queued": 0, "running": 0, "done": 200, "failed": 0}
    by = {j.id: j.result["by"] for j in queue.jobs(limit=500)}
    assert all(by[i] == pid for pid, ids in claimed.items() for i in ids)
    queue.close()


def test_processes_enqueueing_at_once_keep_one_job_per_file(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    JobQueue(path).close()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    procs = [
        context.Process(target=_enqueue_many, args=(str(path), start, first))
        for first in (0, 25, 50)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    queue = JobQueue(path)
    try:
        assert queue.counts()["queued"] == 75
        assert len({j.key for j in queue.jobs(limit=500)}) == 75
    finally:
        queue.close()


# -- fair claiming across companies (issue 10) ---------------------------------------


def add_for(queue: JobQueue, company: str, n: int) -> None:
    subject = f"/data/{company}/c1/sn/{n}.tsv"
    queue.enqueue("ingest", subject, {"path": subject, "company": company})


def test_one_company_s_flood_does_not_starve_another(queue: JobQueue) -> None:
    for n in range(1000):
        add_for(queue, "flood", n)
    add_for(queue, "quiet", 0)
    first_two = [queue.claim("w", 60).company for _ in range(2)]
    assert "quiet" in first_two


def test_companies_take_turns_even_when_each_job_ends_before_the_next_claim(
    queue: JobQueue,
) -> None:
    # One job at a time (concurrency 1): nothing is ever running at claim time,
    # so the turn order alone must stop the flood from coming first every time.
    for n in range(50):
        add_for(queue, "flood", n)
    for n in range(3):
        add_for(queue, "quiet", n)
    served = []
    for _ in range(6):
        job = queue.claim("w", 60)
        served.append(job.company)
        queue.finish(job, {"outcome": "done"})
    assert served == ["flood", "quiet", "flood", "quiet", "flood", "quiet"]


def test_the_company_with_fewer_running_jobs_is_served_first(queue: JobQueue) -> None:
    for n in range(3):
        add_for(queue, "a", n)
        add_for(queue, "b", n)
    claimed = [queue.claim("w", 60).company for _ in range(4)]
    assert sorted(claimed[:2]) == ["a", "b"]
    assert sorted(claimed[2:]) == ["a", "b"]


def test_within_a_company_the_oldest_ready_job_comes_first(queue: JobQueue) -> None:
    for n in range(3):
        add_for(queue, "a", n)
    queue.enqueue("ingest", "late", {"path": "late", "company": "a"}, delay_s=600)
    paths = [queue.claim("w", 60).payload["path"] for _ in range(3)]
    assert paths == [f"/data/a/c1/sn/{n}.tsv" for n in range(3)]
    assert queue.claim("w", 60) is None  # only the delayed job is left


def test_claim_reads_the_fairness_index_not_every_job(queue: JobQueue) -> None:
    from powerview.queue import _PICK_COMPANY

    for n in range(200):
        add_for(queue, "flood", n)
    plan = [row[3] for row in queue._db.execute("EXPLAIN QUERY PLAN " + _PICK_COMPANY, {"now": 0})]
    job_steps = [step for step in plan if " jobs " in f" {step} "]
    assert job_steps, plan
    assert all(step.startswith("SEARCH jobs USING COVERING INDEX jobs_fair") for step in job_steps)


def test_an_older_queue_file_gets_the_company_column_from_its_payloads(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    db = sqlite3.connect(path)
    with db:  # the schema before issue 10: no company column, no fairness index
        db.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL"
            " UNIQUE, payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL"
            " DEFAULT 0, not_before REAL NOT NULL, enqueued_at REAL NOT NULL, started_at REAL,"
            " finished_at REAL, owner TEXT, lease_until REAL, rerun INTEGER NOT NULL DEFAULT 0,"
            " source TEXT, last_error TEXT, result TEXT)"
        )
        for n, company in enumerate(["old-a", "old-a", "old-b"]):
            db.execute(
                "INSERT INTO jobs (kind, key, payload, state, not_before, enqueued_at)"
                " VALUES ('ingest', ?, ?, 'queued', 0, 0)",
                (f"ingest:{n}", f'{{"path": "{n}", "company": "{company}"}}'),
            )
        db.execute(
            "INSERT INTO jobs (kind, key, payload, state, not_before, enqueued_at)"
            " VALUES ('ingest', 'ingest:x', '{\"path\": \"x\"}', 'done', 0, 0)"
        )
    db.close()
    queue = JobQueue(path)
    try:
        companies = {job.key: job.company for job in queue.jobs()}
        assert companies == {
            "ingest:0": "old-a",
            "ingest:1": "old-a",
            "ingest:2": "old-b",
            "ingest:x": "",
        }
        assert sorted(queue.claim("w", 60).company for _ in range(2)) == ["old-a", "old-b"]
    finally:
        queue.close()


# -- deaths of pool processes (issue 10) -------------------------------------------------


def test_a_job_whose_process_keeps_dying_fails_after_max_crashes(tmp_path: Path, queue) -> None:
    worker = Worker(queue, tmp_path, WorkerOptions(max_crashes=3, max_backoff_s=300))
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1"})
    delays = []
    for _ in range(3):
        make_due(queue)
        job = queue.claim(worker.owner, 60)
        worker._crashed(job, "killed by signal 9 (SIGKILL)")
        after = queue.get("provision", "acme/c1")
        if after.state == "queued":
            delays.append(round(after.not_before - after.finished_at))
    assert delays == [2, 4]
    assert after.state == "failed"
    assert after.last_error == (
        "the worker process running this job died 3 times (killed by signal 9 (SIGKILL))"
    )
    assert after.result["crashes"] == 3


def test_deaths_add_up_across_other_failures_and_out_of_memory_is_one(
    tmp_path: Path, queue
) -> None:
    worker = Worker(queue, tmp_path, WorkerOptions(max_crashes=2))
    queue.enqueue("provision", "acme/c1", {"company": "acme", "campaign": "c1"})
    job = queue.claim(worker.owner, 60)
    worker._crashed(job, "killed by signal 9 (SIGKILL)")
    make_due(queue)
    job = queue.claim(worker.owner, 60)
    worker._record(job, {"outcome": "retry", "error": "InfluxDB unreachable"})
    assert queue.get("provision", "acme/c1").result["crashes"] == 1
    make_due(queue)
    job = queue.claim(worker.owner, 60)
    worker._record(job, {"outcome": "crashed", "error": "ran out of memory"})
    after = queue.get("provision", "acme/c1")
    assert after.state == "failed"
    assert "died 2 times (ran out of memory)" in after.last_error


def test_how_a_pool_process_died_is_told_in_words() -> None:
    from powerview.worker import death_of

    assert death_of(-9) == "killed by signal 9 (SIGKILL)"
    assert death_of(1) == "exited with status 1"
    assert death_of(None) == "ended for an unknown reason"
