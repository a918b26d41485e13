"""A durable, deduplicated job queue in one SQLite file of the state folder.

Producers (the SFTPGo hook, the watcher, the reconciliation scan, the CLI)
only insert rows; `powerview worker` claims and runs them. Why SQLite by hand
rather than huey: the queue must deduplicate by file (the same upload seen by
two events is one job), show what runs as well as what waits and failed, and
take back the jobs of a worker killed mid-run; huey offers none of these
three. The design is the usual SQLite work queue: WAL journal, one
`BEGIN IMMEDIATE` transaction per claim, leases that expire.

Job states: queued → running → done | queued (retry, with backoff) | failed.
An event for a job that is running sets `rerun`, so a file re-uploaded while
it was being ingested is ingested again afterwards.

Claiming is fair across companies (issue 10): one company's flood of uploads
must not starve the others, so `claim` first picks a company (fewest jobs
running, then the one served longest ago) and only then its oldest ready job.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from powerview.private_files import check_state_dir, make_shared_dir
from powerview.processes import pid_alive

JobKind = Literal["ingest", "provision"]
JobState = Literal["queued", "running", "done", "failed"]
QUEUE_FILE = "queue.sqlite3"
_BYTES_KEY = "#b64:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    owner       TEXT,
    lease_until REAL,
    rerun       INTEGER NOT NULL DEFAULT 0,
    source      TEXT,
    last_error  TEXT,
    result      TEXT,
    company     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, not_before);
-- When each company was last given a job: the round-robin order of `claim`.
CREATE TABLE IF NOT EXISTS company_turns (
    company    TEXT PRIMARY KEY,
    last_claim REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeats (
    name  TEXT PRIMARY KEY,
    pid   INTEGER NOT NULL,
    host  TEXT NOT NULL,
    at    REAL NOT NULL,
    info  TEXT
);
"""


# The company `claim` serves next. The companies with queued jobs are listed by
# a skip scan of the jobs_fair index (one seek per company, not one row per
# job), so a claim stays fast with 10,000 files of one company waiting.
_PICK_COMPANY = """
WITH RECURSIVE waiting(company) AS (
    SELECT min(company) FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(company) FROM jobs WHERE state = 'queued' AND company > waiting.company)
    FROM waiting WHERE waiting.company IS NOT NULL
),
ready AS (
    SELECT company,
           (SELECT min(not_before) FROM jobs
            WHERE state = 'queued' AND jobs.company = waiting.company) AS oldest
    FROM waiting WHERE company IS NOT NULL
),
running AS (
    SELECT company, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY company
)
SELECT ready.company FROM ready
LEFT JOIN running ON running.company = ready.company
LEFT JOIN company_turns AS turns ON turns.company = ready.company
WHERE ready.oldest <= :now
ORDER BY coalesce(running.n, 0), coalesce(turns.last_claim, 0), ready.oldest
LIMIT 1
"""


@dataclass(frozen=True)
class Job:
    id: int
    kind: JobKind
    key: str
    payload: dict[str, Any]
    state: JobState
    attempts: int
    not_before: float
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    owner: str | None
    lease_until: float | None
    rerun: bool
    source: str | None
    last_error: str | None
    result: dict[str, Any] | None
    company: str  # from the payload; '' when it names none

    @property
    def subject(self) -> str:
        """What the job is about, printable (a path, or company/campaign)."""
        return key_subject(self.key)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["payload"] = json.loads(values["payload"])
        values["result"] = json.loads(values["result"]) if values["result"] else None
        values["rerun"] = bool(values["rerun"])
        return cls(**values)


def job_key(kind: JobKind, subject: str) -> str:
    """The deduplication key: one job per file, one per company/campaign.

    A path below the data root may hold any bytes; those that are not UTF-8
    come as lone surrogates (`os.fsdecode`), which SQLite refuses. Such a
    subject is stored as `<kind>#b64:<base64 of its bytes>`: lossless, and
    never equal to a plain `<kind>:<subject>` key.
    """
    if _is_text(subject):
        return f"{kind}:{subject}"
    encoded = base64.urlsafe_b64encode(os.fsencode(subject)).decode("ascii")
    return f"{kind}{_BYTES_KEY}{encoded}"


