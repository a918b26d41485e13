"""`powerview worker`: runs queued jobs with bounded concurrency and retries.

Jobs run in a pool of processes (ingestion is CPU-bound Python), at most
`concurrency` at once. The main loop claims jobs, renews their leases, beats
its heartbeat, takes back jobs of dead workers, and every `scan_interval_s`
scans the data tree for files no event announced (a missed inotify event, a
hook killed by its timeout). Infrastructure failures are retried with
exponential backoff; a job that keeps failing is marked failed, and the next
scan queues its file again if it is still waiting.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerview import events
from powerview import settings as config
from powerview.processes import pid_alive
from powerview.queue import Job, JobQueue, this_owner

if TYPE_CHECKING:
    from powerview.metrics import WorkerMetrics

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


def backoff_s(attempts: int, cap: float) -> float:
    """2, 4, 8, ... seconds, capped."""
    return float(min(cap, 2 ** max(1, attempts)))


def run_job(kind: str, payload: dict[str, Any], settle_s: float) -> dict[str, Any]:
    """Run one job in a pool process; returns {"outcome": done|retry|failed, ...}."""
    if kind == "ingest":
        # A transfer SFTPGo reported complete needs no settle time (still-open check only).
        return _ingest_job(Path(payload["path"]), 0.0 if payload.get("complete") else settle_s)
    if kind == "provision":
        from powerview.provision import provision_campaign

        return provision_campaign(config.load(), payload["company"], payload["campaign"])
    return {"outcome": "failed", "error": f"unknown job kind {kind!r}"}


def _ingest_job(path: Path, settle_s: float) -> dict[str, Any]:
    from powerview.influx import open_target
    from powerview.ingest import IngestOptions, ingest_file, parse_options, write_run
    from powerview.report import RunReport

    if not os.path.lexists(path):
        return {"outcome": "done", "status": "gone"}  # handled already, or removed
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
        options = IngestOptions(
            data_root=settings.data_root.resolve(),
            parse=parse_options(settings),
            lines_per_write=settings.write_batch_size,
        )
        report = ingest_file(path, target, options)
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


def exit_with_worker(worker_pid: int) -> None:
    """Pool process initializer: end this process as soon as the worker dies.

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

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self, until_idle: bool = False) -> int:
        """Work until stopped (or, with `until_idle`, until nothing is left to do)."""
        context = multiprocessing.get_context("forkserver")
        pool = cf.ProcessPoolExecutor(
            max_workers=self.options.concurrency,
            mp_context=context,
            initializer=exit_with_worker,
            initargs=(os.getpid(),),
        )
        next_scan = 0.0
        next_beat = 0.0
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
                self._fill(pool)
                if until_idle and not self._running and not self._has_ready_or_soon():
                    break
                self._collect(timeout=self.options.poll_s)
        finally:
            self._collect(timeout=None, all_of_them=True)
            pool.shutdown(wait=True, cancel_futures=True)
        return self.completed

    def _beat(self) -> None:
        self.queue.renew(self.owner, self.options.lease_s)
        self.queue.recover(alive={self.owner})
        self.queue.beat(
            HEARTBEAT_NAME,
            {"owner": self.owner, "running": len(self._running), "completed": self.completed},
        )

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

    def _fill(self, pool: cf.ProcessPoolExecutor) -> None:
        while len(self._running) < self.options.concurrency and not self._stop.is_set():
            job = self.queue.claim(self.owner, self.options.lease_s)
            if job is None:
                return
            log.info("job %d %s %s (attempt %d)", job.id, job.kind, job.key, job.attempts)
            future = pool.submit(run_job, job.kind, job.payload, self.options.settle_s)
            self._running[future] = job

    def _collect(self, timeout: float | None, all_of_them: bool = False) -> None:
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
            job = self._running.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # a crash in the job itself: retry, then fail
                result = {"outcome": "retry", "error": f"{type(exc).__name__}: {exc}"}
            self._record(job, result)

    def _record(self, job: Job, result: dict[str, Any]) -> None:
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
            self.queue.postpone(job, float(result.get("delay_s") or self.options.settle_s))
            return
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
