"""Housekeeping: how long PowerView keeps what it has finished with.

Two things grow with every upload: the queue's done rows (one per job) and
the JSON run reports (one per worker job, one per `powerview ingest`). The
worker prunes both when it starts and hourly after (`HOUSEKEEPING_INTERVAL_S`):
done rows older than POWERVIEW_QUEUE_RETENTION_DAYS, reports older than
POWERVIEW_REPORT_RETENTION_DAYS. Failed and waiting jobs are never pruned:
they are work or a problem still to look at. The meta bucket keeps each
run's and file's summary points however old the reports get.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from powerview.queue import JobQueue

log = logging.getLogger(__name__)

DAY_S = 86_400.0
# Pruning is a DELETE on an indexed column and one listdir: cheap, but not
# worth doing on every poll of the worker loop.
HOUSEKEEPING_INTERVAL_S = 3_600.0
# Only the names RunReport.write_json gives (`tsv_run_<UTC time>_<run id>.json`):
# whatever else an operator keeps in the folder stays.
REPORT_NAME = re.compile(r"tsv_run_\d{8}T\d{6}Z_[0-9a-f]+\.json")


@dataclass(frozen=True)
class Retention:
    """How long finished things are kept, in seconds; 0 keeps them forever."""

    queue_s: float
    report_s: float
    report_dir: Path


def prune_reports(folder: Path, older_than_s: float, now: float | None = None) -> int:
    """Delete PowerView's run reports in `folder` last modified over `older_than_s` ago.

    Only regular files with a report's name, looked at without following links:
    a link named like a report is left alone, and so is what it points to.
    """
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if not REPORT_NAME.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # removed meanwhile (another worker)
            continue
    return removed


def housekeep(queue: JobQueue, retention: Retention) -> tuple[int, int]:
    """Prune done queue rows and old reports; (rows, reports) removed.

    A failure is logged, never raised: housekeeping must not stop the worker.
    """
    rows = reports = 0
    try:
        if retention.queue_s > 0:
            rows = queue.prune(retention.queue_s)
        if retention.report_s > 0:
            reports = prune_reports(retention.report_dir, retention.report_s)
    except (sqlite3.Error, OSError) as exc:  # a locked queue, an unreadable folder
        log.error("housekeeping failed: %s", exc)
    if rows or reports:
        log.info("housekeeping: %d done jobs and %d reports pruned", rows, reports)
    return rows, reports
