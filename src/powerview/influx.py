"""InfluxDB adapter: buckets, line-protocol writes and meta points.

Everything that talks to InfluxDB goes through `InfluxTarget`; errors of the
client library are translated at this boundary (`map_influx_errors`) into
`InfluxUnavailableError` (retry later, the file stays), `InfluxRequestError`
(our token, org or bucket is wrong: the file stays until the deployment is
fixed) or `InfluxRejectedError` (the data itself was refused, the file goes to
`error/`); see exceptions.py.

Writes are POSTed over the standard library's http.client (influx_write.py,
measured cheaper in CPU than influxdb-client's stack) and gzip-compressed
here with ISA-L (`isal`) rather than by the client's `enable_gzip`, which
uses zlib level 9: on line protocol ISA-L's level 1 compresses as well as
zlib's level 1 (16x, the text is very repetitive) at a fifth of its CPU
(0.11 against 0.53 µs per line, see bench/README.md). A batch is encoded and
compressed by the thread that queues it, so a writer thread goes from one
acknowledged request to the next without compressing in between: the server
does not wait for it. To a server on the same machine nothing is compressed
(see Settings.effective_gzip_level).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import urllib3
from influxdb_client import Bucket, BucketRetentionRules, InfluxDBClient
from influxdb_client.rest import ApiException
from isal import isal_zlib
from urllib3.util.retry import Retry

from powerview.exceptions import ConfigError, InfluxRejectedError, InfluxUnavailableError
from powerview.influx_write import (
    RETRY_STATUSES,
    WriteConnection,
    WriteEndpoint,
    error_for_status,
    failure_chain,
    failure_reason,
)
from powerview.settings import Settings

log = logging.getLogger(__name__)


class LineWriter(Protocol):
    """Where line protocol goes; InfluxTarget for real, NullWriter for dry runs.

    `write` queues lines for the file being written; `file_done` closes that
    file and returns a future resolved once every one of its lines is
    acknowledged (or failed with the mapped error), so a caller moves a file
    only when its points are in.
    """

    def ensure_bucket(self, bucket: str) -> None: ...

    def write(self, bucket: str, lines: str) -> None: ...

    def file_done(self) -> Future[None]: ...

    def flush(self) -> None: ...


class NullWriter:
    """Counts what would be written (dry runs, `powerview parse`)."""

    def __init__(self) -> None:
        self.bytes = 0

    def ensure_bucket(self, bucket: str) -> None:
        pass

    def write(self, bucket: str, lines: str) -> None:
        self.bytes += len(lines)

    def file_done(self) -> Future[None]:
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def map_influx_errors(action: str) -> Iterator[None]:
    """Translate the client's exceptions into PowerView's, naming `action`."""
    try:
        yield
    except ApiException as exc:
        raise error_for_status(exc.status or 0, _api_message(exc), action) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise InfluxUnavailableError(
            f"InfluxDB{_where(exc)} unreachable: {_reason(exc)} ({action})"
        ) from exc


# urllib3 puts the connection object's repr in its messages: `<urllib3.connection.
# HTTPConnection object at 0x7f...>: Failed to establish a new connection: ...`.
_OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-fA-F]+>:?\s*")


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in words: "connection refused", "timed out", ..."""
    known = failure_reason(exc)
    if known is not None:
        return known
    if any(isinstance(link, urllib3.exceptions.TimeoutError) for link in failure_chain(exc)):
        return "timed out"
    text = _OBJECT_REPR.sub("", str(getattr(exc, "reason", None) or exc))
    return text.strip() or type(exc).__name__


def _where(exc: BaseException) -> str:
    """ " at <url>" of the server a urllib3 error names, else nothing."""
    for link in failure_chain(exc):
        pool = getattr(link, "pool", None) or getattr(link, "conn", None)
        host, port = getattr(pool, "host", None), getattr(pool, "port", None)
        if host:
            scheme = getattr(pool, "scheme", None) or (
                "https" if "HTTPS" in type(pool).__name__ else "http"
            )
            return f" at {scheme}://{host}" + (f":{port}" if port else "")
    return ""


