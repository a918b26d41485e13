"""The ingestion ledger: every ingested file, its fingerprint, and proof its points are in.

For each file that reached `parsed/`: company, campaign, device, its name as
stored (the `parsed/` name) and as uploaded, the SHA-256 and size of the very
bytes the parser read (hashed while they were read, from the upload's one
descriptor: `Fingerprint`), its upload time (mtime) and ingest time, the time
range of its points, rows and values read, values rejected, points written,
and the points read back from InfluxDB after the write was acknowledged
(`Verifier`, one Flux count per file, several files a query). Kept in
`<state dir>/ledger.sqlite3` (a private file, WAL) and summarised in the meta
bucket as `powerview_ledger`.

The read-back rule (overlapping files of one device): a file's points are
the distinct (field, timestamp) pairs it holds (`points_expected`; a row
repeated in the file is one point, as InfluxDB keeps one). The read-back
counts, in the company's bucket, the points of the file's fields, device
(`device_master_sn`) and campaign between its first and last timestamp
(per series, where a timestamp holds one point). Another file of the same
device whose rows fall in that range at other timestamps adds to that count,
so the rule is "at least": `verified` when points_verified >= points_expected,
`mismatch` when fewer (points of this file are missing for sure),
`unverified` until counted, or when the count could not be made (InfluxDB
failed right after acknowledging). An overlap can hide a loss of the same
size; it can never invent one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

from influxdb_client import InfluxDBClient

from powerview.exceptions import (
    FormatError,
    InfluxRejectedError,
    InfluxRequestError,
    InfrastructureError,
)
from powerview.influx import map_influx_errors
from powerview.lineprotocol import escape_key, escape_measurement, loose_key, string_field
from powerview.private_files import checked_dir
from powerview.schema import MEASUREMENT

if TYPE_CHECKING:
    from powerview.report import FileReport

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
LEDGER_MEASUREMENT = "powerview_ledger"
EntryStatus = Literal["verified", "mismatch", "unverified"]


class LedgerError(InfrastructureError):
    """The ledger file could not be read or written (disk full, locked, damaged)."""


@dataclass(frozen=True)
class LedgerRow:
    """One ingested file. Times are RFC 3339 UTC strings (`2026-01-28T16:21:30Z`)."""

    company: str
    campaign: str
    device: str  # the file's master serial: the points' `device_master_sn`
    device_folder: str  # the upload's device folder (may differ from `device`)
    file_name: str  # as stored: its name in parsed/ (numbered if the name was taken)
    upload_name: str  # as uploaded
    sha256: str  # of the bytes the parser read
    size: int  # those bytes
    upload_time: str  # the upload's mtime
    ingest_time: str  # when its writes were acknowledged
    first_time: str | None  # first and last point
    last_time: str | None
    rows: int  # data lines read
    values_read: int  # values of the rows with a usable timestamp
    rejected_values: int  # of those, values set aside (N/A, empty, nan, ...)
    rejected_rows: int  # rows set aside whole (bad timestamp, short, out of window, ...)
    points_written: int  # lines sent to InfluxDB (values_read - rejected_values)
    points_expected: int  # distinct (field, timestamp) pairs among them
    points_verified: int | None  # counted back from InfluxDB (None: not counted)
    verified_at: str | None
    status: EntryStatus
    fields: tuple[str, ...] = ()  # the InfluxDB fields of its points (for the read-back)

    @property
    def subject(self) -> str:
        """`company/campaign/device_folder/file_name`, how alerts and lists name it."""
        return f"{self.company}/{self.campaign}/{self.device_folder}/{self.file_name}"

    @property
    def missing(self) -> int:
        """Points of this file known to be missing from InfluxDB (0 unless a mismatch)."""
        if self.points_verified is None:
            return 0
        return max(0, self.points_expected - self.points_verified)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LedgerRow:
        values = dict(row)
        values["fields"] = tuple(json.loads(values["fields"]))
        return cls(**values)


def status_of(expected: int, verified: int | None) -> EntryStatus:
    """The read-back rule of the module docstring."""
    if verified is None:
        return "unverified"
    return "verified" if verified >= expected else "mismatch"


def rfc3339(moment: float | dt.datetime) -> str:
    """Seconds since 1970 (or an aware datetime) as `YYYY-MM-DDTHH:MM:SSZ`."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(moment, dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


