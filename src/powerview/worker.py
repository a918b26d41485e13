"""`powerview worker`: runs queued jobs with bounded concurrency and retries.

Jobs run in a pool of processes (ingestion is CPU-bound Python), at most
`concurrency` at once. The main loop claims jobs, renews their leases, beats
its heartbeat, takes back jobs of dead workers, and every `scan_interval_s`
scans the data tree for files no event announced (a missed inotify event, a
hook killed by its timeout); events the hook spooled are queued at every turn.
At start and hourly it prunes done jobs and old run reports (retention.py).
Infrastructure failures are retried with exponential backoff; a job that keeps
failing is marked failed, and the next scan queues its file again if it is
still waiting.

A pool process that dies (killed by the kernel's OOM killer, a signal, its
memory limit) fails only the job it was running (issue 10): the pool is made
again, the other jobs that were running go back to the queue unblamed, and
the dead one's job is retried with backoff; after `max_crashes` deaths its
file goes to error/ with the reason, so a poison file never loops. Each pool
process gets an address-space limit, so no input can take the machine.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import pickle
import resource
import select
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerview import events, spool
from powerview import settings as config
from powerview.processes import pid_alive
from powerview.queue import Job, JobQueue, this_owner
from powerview.retention import HOUSEKEEPING_INTERVAL_S, Retention, housekeep

if TYPE_CHECKING:
    from powerview.metrics import WorkerMetrics
    from powerview.report import FileReport
    from powerview.upload_file import Moved

log = logging.getLogger(__name__)

HEARTBEAT_NAME = "worker"
# `--until-idle` waits for jobs due within this many seconds (uploads settling,
# the first retries), not for the long backoffs of an outage: cron runs again.
UNTIL_IDLE_LOOKAHEAD_S = 10.0


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 2
    scan_interval_s: float = 300.0
    settle_s: float = 1.0
    lease_s: float = 120.0
    poll_s: float = 0.1
    max_attempts: int = 10
    max_backoff_s: float = 300.0
    max_crashes: int = 3  # deaths of a pool process running the job before error/
    memory_limit_mb: int = 1024  # address space of each pool process; 0: no limit
    retention: Retention | None = None  # None: no housekeeping (tests of the loop alone)


def backoff_s(attempts: int, cap: float) -> float:
    """2, 4, 8, ... seconds, capped."""
    return float(min(cap, 2 ** max(1, attempts)))


def run_job(kind: str, payload: dict[str, Any], settle_s: float) -> dict[str, Any]:
    """Run one job in a pool process; returns {"outcome": done|retry|failed, ...}."""
    if kind == "ingest":
        # A transfer SFTPGo reported complete needs no settle time (still-open check only).
        settle = 0.0 if payload.get("complete") else settle_s
        return _ingest_job(Path(payload["path"]), settle, payload)
    if kind == "provision":
        from powerview.provision import provision_campaign

        return provision_campaign(config.load(), payload["company"], payload["campaign"])
    return {"outcome": "failed", "error": f"unknown job kind {kind!r}"}


def _ingest_job(path: Path, settle_s: float, payload: dict[str, Any]) -> dict[str, Any]:
    from powerview.influx import open_target
    from powerview.ingest import IngestOptions, ingest_file, parse_options, write_run
    from powerview.ledger import open_recorder
    from powerview.report import RunReport

    if not os.path.lexists(path):
        return _gone(path, payload)
    busy = events.still_being_written(path, settle_s)
    if busy:
        # A file that is only too recent is looked at again when its settle
        # time is over, not a whole settle time after this look.
        try:
            age = time.time() - path.lstat().st_mtime
        except FileNotFoundError:
            age = 0.0
        delay = settle_s - age if 0.0 <= age < settle_s else settle_s
        return {
            "outcome": "postpone",
            "delay_s": max(0.05, delay),
            "error": f"upload in progress: {busy}",
        }
    settings = config.load()
    target = open_target(settings)
    try:
        with open_recorder(settings.state_dir, target.client) as ledger:
            options = IngestOptions(
                data_root=settings.data_root.resolve(),
                parse=parse_options(settings),
                lines_per_write=settings.write_batch_size,
                reserved=settings.reserved_company_names,
                incomplete_grace_s=settings.incomplete_grace_s,
                ledger=ledger,
            )
            report = ingest_file(path, target, options)
        if report.deferred_by == "incomplete":
            # Not an outcome yet: no report until it is ingested or set aside.
            return _wait_for_resumption(path, settings.incomplete_grace_s, report.error)
        run = RunReport(base_folder=str(options.data_root), files=[report])
        write_run(run, target, settings, options.data_root)
    finally:
        target.close()
    result = {
        "status": report.status,
        "points": report.nb_points,
        # For the metrics, counted in the main process (see metrics.py).
        "company": report.company,
        "device_sn": str((report.format or {}).get("master_sn") or report.device_sn or ""),
        "duration_s": report.duration_s,
        "moved_to": report.moved_to,
        "error": report.error,
    }
    if report.status == "deferred":
        return {"outcome": "retry", **result}
    return {"outcome": "done", **result}


def _wait_for_resumption(path: Path, grace_s: float, why: str | None) -> dict[str, Any]:
    """Look at a cut upload again when its grace period ends (an event about it, sooner)."""
    try:
        changed = path.lstat().st_mtime
    except FileNotFoundError:
        changed = time.time()
    delay = max(0.05, changed + grace_s - time.time())
    reason = why or "incomplete upload"
    return {"outcome": "postpone", "delay_s": delay, "waiting": reason, "error": reason}


def _gone(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """A job whose file is no longer where it was uploaded.

    Usually handled already (a duplicate event) or deleted by its client. But
    a job taken back after a crash (a later attempt) may find its file moved
    by the run that crashed, after the data was written and before the report:
    that file gets its report now, from what is known.
    """
    enqueued_at = payload.get("enqueued_at")
    if int(payload.get("attempt") or 1) < 2 or enqueued_at is None:
        return {"outcome": "done", "status": "gone"}
    from powerview.exceptions import NameRuleError, UnsafeUploadError
    from powerview.upload_file import find_moved

    settings = config.load()
    data_root = settings.data_root.resolve()
    try:
        moved = find_moved(data_root, path, since=float(enqueued_at))
    except (NameRuleError, UnsafeUploadError, OSError) as exc:
        log.warning("%s gone; not looked for after the crash: %s", path, exc)
        moved = None
    if moved is None:
        return {"outcome": "done", "status": "gone"}
    return _report_recovered(path, moved, settings, data_root)


def _report_recovered(
    path: Path, moved: Moved, settings: config.Settings, data_root: Path
) -> dict[str, Any]:
    """The report of a file a crashed run had already moved (`find_moved`)."""
    from powerview.report import FileReport
    from powerview.upload_file import display

    success = moved.outcome == "parsed"
    report = FileReport(
        path=display(path),
        file_name=display(path.name),
        status="success" if success else "error",
        moved_to=display(moved.path),
        reason_file=display(moved.note) if moved.note else None,
    )
    report.company, report.campaign, report.device_sn = moved.names
    report.warnings.append(
        f"recovered after a worker crash: the run that crashed had already moved it to"
        f" {moved.outcome}/; its counts were not recorded"
    )
    if not success:
        report.error = (
            f"set aside in error/ before a worker crash; the reason is in {report.reason_file}"
            if report.reason_file
            else "set aside in error/ before a worker crash; its reason was not recorded"
        )
    _write_report(report, settings, data_root)
    log.warning("%s: %s", report.path, report.warnings[-1])
    return {
        "outcome": "done",
        "status": report.status,
        "recovered": True,
        "company": report.company,
        "moved_to": report.moved_to,
        "error": report.error,
    }


def exit_with_worker(worker_pid: int) -> None:
    """In each pool process: end this process as soon as the worker dies.

    Without it a worker killed with SIGKILL leaves its pool processes (and the
    forkserver, which they keep alive) running for ever, and one that was
    mid-job finishes it while the restarted worker, seeing the job's owner
    dead, runs the same job again. Dying mid-job is safe: ingestion is
    idempotent and an interrupted move is finished by the next run.
    """
    try:
        pidfd: int | None = os.pidfd_open(worker_pid)
    except (AttributeError, OSError):  # no pidfd here, or the worker is gone already
        pidfd = None

    def wait() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while pid_alive(worker_pid):
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=wait, name="exit-with-worker", daemon=True).start()


# Set in each pool process by `init_pool_process`: where a job says which
# process runs it, so that the worker can tell which job a dead process had.
_started: SimpleQueue[tuple[int, int]] | None = None


def init_pool_process(
    worker_pid: int, memory_limit_mb: int, started: SimpleQueue[tuple[int, int]]
) -> None:
    """Pool process initializer: die with the worker, cap memory, report job starts.

    RLIMIT_AS (address space) rather than RSS, which Linux does not enforce:
    an allocation past it raises MemoryError in this process only.
    """
    global _started
    exit_with_worker(worker_pid)
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _started = started


def run_reported(
    job_id: int, kind: str, payload: dict[str, Any], settle_s: float
) -> dict[str, Any]:
    """`run_job` in a pool process, saying first which process runs `job_id`."""
    if _started is not None:
        _started.put((job_id, os.getpid()))
    try:
        return run_job(kind, payload, settle_s)
    except MemoryError:
        # Counted as a crash, not as bad content: the limit is the operator's.
        return {
            "outcome": "crashed",
            "error": "ran out of memory (POWERVIEW_WORKER_MEMORY_LIMIT_MB)",
        }


def _write_report(report: FileReport, settings: config.Settings, data_root: Path) -> None:
    """The JSON report and meta points of one file the worker decided outside a run."""
    from powerview.influx import open_target
    from powerview.ingest import write_run
    from powerview.report import RunReport

    target = open_target(settings)
    try:
        write_run(
            RunReport(base_folder=str(data_root), files=[report]), target, settings, data_root
        )
    finally:
        target.close()


def reject_crashed(payload: dict[str, Any], reason: str) -> dict[str, Any]:
    """Move a file whose ingestion kept killing its process to error/, with a report."""
    from powerview import layout
    from powerview.exceptions import NameRuleError, UnsafeUploadError
    from powerview.ingest import set_aside
    from powerview.report import FileReport
    from powerview.upload_file import display, open_upload

    path = Path(payload["path"])
    if not layout.is_candidate(path):
        return {"outcome": "done", "status": "gone"}
    settings = config.load()
    data_root = settings.data_root.resolve()
    report = FileReport(
        path=display(path), file_name=display(path.name), status="error", error=reason
    )
    # Opened from the data root without following links, as for its ingestion: a
    # client cannot point this move at another company's file by swapping folders.
    try:
        with open_upload(data_root, path) as upload:
            report.company, report.campaign, report.device_sn = upload.folder_names()
            set_aside(report, upload)
    except FileNotFoundError:
        return {"outcome": "done", "status": "gone"}
    except (NameRuleError, UnsafeUploadError) as exc:
        return {"outcome": "done", "status": "skipped", "error": f"{reason}; not moved: {exc}"}
    _write_report(report, settings, data_root)
    return {
        "outcome": "done",
        "status": "error",
        "company": report.company,
        "moved_to": report.moved_to,
        "error": reason,
    }


def death_of(exitcode: int | None) -> str:
    """How a pool process ended, in words: `killed by signal 9 (SIGKILL)`."""
    if exitcode is None:
        return "ended for an unknown reason"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        return f"killed by signal {-exitcode} ({name})"
    return f"exited with status {exitcode}"


class Worker:
    """The worker loop; `stop()` (or SIGTERM/SIGINT) lets running jobs finish."""

    def __init__(
        self,
        queue: JobQueue,
        data_root: Path,
        options: WorkerOptions,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.metrics = metrics
        self.data_root = data_root
        self.options = options
        self.owner = this_owner()
        self._stop = threading.Event()
        self._running: dict[cf.Future[dict[str, Any]], Job] = {}
        self.completed = 0
        self.pools_replaced = 0
        self._pool: cf.ProcessPoolExecutor | None = None
        self._started: SimpleQueue[tuple[int, int]] | None = None
        self._children: dict[int, BaseProcess] = {}  # every process of the current pool
        self._job_pids: dict[int, int] = {}  # job id → the pool process that runs it
        self._broken = False

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self, until_idle: bool = False) -> int:
        """Work until stopped (or, with `until_idle`, until nothing is left to do)."""
        self._pool = self._new_pool()
        next_scan = 0.0
        next_beat = 0.0
        next_housekeeping = 0.0
        idle = False
        try:
            self.queue.recover(alive={self.owner})
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._beat()
                    next_beat = now + min(10.0, self.options.lease_s / 3)
                if now >= next_scan and self.options.scan_interval_s > 0:
                    self._scan()
                    next_scan = now + self.options.scan_interval_s
                if now >= next_housekeeping and self.options.retention is not None:
                    housekeep(self.queue, self.options.retention)
                    next_housekeeping = now + HOUSEKEEPING_INTERVAL_S
                # Events the hook could not queue: a listdir when there are none.
                spool.drain(self.queue)
                self._fill()
                if until_idle and not self._running and not self._has_ready_or_soon():
                    idle = True
                    break
                self._collect(timeout=self.options.poll_s)
                if self._broken:
                    self._replace_pool()
        finally:
            self._collect(timeout=None, all_of_them=True)
            if self._broken:
                self._replace_pool(again=False)
            self._pool.shutdown(wait=True, cancel_futures=True)
        if idle:
            self._beat(finished=True)
        return self.completed

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        self._started = context.SimpleQueue()
        self._children = {}
        self._job_pids = {}
        self._broken = False
        return cf.ProcessPoolExecutor(
            max_workers=self.options.concurrency,
            mp_context=context,
            initializer=init_pool_process,
            initargs=(os.getpid(), self.options.memory_limit_mb, self._started),
        )

    def _beat(self, finished: bool = False) -> None:
        """The heartbeat `powerview health` reads; `finished`: an `--until-idle` run
        (cron) ended cleanly, to be judged by POWERVIEW_WORKER_RUN_MAX_AGE_S, not as
        a daemon that died."""
        self.queue.renew(self.owner, self.options.lease_s)
        self.queue.recover(alive={self.owner})
        info: dict[str, Any] = {
            "owner": self.owner,
            "running": len(self._running),
            "completed": self.completed,
            "pools_replaced": self.pools_replaced,  # each one a dead pool process
        }
        if finished:
            info["finished"] = "idle"
        self.queue.beat(HEARTBEAT_NAME, info)

    def _scan(self) -> None:
        def add(decision: events.Decision) -> None:
            events.enqueue(self.queue, decision, source="scan")

        try:
            found = events.scan(self.data_root, add, min_age_s=self.options.settle_s)
            log.debug("scan of %s: %d folders and files", self.data_root, found)
        except OSError as exc:
            log.error("scan of %s failed: %s", self.data_root, exc)

    def _has_ready_or_soon(self) -> bool:
        """Work due within a short while; a job in a long backoff waits for the next run."""
        return self.queue.ready_within(UNTIL_IDLE_LOOKAHEAD_S) > 0

    def _fill(self) -> None:
        while (
            len(self._running) < self.options.concurrency
            and not self._stop.is_set()
            and not self._broken
        ):
            job = self.queue.claim(self.owner, self.options.lease_s)
            if job is None:
                return
            log.info("job %d %s %s (attempt %d)", job.id, job.kind, job.key, job.attempts)
            # What a job taken back after a crash needs to find its file (`_gone`).
            payload = {**job.payload, "enqueued_at": job.enqueued_at, "attempt": job.attempts}
            self._submit(job, run_reported, job.id, job.kind, payload, self.options.settle_s)

    def _submit(self, job: Job, function: Any, *args: Any) -> None:
        assert self._pool is not None
        try:
            future = self._pool.submit(function, *args)
        except BrokenProcessPool:  # broke since the last look: not this job's fault
            self.queue.postpone(job, 0.0)
            self._broken = True
            return
        # The executor keeps its processes private; their exit codes, read after
        # a break, are the only way to tell the process that died from those the
        # executor then terminated itself.
        self._children.update(self._pool._processes)
        self._running[future] = job

    def _collect(self, timeout: float | None, all_of_them: bool = False) -> None:
        self._read_started()
        if not self._running:
            if timeout:
                self._stop.wait(timeout)
            return
        done, _ = cf.wait(
            list(self._running),
            timeout=timeout,
            return_when=cf.ALL_COMPLETED if all_of_them else cf.FIRST_COMPLETED,
        )
        for future in done:
            if isinstance(future.exception(), BrokenProcessPool):
                self._broken = True  # the job stays in _running for _replace_pool
                continue
            job = self._running.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # a crash in the job itself: retry, then fail
                result = {"outcome": "retry", "error": f"{type(exc).__name__}: {exc}"}
            self._record(job, result)

    def _read_started(self) -> None:
        """Note which process runs which job (the pipe must be drained in any case)."""
        started = self._started
        try:
            while started is not None and not started.empty():
                job_id, pid = started.get()
                self._job_pids[job_id] = pid
        except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # killed mid-write
            log.warning("job start notes unreadable: %s", exc)

    def _replace_pool(self, again: bool = True) -> None:
        """A pool process died: blame its job, requeue the others, start a new pool."""
        assert self._pool is not None
        self._pool.shutdown(wait=True, cancel_futures=True)  # joins every process
        self._read_started()
        deaths = {
            pid: process.exitcode
            for pid, process in self._children.items()
            # The executor terminates (SIGTERM) the survivors itself.
            if process.exitcode != -signal.SIGTERM
        }
        job_pids = self._job_pids
        hit = list(self._running.values())
        self._running.clear()
        if self._started is not None:
            self._started.close()
        self.pools_replaced += 1
        log.error(
            "a pool process died (%s); %d job(s) were running",
            ", ".join(f"{pid} {death_of(code)}" for pid, code in deaths.items()) or "unknown",
            len(hit),
        )
        if again:
            self._pool = self._new_pool()
        for job in hit:
            pid = job_pids.get(job.id)
            if pid is not None and pid in deaths:
                self._crashed(job, death_of(deaths[pid]), resubmit=again)
            elif deaths:
                log.warning("job %d retried: its process was stopped with the pool", job.id)
                self.queue.postpone(job, 0.0)
            else:  # no telling which job it was: an ordinary, counted attempt for each
                self._record(job, {"outcome": "retry", "error": "its pool process died"})

    def _crashed(self, job: Job, how: str, resubmit: bool = True) -> None:
        """Charge a death to `job`: retry with backoff, or give its file up."""
        crashes = int((job.result or {}).get("crashes", 0)) + 1
        if self.metrics is not None:
            self.metrics.record_job(job.kind, job.enqueued_at, {"outcome": "crashed"})
        if crashes < self.options.max_crashes and job.attempts < self.options.max_attempts:
            delay = backoff_s(crashes, self.options.max_backoff_s)
            limit = self.options.max_crashes
            error = f"the worker process running this job died ({how}): death {crashes} of {limit}"
            result = {"outcome": "crashed", "crashes": crashes, "error": error}
            self.queue.retry_or_fail(job, error, delay, result)
            log.warning("job %d retried in %.0f s: %s", job.id, delay, error)
            return
        doing = "ingesting this file" if job.kind == "ingest" else "running this job"
        reason = f"the worker process {doing} died {crashes} times ({how})"
        if job.kind == "ingest" and "path" in job.payload and resubmit:
            log.error("job %d: %s; its file goes to error/", job.id, reason)
            self._submit(job, reject_crashed, job.payload, reason)
            return
        result = {"outcome": "crashed", "crashes": crashes, "error": reason}
        self.queue.retry_or_fail(job, reason, None, result)
        self.completed += 1
        log.error("job %d failed: %s", job.id, reason)

    def _record(self, job: Job, result: dict[str, Any]) -> None:
        if result.get("outcome") == "crashed":  # out of memory: a crash, not bad content
            self._crashed(job, str(result.get("error") or "crashed"))
            return
        if self.metrics is not None:
            self.metrics.record_job(job.kind, job.enqueued_at, result)
        outcome = result.get("outcome")
        if outcome == "done":
            self.queue.finish(job, result, rerun_delay_s=self.options.settle_s)
            self.completed += 1
            log.info("job %d done: %s", job.id, result.get("status", "ok"))
            return
        error = str(result.get("error") or "unknown error")
        if outcome == "postpone":  # not a failure: the attempt does not count
            delay = float(result.get("delay_s") or self.options.settle_s)
            self.queue.postpone(job, delay, waiting=result.get("waiting"))
            if result.get("waiting"):
                log.info("job %d waits %.0f s: %s", job.id, delay, error)
            return
        crashes = (job.result or {}).get("crashes")
        if crashes:  # carried over, so that deaths add up across other failures
            result = {**result, "crashes": crashes}
        if outcome == "retry" and job.attempts < self.options.max_attempts:
            delay = float(
                result.get("delay_s") or backoff_s(job.attempts, self.options.max_backoff_s)
            )
            self.queue.retry_or_fail(job, error, delay, result)
            log.warning("job %d retried in %.0f s: %s", job.id, delay, error)
            return
        self.queue.retry_or_fail(job, error, None, result)
        self.completed += 1
        log.error("job %d failed after %d attempts: %s", job.id, job.attempts, error)