def _api_message(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    return (body or exc.reason or "").strip()[:500]


def make_client(
    url: str, token: str, org: str, timeout_s: float, retries: int = 4
) -> InfluxDBClient:
    """The official client with retries and backoff on transient failures."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        backoff_max=10,
        status_forcelist=sorted(RETRY_STATUSES),
        allowed_methods=None,  # writes are idempotent (same series and time overwrite)
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    return InfluxDBClient(
        url=url, token=token, org=org, timeout=int(timeout_s * 1000), retries=retry
    )


def open_target(settings: Settings) -> InfluxTarget:
    """The InfluxTarget of the configured server, with the admin token."""
    token = settings.influxdb_admin_token
    if token is None or not token.get_secret_value():
        raise ConfigError(
            "INFLUXDB_ADMIN_TOKEN is not set (`powerview stack up` sets up a local InfluxDB)"
        )
    client = make_client(
        settings.influxdb_url,
        token.get_secret_value(),
        settings.influxdb_org,
        settings.influxdb_timeout_s,
        retries=settings.influxdb_retries,
    )
    return InfluxTarget(
        client,
        settings.influxdb_org,
        settings.effective_gzip_level,
        connections=settings.influxdb_connections,
    )


@dataclass
class _FileTicket:
    """The batches of one file: how many are unacknowledged, and its future."""

    number: int
    future: Future[None] = field(default_factory=Future)
    pending: int = 0
    sealed: bool = False


class InfluxTarget:
    """Writes line protocol to InfluxDB through bounded background writers.

    Batches are made into request bodies by the caller (`body`) and queued
    tagged with the current file's ticket; `connections` writer threads post
    them (`post`), each over its own HTTP connection of the
    client's pool. All batches of one file go to one writer, in order, so a
    later row of a file overwrites an earlier one at the same time as with a
    single connection; files alternate between the writers. A file's future
    (`file_done`) resolves when every batch of that file was acknowledged,
    or fails with the first error of that file: a refused batch fails its
    file only, while an outage also fails every file already queued (they
    are not retried one by one), and later files are tried afresh.
    """

    def __init__(
        self,
        client: InfluxDBClient,
        org: str,
        gzip_level: int = 1,
        connections: int = 1,
    ) -> None:
        self._client = client
        self._org = org
        self._gzip_level = gzip_level
        self._connections = max(1, connections)
        # Writes go over http.client (influx_write.py), to the client's server.
        self._endpoint = WriteEndpoint.of_client(client)
        self._local = threading.local()  # each thread's WriteConnection
        self._opened: list[WriteConnection] = []
        self._known_buckets: set[str] = set()
        # One queue per writer; three batches waiting keep each connection busy.
        self._queues: list[queue.Queue[tuple[_FileTicket, str, bytes] | None]] = [
            queue.Queue(maxsize=3) for _ in range(self._connections)
        ]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._tickets = 0
        self._current: _FileTicket | None = None
        self._broken: tuple[int, BaseException] | None = None  # outage up to this ticket
        self.bytes_sent = 0
        self.requests = 0

    @property
    def client(self) -> InfluxDBClient:
        return self._client

    @property
    def connections(self) -> int:
        return self._connections

    # -- buckets -------------------------------------------------------------

    def ensure_bucket(self, bucket: str, retention_s: int = 0) -> None:
        """Create `bucket` in the org if it does not exist (cached per run)."""
        if bucket in self._known_buckets:
            return
        find_or_create_bucket(self._client, self._org, bucket, retention_s)
        self._known_buckets.add(bucket)

    # -- writes --------------------------------------------------------------

    def write(self, bucket: str, lines: str) -> None:
        """Queue one request's worth of lines for the current file.

        Raises that file's error once one of its batches failed, so a file
        that cannot be written is not parsed to its end for nothing.
        """
        ticket = self._ticket()
        if ticket.future.done():
            ticket.future.result()  # raises the file's error
        if not self._threads:
            self._threads = [
                threading.Thread(
                    target=self._run, args=(work,), name=f"influx-writer-{n}", daemon=True
                )
                for n, work in enumerate(self._queues)
            ]
            for thread in self._threads:
                thread.start()
        body = self.body(lines)  # here, so that the writer only posts
        with self._lock:
            ticket.pending += 1
        self._queues[ticket.number % self._connections].put((ticket, bucket, body))

    def file_done(self) -> Future[None]:
        """Close the current file; its future resolves once all its batches are in."""
        ticket = self._ticket()
        self._current = None
        with self._lock:
            ticket.sealed = True
            self._settle(ticket)
        return ticket.future

    def flush(self) -> None:
        """Wait until everything queued is written; raises the current file's error."""
        future = self.file_done()
        self._stop_threads()
        future.result()

    def write_now(self, bucket: str, lines: str, precision: str = "s") -> None:
        """Write synchronously (meta points, tests)."""
        self.post(bucket, self.body(lines), precision)

    def body(self, lines: str) -> bytes:
        """`lines` as a request body: UTF-8, gzip-compressed if configured."""
        body = lines.encode()
        return gzip_body(body, self._gzip_level) if self._gzip_level else body

    def post(self, bucket: str, body: bytes, precision: str = "s") -> None:
        """POST one body made by `body` on this thread's connection; wait for the answer."""
        connection: WriteConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = WriteConnection(self._endpoint, self._org)
            with self._lock:
                self._opened.append(connection)
        connection.post(bucket, body, gzip=self._gzip_level > 0, precision=precision)
        with self._lock:
            self.bytes_sent += len(body)
            self.requests += 1

    def _ticket(self) -> _FileTicket:
        if self._current is None:
            with self._lock:
                self._tickets += 1
                self._current = _FileTicket(self._tickets)
        return self._current

    def _run(self, work: queue.Queue[tuple[_FileTicket, str, bytes] | None]) -> None:
        try:
            self._drain(work)
        finally:
            self._close_own_connection()

    def _close_own_connection(self) -> None:
        connection: WriteConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._lock:
                self._opened.remove(connection)

    def _drain(self, work: queue.Queue[tuple[_FileTicket, str, bytes] | None]) -> None:
        while (item := work.get()) is not None:
            ticket, bucket, body = item
            error: BaseException | None = None
            with self._lock:
                send = not ticket.future.done()  # a failed file's other batches are dropped
                if send and self._broken is not None and ticket.number <= self._broken[0]:
                    send, error = False, self._broken[1]  # queued before the outage was seen
            if send:
                try:
                    self.post(bucket, body)
                except InfluxRejectedError as exc:  # this file's data: this file only
                    error = exc
                except BaseException as exc:  # an outage: every file queued so far fails
                    error = exc
                    with self._lock:
                        self._broken = (self._tickets, exc)
            with self._lock:
                ticket.pending -= 1
                if error is not None and not ticket.future.done():
                    ticket.future.set_exception(error)
                self._settle(ticket)

    def _settle(self, ticket: _FileTicket) -> None:
        """Resolve a sealed ticket without pending batches (lock held)."""
        if ticket.sealed and ticket.pending == 0 and not ticket.future.done():
            ticket.future.set_result(None)

    def _stop_threads(self) -> None:
        if not self._threads:
            return
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush()
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._client.close()


def find_or_create_bucket(
    client: InfluxDBClient, org: str, name: str, retention_s: int = 0
) -> Bucket:
    """The bucket `name`, created with `retention_s` (0: forever) if it does not exist.

    A 422 "already exists" on creation means another process created it
    meanwhile (the first files of a new company ingested at once, a tenant
    created during an ingestion): that bucket is the one wanted, not an error.
    """
    api = client.buckets_api()
    with map_influx_errors(f"ensuring bucket {name!r}"):
        bucket: Bucket | None = api.find_bucket_by_name(name)
        if bucket is not None:
            return bucket
        rules = [BucketRetentionRules(type="expire", every_seconds=retention_s)]
        try:
            created: Bucket = api.create_bucket(bucket_name=name, org=org, retention_rules=rules)
        except ApiException as exc:
            raced: Bucket | None = api.find_bucket_by_name(name) if exc.status == 422 else None
            if raced is None:
                raise
            return raced
    log.info("created bucket %s", name)
    return created


def gzip_body(data: bytes, level: int) -> bytes:
    """gzip `data` with ISA-L; its levels are 0 to 3, so 3 to 9 all mean its best (3)."""
    return isal_zlib.compress(data, min(level, isal_zlib.ISAL_BEST_COMPRESSION), wbits=31)


_SUMMARY_FLUX = """
base = from(bucket: bucket) |> range(start: 0) |> filter(fn: (r) => r._measurement == "electrical")
by = ["campaign", "device_master_sn"]
base |> group(columns: by) |> count() |> yield(name: "points")
base |> keep(columns: ["campaign", "device_master_sn", "channel_id"]) |> group(columns: by)
  |> distinct(column: "channel_id") |> count() |> yield(name: "channels")
base |> first() |> group(columns: by) |> min(column: "_time") |> yield(name: "first")
base |> last() |> group(columns: by) |> max(column: "_time") |> yield(name: "last")
"""


def summarize_bucket(client: InfluxDBClient, bucket: str) -> list[dict[str, object]]:
    """Per campaign and device: points, channels, first and last time (a Flux query).

    The bucket name goes in as a Flux parameter, never spliced into the query.
    """
    with map_influx_errors(f"querying bucket {bucket!r}"):
        tables = client.query_api().query(_SUMMARY_FLUX, params={"bucket": bucket})
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for table in tables:
        for record in table.records:
            key = (str(record.values["campaign"]), str(record.values["device_master_sn"]))
            row = rows.setdefault(key, {"campaign": key[0], "device_master_sn": key[1]})
            result = record.values["result"]
            row[result] = record.get_time() if result in ("first", "last") else record.get_value()
    return [rows[key] for key in sorted(rows)]