_COLUMNS = tuple(f.name for f in fields(LedgerRow))
# One row per file content per upload place: the same bytes ingested again
# (re-uploaded, or a run repeated after a crash) update their row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id              INTEGER PRIMARY KEY,
    company         TEXT NOT NULL,
    campaign        TEXT NOT NULL,
    device          TEXT NOT NULL,
    device_folder   TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    upload_name     TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    upload_time     TEXT NOT NULL,
    ingest_time     TEXT NOT NULL,
    first_time      TEXT,
    last_time       TEXT,
    rows            INTEGER NOT NULL,
    values_read     INTEGER NOT NULL,
    rejected_values INTEGER NOT NULL,
    rejected_rows   INTEGER NOT NULL,
    points_written  INTEGER NOT NULL,
    points_expected INTEGER NOT NULL,
    points_verified INTEGER,
    verified_at     TEXT,
    status          TEXT NOT NULL,
    fields          TEXT NOT NULL,
    UNIQUE (company, campaign, device_folder, upload_name, sha256)
);
CREATE INDEX IF NOT EXISTS ledger_company ON ledger (company, campaign, first_time);
CREATE INDEX IF NOT EXISTS ledger_status ON ledger (status);
"""


@contextlib.contextmanager
def _mapped(action: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise LedgerError(f"ledger: {action}: {exc}") from exc


class Ledger:
    """The ledger in `<state dir>/ledger.sqlite3`; safe across processes (WAL).

    The file is private (0600, created in a checked folder without following
    links): it names every client's files, and only the worker writes it.
    """

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = path
        with _mapped(f"opening {path}"):
            with checked_dir(path.parent) as folder:
                # SQLite would create it 0644 (its -wal and -shm copy that mode).
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(path.name, flags, 0o600, dir_fd=folder)
                try:
                    _keep_for_folder_owner(fd, folder)
                finally:
                    os.close(fd)
            # A Recorder's read-back thread uses it too, under the Recorder's lock.
            self._db = sqlite3.connect(
                path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Ledger:
        return cls(state_dir / LEDGER_FILE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------

    def record(self, row: LedgerRow) -> int:
        """Insert the file's entry, or update the entry of the same bytes at the same place."""
        values = row.to_dict()
        values["fields"] = json.dumps(list(row.fields))
        names = ", ".join(_COLUMNS)
        marks = ", ".join(f":{c}" for c in _COLUMNS)
        key = {"company", "campaign", "device_folder", "upload_name", "sha256"}
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in key)
        with _mapped("recording an entry"):
            cursor = self._db.execute(
                f"INSERT INTO ledger ({names}) VALUES ({marks}) "  # noqa: S608 (names are ours)
                "ON CONFLICT (company, campaign, device_folder, upload_name, sha256) "
                f"DO UPDATE SET {updates} RETURNING id",
                values,
            )
            (entry_id,) = cursor.fetchone()
        return int(entry_id)

    def stored_as(self, row: LedgerRow, file_name: str) -> LedgerRow:
        """Set the entry's stored name (its `parsed/` name, known once moved)."""
        with _mapped("recording a stored name"):
            self._db.execute(
                "UPDATE ledger SET file_name = ? WHERE company = ? AND campaign = ? "
                "AND device_folder = ? AND upload_name = ? AND sha256 = ?",
                (file_name, row.company, row.campaign, row.device_folder, row.upload_name,
                 row.sha256),
            )  # fmt: skip
        return _replace(row, file_name=file_name)

    def verified(self, row: LedgerRow, count: int | None, at: float) -> LedgerRow:
        """Record a read-back of `row`: its count (None: could not count) and status."""
        status = status_of(row.points_expected, count)
        when = rfc3339(at)
        with _mapped("recording a read-back"):
            self._db.execute(
                "UPDATE ledger SET points_verified = ?, verified_at = ?, status = ? "
                "WHERE company = ? AND campaign = ? AND device_folder = ? "
                "AND upload_name = ? AND sha256 = ?",
                (count, when, status, row.company, row.campaign, row.device_folder,
                 row.upload_name, row.sha256),
            )  # fmt: skip
        return _replace(row, points_verified=count, verified_at=when, status=status)

    # -- reading -------------------------------------------------------------

    def rows(self, company: str, campaign: str | None = None) -> list[LedgerRow]:
        """Every entry of `company` (one campaign), by campaign, device and first point."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE company = ?"  # noqa: S608
        args: list[str] = [company]
        if campaign is not None:
            query += " AND campaign = ?"
            args.append(campaign)
        query += " ORDER BY campaign, device, first_time, file_name"
        with _mapped("reading entries"):
            found = self._db.execute(query, args).fetchall()
        return [LedgerRow.from_row(r) for r in found]

    def with_status(self, statuses: Sequence[EntryStatus]) -> list[LedgerRow]:
        """Every entry in one of `statuses` (the health check's mismatches)."""
        marks = ", ".join("?" for _ in statuses)
        query = (
            f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE status IN ({marks}) "  # noqa: S608
            "ORDER BY company, campaign, device_folder, file_name"
        )
        with _mapped("reading entries"):
            found = self._db.execute(query, list(statuses)).fetchall()
        return [LedgerRow.from_row(r) for r in found]


def _keep_for_folder_owner(fd: int, folder: int) -> None:
    """A ledger root's command (`powerview ledger`, `verify`) created is handed to the
    state folder's owner, the service user, who must keep writing it. SQLite gives
    its -wal and -shm files the database's owner when run as root."""
    if os.geteuid() != 0:
        return
    owner, info = os.fstat(folder), os.fstat(fd)
    if info.st_uid != owner.st_uid:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def _replace(row: LedgerRow, **changes: Any) -> LedgerRow:
    return dataclasses.replace(row, **changes)


# -- fingerprint: the bytes the parser read ----------------------------------


class Fingerprint:
    """A binary reader that hashes (SHA-256) and counts every byte read through it.

    The parser reads the upload's descriptor through this object, so the
    digest is of exactly the bytes that were parsed, not of a second read
    that a client could have changed meanwhile. `seek(0)` (the parser's
    rewind after sniffing the head and tail with pread) starts over.
    `finish` reads what the parser left (past END_DATA) to the end, so the
    digest is of the whole file as read through that descriptor.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def fileno(self) -> int:
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_SET):
            raise ValueError("a fingerprinted reader only rewinds to the start")
        self._hash = hashlib.sha256()
        self.size = 0
        return self._raw.seek(0)

    def readline(self, limit: int = -1) -> bytes:
        data = self._raw.readline(limit)
        self._hash.update(data)
        self.size += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def finish(self, limit: int, chunk: int = 1 << 20) -> tuple[str, int]:
        """Hash the rest of the file; (hex SHA-256, bytes) of everything read.

        FormatError past `limit` bytes (POWERVIEW_MAX_FILE_BYTES): a file still
        growing after its last line was parsed is not fingerprinted for ever.
        """
        while self.read(chunk):
            if self.size > limit:
                raise FormatError(
                    f"the file grew past {limit} bytes while being read (POWERVIEW_MAX_FILE_BYTES)"
                )
        return self._hash.hexdigest(), self.size

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Fingerprint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- the meta bucket's summary ------------------------------------------------


def meta_line(row: LedgerRow, at: float) -> str:
    """The entry as a `powerview_ledger` point of the meta bucket, at `at` (seconds)."""
    tags = {
        "company": row.company,
        "campaign": row.campaign,
        "device": row.device,
        "file": row.file_name,
    }
    values: dict[str, str | int] = {
        "sha256": row.sha256,
        "size": row.size,
        "rows": row.rows,
        "points_written": row.points_written,
        "points_expected": row.points_expected,
        "points_verified": row.points_verified if row.points_verified is not None else -1,
        "first_time": row.first_time or "",
        "last_time": row.last_time or "",
        "upload_time": row.upload_time,
        "status": row.status,
    }
    tag_text = "".join(f",{escape_key(k)}={loose_key(v)}" for k, v in sorted(tags.items()) if v)
    field_text = ",".join(
        f"{escape_key(k)}={v}i" if isinstance(v, int) else f"{escape_key(k)}={string_field(v)}"
        for k, v in values.items()
    )
    return f"{escape_measurement(LEDGER_MEASUREMENT)}{tag_text} {field_text} {int(at * 1e9)}\n"


# -- read-back ------------------------------------------------------------------

# The file's points as InfluxDB holds them (module docstring): its device and
# campaign in its time range, counted per field by the storage engine (filter,
# group() and count() are all pushed down), then only the file's fields kept.
# Measured per daily file (bench/bench_ledger.py): a `contains()` on the fields
# in the filter is not pushed down, and made InfluxDB read every point (25 s
# instead of 0.15 s for a file of 300,000 points); an `or` of field equalities
# in the filter is, but cost the server 110 ms of CPU against 57 ms for this
# grouping by field; count() per series then group() |> sum() took 250 ms.
# What a count costs InfluxDB follows the series it reads far more than the
# points (30 series: 47 ms for 4,350 points, 176 ms for 1,500,000), in its
# cache as in its TSM files.
# Within a series a timestamp holds one point, so each count is of distinct
# timestamps; a field found in two series (a channel renamed between two
# overlapping files) counts twice, which the "at least" rule can only read as
# present, never as a loss.
#
# Several files are counted in one query, one `from` each, their results told
# apart by `entry`: a query's fixed cost (parsing, planning, the round trip)
# is paid once per batch. Every name is a parameter (`device_3`, ...): the
# query text holds only generated identifiers and numbers, never a name from
# a path.
_ENTRY_FLUX = """
c{i} = from(bucket: bucket_{i})
  |> range(start: start_{i}, stop: stop_{i})
  |> filter(fn: (r) => r._measurement == measurement and r.device_master_sn == device_{i}
      and r.campaign == campaign_{i})
  |> group(columns: ["_field"])
  |> count()
  |> map(fn: (r) => ({{_field: r._field, _value: r._value, entry: {i}}}))"""

READ_BACK_BATCH = 40  # files counted in one query


class Verifier(Protocol):
    """Counts entries' points in InfluxDB; the seam tests put a delete into."""

    def count(self, rows: Sequence[LedgerRow]) -> list[int]: ...


class FluxVerifier:
    """Counts with one Flux query per batch of files (names go in as parameters)."""

    def __init__(self, client: InfluxDBClient) -> None:
        self._client = client

    def count(self, rows: Sequence[LedgerRow]) -> list[int]:
        """The points found for each of `rows`, in order (0 for a row without range or fields)."""
        found = [0] * len(rows)
        for first in range(0, len(rows), READ_BACK_BATCH):
            chunk = rows[first : first + READ_BACK_BATCH]
            for entry, count in self._count_chunk(chunk).items():
                found[first + entry] = count
        return found

    def _count_chunk(self, rows: Sequence[LedgerRow]) -> dict[int, int]:
        parts: list[str] = []
        names: list[str] = []  # the stream of each counted row: c0, c3, ...
        params: dict[str, object] = {"measurement": MEASUREMENT}
        for i, row in enumerate(rows):
            if row.first_time is None or row.last_time is None or not row.fields:
                continue
            params |= {
                f"bucket_{i}": row.company,
                f"device_{i}": row.device,
                f"campaign_{i}": row.campaign,
                f"start_{i}": parse_rfc3339(row.first_time),
                f"stop_{i}": parse_rfc3339(row.last_time) + dt.timedelta(seconds=1),
            }
            parts.append(_ENTRY_FLUX.format(i=i))
            names.append(f"c{i}")
        if not parts:
            return {}
        last = names[0] if len(names) == 1 else f"union(tables: [{', '.join(names)}])"
        query = "".join(parts) + f"\n{last}\n"  # union() wants two streams or more
        subject = rows[0].subject if len(rows) == 1 else f"{len(rows)} files"
        with map_influx_errors(f"counting the points of {subject}"):
            tables = self._client.query_api().query(query, params=params)
        wanted = [set(row.fields) for row in rows]
        counts: dict[int, int] = {}
        for table in tables:
            for record in table.records:
                entry = int(record.values["entry"])
                if record.values.get("_field") in wanted[entry]:
                    counts[entry] = counts.get(entry, 0) + int(record.get_value() or 0)
        return counts


# -- the pipeline's hook ----------------------------------------------------------


class Recorder:
    """What the ingest pipeline calls once InfluxDB acknowledged a file's writes.

    `acknowledged` records the entry (`unverified`) before the file's move to
    parsed/, so that a crash between the two never leaves a file in parsed/
    without its entry (the entry then keeps the upload name); a ledger that
    cannot be written defers the file (LedgerError) rather than moving it
    unrecorded. `stored` (after the move) names the entry as stored and queues
    its read-back, counted by a background thread while the next files are
    parsed and written: counting inline held the pipeline for the query's
    time on every file (measured in bench/bench_ledger.py). The thread counts
    every entry waiting when it gets to them in one query (up to
    READ_BACK_BATCH), so a backlog of small files costs a query per batch,
    not per file. `drain` waits for the counts; each updates the entry and
    the file's report. A read-back that fails (InfluxDB gone right after
    acknowledging) leaves the entries `unverified`, never the files.
    """

    def __init__(
        self,
        ledger: Ledger,
        verifier: Verifier | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.verifier = verifier
        self._clock = clock
        self._lock = threading.Lock()  # the ledger's connection, shared with the counter
        self._waiting: queue.Queue[tuple[LedgerRow, FileReport] | None] = queue.Queue()
        self._counter: threading.Thread | None = None
        self._failure: BaseException | None = None  # a bug in the counter, raised by drain

    def acknowledged(self, report: FileReport, upload_time: float) -> LedgerRow:
        """Record the file's entry (before its move); LedgerError if it cannot be."""
        row = entry_for(report, upload_time, self._clock())
        with self._lock:
            self.ledger.record(row)
        return row

    def stored(self, row: LedgerRow, file_name: str, report: FileReport) -> LedgerRow:
        """Name the entry as stored in parsed/, and queue its read-back.

        A failure to record the name is logged: the file has moved already.
        """
        try:
            with self._lock:
                row = self.ledger.stored_as(row, file_name)
        except LedgerError as exc:
            log.error("ledger: %s moved as %s, name not recorded: %s", row.subject, file_name, exc)
        report.ledger = row
        if self.verifier is not None:
            if self._counter is None:
                self._counter = threading.Thread(
                    target=self._count_waiting, name="ledger-read-back", daemon=True
                )
                self._counter.start()
            self._waiting.put((row, report))
        return row

    def _count_waiting(self) -> None:
        """The counter thread: everything waiting, in batches, until told to stop."""
        while (first := self._waiting.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < READ_BACK_BATCH:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._read_back(batch)
            except Exception as exc:  # a bug: kept for drain, the counter goes on
                log.exception("ledger: read-back failed")
                self._failure = self._failure or exc
            finally:
                for _ in batch:
                    self._waiting.task_done()
            if stop:
                break
        self._waiting.task_done()

    def _read_back(self, batch: list[tuple[LedgerRow, FileReport]]) -> None:
        assert self.verifier is not None
        rows = [row for row, _ in batch]
        try:
            counts = self.verifier.count(rows)
        except (InfrastructureError, InfluxRequestError, InfluxRejectedError) as exc:
            log.warning("ledger: %d files not verified: %s", len(rows), exc)
            return
        for (row, report), count in zip(batch, counts, strict=True):
            try:
                with self._lock:
                    self.ledger.verified(row, count, self._clock())
            except LedgerError as exc:
                log.error("ledger: %s counted, count not recorded: %s", row.subject, exc)
                continue
            report.ledger = self._checked(row, count)

    def drain(self) -> None:
        """Wait until every queued read-back is counted and recorded."""
        self._waiting.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def verify(self, rows: Sequence[LedgerRow]) -> list[LedgerRow]:
        """Count `rows`' points again now (in batches) and record them; InfluxDB's errors
        are raised."""
        if self.verifier is None:
            raise InfluxRequestError("no InfluxDB to verify against")
        counts = self.verifier.count(rows)
        checked = []
        for row, count in zip(rows, counts, strict=True):
            with self._lock:
                self.ledger.verified(row, count, self._clock())
            checked.append(self._checked(row, count))
        return checked

    def _checked(self, row: LedgerRow, count: int) -> LedgerRow:
        status = status_of(row.points_expected, count)
        if status == "mismatch":
            log.warning(
                "ledger: %s: %d distinct points written, %d found in InfluxDB",
                row.subject, row.points_expected, count,
            )  # fmt: skip
        at = rfc3339(self._clock())
        return dataclasses.replace(row, points_verified=count, verified_at=at, status=status)

    def close(self) -> None:
        try:
            self.drain()
        finally:
            if self._counter is not None:
                self._waiting.put(None)
                self._counter.join()
                self._counter = None
            self.ledger.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def entry_for(report: FileReport, upload_time: float, now: float) -> LedgerRow:
    """The entry of a file whose writes were just acknowledged, from its run report."""
    counts = report.counts
    width = counts.get("nb_channels", 0)
    time_range = report.time_range or {}
    return LedgerRow(
        company=report.company or "",
        campaign=report.campaign or "",
        device=str((report.format or {}).get("master_sn") or report.device_sn or ""),
        device_folder=report.device_sn or "",
        file_name=report.file_name,
        upload_name=report.file_name,
        sha256=report.sha256 or "",
        size=report.size or 0,
        upload_time=rfc3339(upload_time),
        ingest_time=rfc3339(now),
        first_time=time_range.get("first"),
        last_time=time_range.get("last"),
        rows=counts.get("nb_rows", 0),
        values_read=counts.get("nb_valid_rows", 0) * width,
        rejected_values=counts.get("nb_invalid_values", 0),
        rejected_rows=counts.get("nb_rejected_rows", 0),
        points_written=counts.get("nb_points", 0),
        points_expected=counts.get("nb_distinct_points", counts.get("nb_points", 0)),
        points_verified=None,
        verified_at=None,
        status="unverified",
        fields=tuple(c.field for c in report.channels),
    )


def open_recorder(state_dir: Path, client: InfluxDBClient | None) -> Recorder:
    """The recorder of the state folder's ledger, counting back through `client`."""
    return Recorder(Ledger.in_state_dir(state_dir), FluxVerifier(client) if client else None)


# -- `powerview ledger` and `powerview verify` ----------------------------------------


@dataclass
class Verification:
    """What `verify` found: every entry checked now, and those with points missing."""

    company: str
    campaign: str | None
    entries: list[LedgerRow]

    @property
    def missing(self) -> list[LedgerRow]:
        return [row for row in self.entries if row.status == "mismatch"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "campaign": self.campaign,
            "checked": len(self.entries),
            "missing": [row.to_dict() for row in self.missing],
            "entries": [row.to_dict() for row in self.entries],
        }


def verify(recorder: Recorder, company: str, campaign: str | None = None) -> Verification:
    """Count every entry of `company` (one campaign) in InfluxDB again, and record it."""
    return Verification(company, campaign, recorder.verify(recorder.ledger.rows(company, campaign)))


def mismatches(state_dir: Path) -> list[LedgerRow] | None:
    """The entries whose points are missing; None when there is no ledger yet."""
    path = state_dir / LEDGER_FILE
    if not path.is_file():
        return None
    with Ledger(path, timeout_s=5) as ledger:
        return ledger.with_status(["mismatch"])