def key_subject(key: str) -> str:
    """The subject of a job key as printable text (undecodable bytes as `\\xff`)."""
    kind, sep, encoded = key.partition(_BYTES_KEY)
    if sep and kind in ("ingest", "provision"):
        raw = base64.urlsafe_b64decode(encoded)
        return raw.decode("utf-8", errors="backslashreplace")
    return key.split(":", 1)[1] if ":" in key else key


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(text: str) -> str:
    """`text` with any lone surrogate escaped, so SQLite takes it (error messages, sources)."""
    return text if _is_text(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def this_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobQueue:
    """The queue in `<state_dir>/queue.sqlite3`; safe across processes."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        make_shared_dir(path.parent)
        # SQLite creates a new database 0644 whatever the umask (its -wal and -shm
        # files copy that mode): create it here so the umask decides, and the SFTPGo
        # hook's user and the worker's can share the queue (umask 0007, one group).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o666))
        self.path = path
        self._db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a queue file written by an older PowerView to this schema.

        Looked at before taking the write lock: the hook opens the queue for
        every event, and an up-to-date file needs no write.
        """
        if self._schema_current():
            return
        with self._transaction() as db:
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "company" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN company TEXT NOT NULL DEFAULT ''")
                db.execute(
                    "UPDATE jobs SET company = coalesce(json_extract(payload, '$.company'), '')"
                )
            # Created here, after the column exists, for queue files of any age.
            db.execute(
                "CREATE INDEX IF NOT EXISTS jobs_fair ON jobs (state, company, not_before, id)"
            )

    def _schema_current(self) -> bool:
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        indexes = {row["name"] for row in self._db.execute("PRAGMA index_list(jobs)")}
        return "company" in columns and "jobs_fair" in indexes

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> JobQueue:
        return cls(check_state_dir(state_dir) / QUEUE_FILE)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- producers -----------------------------------------------------------

    def enqueue(
        self,
        kind: JobKind,
        subject: str,
        payload: dict[str, Any],
        *,
        delay_s: float = 0.0,
        source: str = "cli",
        requeue_done: bool = True,
        ends_wait: bool = True,
    ) -> bool:
        """Queue a job unless the same one already waits; True if something changed.

        A waiting job keeps one row (its start is pushed back to the later
        `delay_s`); a running one is marked to run again when it ends; a failed
        one is queued again, and so is a done one unless `requeue_done` is False.
        A job put off until its file changes (`postpone(..., waiting=...)`, a
        cut upload) is made ready after `delay_s` by an event about the file
        (`ends_wait`; the periodic scan's are not: they say nothing changed).
        """
        now = time.time()
        key = job_key(kind, subject)
        company = _storable(str(payload.get("company") or ""))
        source = _storable(source)
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO jobs"
                    " (kind, key, payload, state, not_before, enqueued_at, source, company)"
                    " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                    (kind, key, json.dumps(payload), now + delay_s, now, source, company),
                )
                return True
            state = row["state"]
            if state == "queued":
                db.execute(
                    "UPDATE jobs SET not_before = CASE WHEN ? AND"
                    " json_extract(result, '$.waiting') IS NOT NULL THEN ?"
                    " ELSE max(not_before, ?) END, payload = ?, company = ? WHERE key = ?",
                    (ends_wait, now + delay_s, now + delay_s, json.dumps(payload), company, key),
                )
                return False
            if state == "running":
                db.execute("UPDATE jobs SET rerun = 1 WHERE key = ?", (key,))
                return True
            if not requeue_done and state == "done":
                return False  # a failed job is always worth another try
            db.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, not_before = ?, enqueued_at = ?,"
                " payload = ?, source = ?, owner = NULL, lease_until = NULL, last_error = NULL,"
                " result = NULL, started_at = NULL, finished_at = NULL, company = ? WHERE key = ?",
                (now + delay_s, now, json.dumps(payload), source, company, key),
            )
            return True

    # -- the worker ----------------------------------------------------------

    def claim(self, owner: str, lease_s: float) -> Job | None:
        """Take a ready job, leasing it to `owner` for `lease_s` seconds.

        The company comes first: of the companies with a ready job, the one
        with the fewest jobs running, then the one given a job longest ago,
        then the one whose job has waited longest; then that company's oldest
        ready job. A company flooding the queue thus gets one turn in each
        round, whatever the number of its files.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute(_PICK_COMPANY, {"now": now}).fetchone()
            if row is None:
                return None
            company = row["company"]
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'queued' AND company = ? AND not_before <= ?"
                " ORDER BY not_before, id LIMIT 1",
                (company, now),
            ).fetchone()
            db.execute(
                "UPDATE jobs SET state = 'running', owner = ?, lease_until = ?, started_at = ?,"
                " attempts = attempts + 1, rerun = 0 WHERE id = ?",
                (owner, now + lease_s, now, row["id"]),
            )
            db.execute(
                "INSERT INTO company_turns (company, last_claim) VALUES (?, ?)"
                " ON CONFLICT(company) DO UPDATE SET last_claim = excluded.last_claim",
                (company, now),
            )
            claimed = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return Job.from_row(claimed)

    def renew(self, owner: str, lease_s: float) -> None:
        """Extend the leases of every job `owner` is running."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET lease_until = ? WHERE state = 'running' AND owner = ?",
                (time.time() + lease_s, owner),
            )

    def finish(self, job: Job, result: dict[str, Any], rerun_delay_s: float = 0.0) -> None:
        """Mark a job done, or queue it again if an event came in while it ran."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = CASE WHEN rerun THEN 'queued' ELSE 'done' END,"
                " not_before = CASE WHEN rerun THEN ? ELSE not_before END,"
                " attempts = CASE WHEN rerun THEN 0 ELSE attempts END,"
                " rerun = 0, finished_at = ?, owner = NULL, lease_until = NULL,"
                " result = ?, last_error = NULL WHERE id = ? AND state = 'running'"
                " AND owner IS ? AND started_at IS ?",  # this run's claim, not a later one
                (now + rerun_delay_s, now, json.dumps(result), job.id, job.owner, job.started_at),
            )

    def retry_or_fail(
        self, job: Job, error: str, retry_in_s: float | None, result: dict[str, Any] | None = None
    ) -> JobState:
        """Queue the job again in `retry_in_s`, or mark it failed when that is None."""
        now = time.time()
        state: JobState = "failed" if retry_in_s is None else "queued"
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, not_before = ?, finished_at = ?, owner = NULL,"
                " lease_until = NULL, last_error = ?, result = ?"
                " WHERE id = ? AND state = 'running'"
                " AND owner IS ? AND started_at IS ?",  # this run's claim, not a later one
                (
                    state,
                    now + (retry_in_s or 0.0),
                    now,
                    _storable(error[:2000]),
                    json.dumps(result) if result is not None else None,
                    job.id,
                    job.owner,
                    job.started_at,
                ),
            )
        return state

    def postpone(self, job: Job, delay_s: float, waiting: str | None = None) -> None:
        """Put a job back without counting the attempt (its file is still arriving).

        `waiting` says why it waits for its file to change (a cut upload; also
        shown as its last error): an
        event about the file then ends the wait early (`enqueue`), and the job
        does not count as a waiting one for `oldest_waiting_age_s`.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute(
                # An event that came while it ran (rerun) ends such a wait at once.
                "UPDATE jobs SET state = 'queued',"
                " not_before = CASE WHEN :waiting IS NOT NULL AND rerun THEN :now"
                " ELSE max(not_before, :ready) END,"
                " attempts = max(0, attempts - 1), owner = NULL, lease_until = NULL,"
                " result = CASE WHEN :waiting IS NULL THEN json_remove(result, '$.waiting')"
                " ELSE json_set(coalesce(result, '{}'), '$.waiting', :waiting) END,"
                " last_error = coalesce(:waiting, last_error),"  # why, for `powerview queue`
                " rerun = 0 WHERE id = :id AND state = 'running'"
                " AND owner IS :owner AND started_at IS :started",  # this claim, not a later one
                {
                    "waiting": _storable(waiting[:2000]) if waiting else None,
                    "now": now,
                    "ready": now + delay_s,
                    "id": job.id,
                    "owner": job.owner,
                    "started": job.started_at,
                },
            )

    def recover(self, alive: set[str] | None = None) -> int:
        """Queue again the running jobs whose lease expired or whose owner is dead.

        `alive` are the owners known to be alive (this worker); a local owner
        `host:pid` whose process is gone is taken back at once, not after its lease.
        """
        now = time.time()
        host = socket.gethostname()
        taken = 0
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, owner, lease_until FROM jobs WHERE state = 'running'"
            ).fetchall()
            for row in rows:
                owner = row["owner"] or ""
                if alive and owner in alive:
                    continue
                expired = (row["lease_until"] or 0) < now
                if expired or _local_owner_dead(owner, host):
                    db.execute(
                        "UPDATE jobs SET state = 'queued', owner = NULL, lease_until = NULL,"
                        " not_before = ?, last_error = 'worker died while running it'"
                        " WHERE id = ?",
                        (now, row["id"]),
                    )
                    taken += 1
        return taken

    def prune(self, older_than_s: float) -> int:
        """Delete done jobs finished over `older_than_s` ago (POWERVIEW_QUEUE_RETENTION_DAYS);
        failed and waiting ones stay."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND finished_at < ?",
                (time.time() - older_than_s,),
            )
            return cursor.rowcount

    # -- views ---------------------------------------------------------------

    def jobs(self, states: tuple[JobState, ...] | None = None, limit: int = 100) -> list[Job]:
        query = "SELECT * FROM jobs"
        args: tuple[Any, ...] = ()
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            args = states
        query += " ORDER BY id DESC LIMIT ?"
        return [Job.from_row(r) for r in self._db.execute(query, (*args, limit)).fetchall()]

    def get(self, kind: JobKind, subject: str) -> Job | None:
        row = self._db.execute(
            "SELECT * FROM jobs WHERE key = ?", (job_key(kind, subject),)
        ).fetchone()
        return Job.from_row(row) if row else None

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        for row in self._db.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state"):
            found[row["state"]] = row["n"]
        return found

    def ready_within(self, seconds: float) -> int:
        """Jobs running, or queued to start within `seconds` (not those in a long backoff)."""
        row = self._db.execute(
            "SELECT count(*) AS n FROM jobs WHERE state = 'running'"
            " OR (state = 'queued' AND not_before <= ?)",
            (time.time() + seconds,),
        ).fetchone()
        return int(row["n"])

    def oldest_waiting_age_s(self) -> float | None:
        row = self._db.execute(
            "SELECT min(enqueued_at) AS t FROM jobs WHERE state = 'queued'"
            " AND json_extract(result, '$.waiting') IS NULL"  # a cut upload's grace: not stuck
        ).fetchone()
        return None if row["t"] is None else max(0.0, time.time() - row["t"])

    # -- heartbeats (read by `powerview health`) -----------------------------

    def beat(self, name: str, info: dict[str, Any] | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO heartbeats (name, pid, host, at, info) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET pid = excluded.pid, host = excluded.host,"
                " at = excluded.at, info = excluded.info",
                (name, os.getpid(), socket.gethostname(), time.time(), json.dumps(info or {})),
            )

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        return {
            row["name"]: {"pid": row["pid"], "host": row["host"], "at": row["at"],
                          "info": json.loads(row["info"] or "{}")}
            for row in self._db.execute("SELECT * FROM heartbeats")
        }  # fmt: skip


def _local_owner_dead(owner: str, host: str) -> bool:
    name, _, pid_text = owner.rpartition(":")
    if name != host or not pid_text.isdigit():
        return False
    return not pid_alive(int(pid_text))
